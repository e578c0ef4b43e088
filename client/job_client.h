// Client side of the job service (taskfarm-ventilator --serve, ROUTER :5560): one request, one
// reply, with a timeout so that a missing server is a clear error and never a hang.
#pragma once

#include <zmq.hpp>

#include <cstdint>
#include <string>

#include "common/errors.h"
#include "common/protocol.h"
#include "common/security.h"

namespace taskfarm::client {

// No reply within the timeout: the service is not running, or restarting.
class NoAnswer : public SetupError {
 public:
  using SetupError::SetupError;
};

class JobClient {
 public:
  // Requests above this size are checked against the service's limit before they are sent.
  static constexpr size_t kSmallRequestBytes = size_t{1} << 20;

  // Connects to `endpoint` (nothing is sent yet). Throws: SetupError for a bad endpoint.
  JobClient(std::string endpoint, int64_t timeout_ms, const CurveOptions& curve = {});

  // Sends `request` and waits for the reply.
  // Returns: the reply. Throws: NoAnswer when no reply comes within the timeout (a late one is
  // dropped before the next request); SetupError naming the reason when the CurveZMQ handshake
  // failed (key refused, server key mismatch); Interrupted when a stop signal arrives.
  v1::Envelope call(v1::Envelope& request);

  // Convenience wrappers. Throw: SetupError with the server's error text, or as call().
  std::string submit(const v1::JobSpec& job);
  v1::StatusReply status(const std::string& job);
  std::string cancel(const std::string& job);
  v1::WorkersReply workers();

  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  int64_t timeout_ms_;
  zmq::context_t ctx_{1};
  Curve curve_;
  zmq::socket_t socket_{ctx_, zmq::socket_type::dealer};
  HandshakeWatch handshakes_{ctx_, socket_, curve_.enabled()};  // after the socket it watches
};

}  // namespace taskfarm::client
