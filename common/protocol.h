// Envelope encoding and defensive decoding. Every frame on every socket is one Envelope.
#pragma once

#include <zmq.hpp>

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

// Returns: `body` serialized into a new message, with the version stamped.
zmq::message_t encode(v1::Envelope& envelope);

// Outcome of decoding one frame: an envelope, or why the frame was rejected.
struct Decoded {
  std::optional<v1::Envelope> envelope;
  std::string error;  // set when envelope is empty
  explicit operator bool() const { return envelope.has_value(); }
};

// Returns: the envelope in `frame`, or an error for an empty frame, undecodable bytes, a
// missing body or another protocol version. Never throws.
Decoded decode(const void* data, size_t size);
// As decode(), into `envelope` (which may live on an arena). Returns: why the frame was
// rejected, or nullopt.
std::optional<std::string> decode_into(const void* data, size_t size, v1::Envelope& envelope);
inline Decoded decode(const zmq::message_t& frame) { return decode(frame.data(), frame.size()); }

// Counts and rate-limits the logging of rejected frames (garbage, wrong version, bad framing).
class RejectCounter {
 public:
  explicit RejectCounter(std::string where) : where_(std::move(where)) {}
  // Records one rejection; logs the first few and then every 1000th.
  void reject(std::string_view why);
  uint64_t count() const { return count_; }

 private:
  std::string where_;
  uint64_t count_ = 0;
};

// Returns: the name of the envelope's body ("tasks", "results", ...), for logs.
std::string_view body_name(const v1::Envelope& envelope);

}  // namespace taskfarm
