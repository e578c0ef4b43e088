// Envelope encoding and defensive decoding. Every frame on every socket is one Envelope.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "taskfarm.pb.h"

namespace taskfarm {


inline constexpr uint32_t kProtocolVersion = 1;

// Default ports (DESIGN.md).
inline constexpr int kTasksPort = 5557;
inline constexpr int kResultsPort = 5558;
inline constexpr int kControlPort = 5559;
inline constexpr int kSubmitPort = 5560;
inline constexpr int kResultsServicePort = 5561;  // the sink's outputs, for clients

// Topics of the sink's control PUB socket: [topic][envelope].
inline constexpr std::string_view kTopicAck = "ack";  // to the ventilator: JobAccepted, Ack
inline constexpr std::string_view kTopicCtl = "ctl";  // to everyone: BatchEnd, Kill

// Largest frame each socket accepts (ZMQ_MAXMSGSIZE; a bigger frame drops the connection), sized
// to what its messages can need, so that no peer can make a process buffer more (README,
// "Message size limits"):
// - task messages to workers: one task with its inline payload must fit (or a batch of 8 MiB);
inline constexpr int64_t kDefaultMaxMessageBytes = int64_t{256} << 20;
// - a submitted job (a job file, with its payloads): `--max-job-mb` on the service and client;
inline constexpr int64_t kDefaultMaxJobBytes = int64_t{64} << 20;
// - worker -> ventilator: hello, credit, heartbeats, a goodbye listing its unstarted tasks;
inline constexpr int64_t kMaxWorkerMessageBytes = int64_t{32} << 20;
// - acks, batch ends with their report, status replies;
inline constexpr int64_t kMaxControlMessageBytes = int64_t{64} << 20;
// - subscriptions arriving at a PUB socket.
inline constexpr int64_t kMaxSubscriptionBytes = int64_t{64} << 10;
// Attempts a task gets when neither the job nor --max-attempts says (the one place it is set).
inline constexpr uint32_t kDefaultMaxAttempts = 3;
inline constexpr uint32_t kMaxMaxAttempts = 100;

// Room an Envelope and Task need around a payload.
inline constexpr int64_t kEnvelopeOverheadBytes = 4096;

// This process's farm (`--farm NAME`): stamped on every message it sends; messages of another
// farm are rejected by decode. Empty: none yet (a worker or sink learns its ventilator's).
void set_farm(std::string_view name);
const std::string& farm_name();
uint64_t farm_id();  // 0 while none is set
// Returns: the id a farm name stands for on the wire (never 0).
uint64_t farm_id_of(std::string_view name);

// Returns: `body` serialized into a new message, with the version and farm stamped.
zmq::message_t encode(v1::Envelope& envelope);

// Outcome of decoding one frame: an envelope, or why the frame was rejected.
struct Decoded {
  std::optional<v1::Envelope> envelope;
  std::string error;  // set when envelope is empty
  explicit operator bool() const { return envelope.has_value(); }
};

// Returns: the envelope in `frame`, or an error for an empty frame, undecodable bytes, a
// missing body, another protocol version or another farm. Never throws.
Decoded decode(const void* data, size_t size);
// As decode(), into `envelope` (which may live on an arena). Returns: why the frame was
// rejected, or nullopt.
std::optional<std::string> decode_into(const void* data, size_t size, v1::Envelope& envelope);
inline Decoded decode(const zmq::message_t& frame) { return decode(frame.data(), frame.size()); }

// Counts rejected frames (garbage, wrong version, bad framing) and logs them rate-limited: the
// first few at once, then one warning per kWarnInterval with how many more came, so a bad peer
// is named in the log without flooding it. The count is exported as a metric.
class RejectCounter {
 public:
  static constexpr int kWarnFirst = 5;
  static constexpr std::chrono::seconds kWarnInterval{10};

  explicit RejectCounter(std::string where) : where_(std::move(where)) {}
  // Records one rejection by `peer` (an address or key; empty when unknown).
  void reject(std::string_view why, std::string_view peer = {});
  uint64_t count() const { return count_; }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
  uint64_t count_ = 0;
  uint64_t unlogged_ = 0;  // rejections since the last warning
  std::chrono::steady_clock::time_point next_warn_{};
};

// Returns: who sent `frame`, for logs: the TCP peer address, else the CURVE public key, else
// `fallback` (a routing id, say). Never throws.
std::string peer_of(const zmq::message_t& frame, std::string_view fallback = {});

// Returns: the name of the envelope's body ("tasks", "results", ...), for logs.
std::string_view body_name(const v1::Envelope& envelope);

}  // namespace taskfarm
