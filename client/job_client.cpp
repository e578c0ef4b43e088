#include "client/job_client.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>

#include "common/errors.h"
#include "common/net.h"
#include "common/signals.h"
#include "common/text.h"

namespace taskfarm::client {

JobClient::JobClient(std::string endpoint, int64_t timeout_ms, const CurveOptions& curve)
    : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms), curve_(curve, ctx_) {
  configure_socket(socket_, kMaxControlMessageBytes);
  curve_.make_client(socket_);
  connect_socket(socket_, endpoint_, "job service");
}

v1::Envelope JobClient::call(v1::Envelope& request) {
  // Replies to requests that timed out (the service was restarting) are not this one's.
  for (zmq::message_t stale; socket_.recv(stale, zmq::recv_flags::dontwait);) {
  }
  socket_.send(encode(request), zmq::send_flags::none);  // queued until connected
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  zmq::message_t frame;
  for (;;) {
    // Short slices: a refused key or a stop signal ends the wait at once.
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    try {
      zmq::poll(items, 1, std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(50)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (stop_requested()) throw Interrupted("interrupted");
    if ((items[0].revents & ZMQ_POLLIN) && socket_.recv(frame, zmq::recv_flags::dontwait)) break;
    if (const std::string& why = handshakes_.failure(); !why.empty()) {
      throw SetupError(fmt::format("cannot talk to the job service at {}: {}", endpoint_, why));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw NoAnswer(fmt::format(
          "no answer from the job service at {} within {:.1f} s (is taskfarm-ventilator --serve "
          "running?)",
          endpoint_, static_cast<double>(timeout_ms_) * 1e-3));
    }
  }
  Decoded d = decode(frame);
  if (!d) throw SetupError(fmt::format("bad reply from {}: {}", endpoint_, d.error));
  return std::move(*d.envelope);
}

std::string JobClient::submit(const v1::JobSpec& job) {
  v1::Envelope req;
  *req.mutable_submit()->mutable_job() = job;
  const size_t bytes = req.ByteSizeLong();
  if (bytes > kSmallRequestBytes) {
    // The service drops a connection that sends more than its limit: ask for it first, so a
    // big job is a clear error rather than a silence.
    v1::Envelope info_req;
    info_req.mutable_service_info_request();
    const v1::Envelope info = call(info_req);
    if (info.has_service_info() && bytes > info.service_info().max_job_bytes()) {
      throw SetupError(fmt::format(
          "the job is {:.1f} MiB, above the job service's limit of {:.1f} MiB "
          "(taskfarm-ventilator --max-job-mb)",
          static_cast<double>(bytes) / (1 << 20),
          static_cast<double>(info.service_info().max_job_bytes()) / (1 << 20)));
    }
  }
  const v1::Envelope rep = call(req);
  if (!rep.has_submit_reply()) throw SetupError("unexpected reply to submit");
  if (!rep.submit_reply().error().empty()) {
    throw SetupError(printable(rep.submit_reply().error(), 300));  // the service's words
  }
  return rep.submit_reply().job_id();
}

v1::StatusReply JobClient::status(const std::string& job) {
  v1::Envelope req;
  req.mutable_status()->set_job(job);
  v1::Envelope rep = call(req);
  if (!rep.has_status_reply()) throw SetupError("unexpected reply to status");
  if (!rep.status_reply().error().empty()) {
    throw SetupError(printable(rep.status_reply().error(), 300));  // the service's words
  }
  return std::move(*rep.mutable_status_reply());
}

std::string JobClient::cancel(const std::string& job) {
  v1::Envelope req;
  req.mutable_cancel()->set_job(job);
  const v1::Envelope rep = call(req);
  if (!rep.has_cancel_reply()) throw SetupError("unexpected reply to cancel");
  if (!rep.cancel_reply().error().empty()) {
    throw SetupError(printable(rep.cancel_reply().error(), 300));  // the service's words
  }
  return rep.cancel_reply().job_id();
}

v1::WorkersReply JobClient::workers() {
  v1::Envelope req;
  req.mutable_workers();
  v1::Envelope rep = call(req);
  if (!rep.has_workers_reply()) {
    throw SetupError("the job service does not list workers (an older taskfarm-ventilator?)");
  }
  if (!rep.workers_reply().error().empty()) throw SetupError(rep.workers_reply().error());
  return std::move(*rep.mutable_workers_reply());
}

}  // namespace taskfarm::client
