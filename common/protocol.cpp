#include "common/protocol.h"

#include <fmt/core.h>

#include <atomic>

#include "common/log.h"

namespace taskfarm {

namespace {
// Set at start-up (flags) or once from the farm's ventilator (a Welcome, a BatchStart), by the
// thread that decodes messages; read by the same thread.
std::string g_farm_name;
std::atomic<uint64_t> g_farm_id{0};
}  // namespace

uint64_t farm_id_of(std::string_view name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h == 0 ? 1 : h;
}

void set_farm(std::string_view name) {
  g_farm_name = std::string(name);
  g_farm_id.store(name.empty() ? 0 : farm_id_of(name), std::memory_order_relaxed);
}
const std::string& farm_name() { return g_farm_name; }
uint64_t farm_id() { return g_farm_id.load(std::memory_order_relaxed); }

zmq::message_t encode(v1::Envelope& envelope) {
  envelope.set_version(kProtocolVersion);
  envelope.set_farm(farm_id());
  const size_t n = envelope.ByteSizeLong();
  zmq::message_t msg(n);
  envelope.SerializeWithCachedSizesToArray(static_cast<uint8_t*>(msg.data()));
  return msg;
}

std::optional<std::string> decode_into(const void* data, size_t size, v1::Envelope& envelope) {
  if (size == 0) return std::string("empty frame");
  if (size > static_cast<size_t>(INT32_MAX)) {
    return fmt::format("frame of {} bytes is too large", size);
  }
  if (!envelope.ParseFromArray(data, static_cast<int>(size))) {
    return fmt::format("undecodable frame of {} bytes (not a taskfarm message)", size);
  }
  if (envelope.version() != kProtocolVersion) {
    return fmt::format("protocol version {} from peer, this build speaks version {}",
                       envelope.version(), kProtocolVersion);
  }
  if (envelope.body_case() == v1::Envelope::BODY_NOT_SET) {
    return std::string("message without a body (unknown message type from a newer peer?)");
  }
  const uint64_t ours = farm_id();
  if (envelope.farm() != 0 && ours != 0 && envelope.farm() != ours) {
    return fmt::format("a message of another farm (this is farm '{}'; check --farm and the "
                       "endpoints)",
                       g_farm_name);
  }
  return std::nullopt;
}

Decoded decode(const void* data, size_t size) {
  Decoded out;
  v1::Envelope envelope;
  if (auto err = decode_into(data, size, envelope)) {
    out.error = std::move(*err);
    return out;
  }
  out.envelope = std::move(envelope);
  return out;
}

void RejectCounter::reject(std::string_view why, std::string_view peer) {
  ++count_;
  ++unlogged_;
  const auto now = std::chrono::steady_clock::now();
  if (count_ > kWarnFirst && now < next_warn_) return;
  const std::string from = peer.empty() ? std::string() : fmt::format(" from {}", peer);
  if (unlogged_ > 1) {
    log::warn("{}: rejected message #{}{}: {} ({} more since the last warning)", where_, count_,
              from, why, unlogged_ - 1);
  } else {
    log::warn("{}: rejected message #{}{}: {}", where_, count_, from, why);
  }
  unlogged_ = 0;
  if (count_ >= kWarnFirst) next_warn_ = now + kWarnInterval;
}

std::string peer_of(const zmq::message_t& frame, std::string_view fallback) {
  auto* msg = const_cast<zmq_msg_t*>(frame.handle());
  for (const char* property : {"Peer-Address", "User-Id"}) {
    const char* value = zmq_msg_gets(msg, property);
    if (value && *value) return value;
  }
  if (fallback.empty()) return {};
  // Routing ids are binary: print them as hex.
  std::string hex;
  for (unsigned char c : fallback) hex += fmt::format("{:02x}", c);
  return "routing id " + hex;
}

std::string_view body_name(const v1::Envelope& e) {
  switch (e.body_case()) {
    case v1::Envelope::kTasks: return "tasks";
    case v1::Envelope::kResults: return "results";
    case v1::Envelope::kHello: return "hello";
    case v1::Envelope::kCredit: return "credit";
    case v1::Envelope::kHeartbeat: return "heartbeat";
    case v1::Envelope::kWelcome: return "welcome";
    case v1::Envelope::kReconnect: return "reconnect";
    case v1::Envelope::kGoodbye: return "goodbye";
    case v1::Envelope::kBatchStart: return "batch_start";
    case v1::Envelope::kJobAccepted: return "job_accepted";
    case v1::Envelope::kAck: return "ack";
    case v1::Envelope::kBatchEnd: return "batch_end";
    case v1::Envelope::kKill: return "kill";
    case v1::Envelope::kCancelJob: return "cancel_job";
    case v1::Envelope::kSubmit: return "submit";
    case v1::Envelope::kSubmitReply: return "submit_reply";
    case v1::Envelope::kStatus: return "status";
    case v1::Envelope::kStatusReply: return "status_reply";
    case v1::Envelope::kCancel: return "cancel";
    case v1::Envelope::kCancelReply: return "cancel_reply";
    case v1::Envelope::kServiceInfoRequest: return "service_info_request";
    case v1::Envelope::kServiceInfo: return "service_info";
    case v1::Envelope::kResultsRequest: return "results_request";
    case v1::Envelope::kResultsReply: return "results_reply";
    case v1::Envelope::kSinkHeartbeat: return "sink_heartbeat";
    case v1::Envelope::kResendResults: return "resend_results";
    case v1::Envelope::kResultsNotHeld: return "results_not_held";
    case v1::Envelope::kCancelTasks: return "cancel_tasks";
    case v1::Envelope::kWorkers: return "workers";
    case v1::Envelope::kWorkersReply: return "workers_reply";
    case v1::Envelope::kMetricsSinkStats: return "metrics_sink_stats";
    case v1::Envelope::BODY_NOT_SET: break;
  }
  return "none";
}

}  // namespace taskfarm
