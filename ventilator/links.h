// The ventilator's sockets, each with the protocol spoken on it:
// - WorkerLink: the task ROUTER that workers' DEALERs connect to (hello, credit, heartbeats,
//   goodbye in; welcome, task batches, heartbeats, cancels, kills out);
// - SinkLink: PUSH to the sink's results socket (BatchStart, give-ups, cancels) and SUB to its
//   control socket (JobAccepted and acks on "ack", BatchEnd on "ctl");
// - JobService: the submission ROUTER for `taskfarm` clients (serve mode).
// They move and decode messages; decisions are VentilatorCore's.
#pragma once

#include <fmt/core.h>
#include <zmq.hpp>

#include <deque>
#include <string>

#include "common/net.h"
#include "common/protocol.h"
#include "common/security.h"

namespace taskfarm::ventilator {

class WorkerLink {
 public:
  // Binds `bind`. Throws: SetupError.
  WorkerLink(zmq::context_t& ctx, const Curve& curve, const std::string& bind);

  const std::string& endpoint() const { return endpoint_; }
  zmq::socket_t& socket() { return socket_; }
  RejectCounter& rejects() { return rejects_; }

  // Returns: false when the worker is gone or its queue is full (nothing was sent).
  bool send(const std::string& worker, v1::Envelope& env);

  // Reads queued messages; calls handle(routing id, envelope) for each valid one.
  template <typename Handler>
  void drain(Handler&& handle) {
    drain_socket(socket_, Framing::kRoutingId, rejects_,
                 [&](std::string_view worker, const zmq::message_t& frame) {
                   Decoded d = decode(frame);
                   if (!d) {
                     rejects_.reject(d.error, peer_of(frame, worker));
                     return;
                   }
                   handle(std::string(worker), *d.envelope);
                 });
  }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  RejectCounter rejects_{"task socket"};
};

class SinkLink {
 public:
  // Connects to the sink's two sockets. Throws: SetupError for a bad endpoint.
  SinkLink(zmq::context_t& ctx, const Curve& curve, const std::string& results,
           const std::string& control);

  zmq::socket_t& control() { return from_sink_; }
  RejectCounter& rejects() { return rejects_; }
  const std::string& endpoint() const { return control_ep_; }

  // Sends `env`, or keeps it until the sink can take it (give-ups must not be lost).
  void push(v1::Envelope& env);
  // Sends `env` if the sink can take it now; drops it otherwise.
  void try_push(v1::Envelope& env);
  // Sends what the sink could not take yet. Returns: messages still waiting.
  size_t flush();

  // Reads queued messages; calls handle(envelope) for each valid one.
  template <typename Handler>
  void drain(Handler&& handle) {
    drain_socket(from_sink_, Framing::kTopic, rejects_,
                 [&](std::string_view, const zmq::message_t& frame) {
                   Decoded d = decode(frame);
                   if (!d) {
                     rejects_.reject(fmt::format("from the sink: {}", d.error), peer_of(frame));
                     return;
                   }
                   handle(*d.envelope);
                 });
  }

 private:
  zmq::socket_t to_sink_;
  zmq::socket_t from_sink_;
  std::string control_ep_;
  RejectCounter rejects_{"sink control"};
  // Messages the PUSH socket could not take (sink gone, queue full): give-ups must not be lost.
  std::deque<zmq::message_t> outbox_;
};

class JobService {
 public:
  // Binds `bind` for requests of at most `max_request_bytes`. Throws: SetupError.
  JobService(zmq::context_t& ctx, const Curve& curve, const std::string& bind,
             int64_t max_request_bytes);

  const std::string& endpoint() const { return endpoint_; }
  zmq::socket_t& socket() { return socket_; }
  const RejectCounter& rejects() const { return rejects_; }

  // Reads queued requests; calls reply = handle(request) and sends the reply when it has a body.
  template <typename Handler>
  void drain(Handler&& handle) {
    drain_socket(socket_, Framing::kRoutingId, rejects_,
                 [&](std::string_view client, const zmq::message_t& frame) {
                   Decoded d = decode(frame);
                   if (!d) {
                     rejects_.reject(d.error, peer_of(frame, client));
                     return;
                   }
                   v1::Envelope reply = handle(*d.envelope);
                   if (reply.body_case() == v1::Envelope::BODY_NOT_SET) {
                     rejects_.reject(fmt::format("unexpected '{}' message from a client",
                                                 body_name(*d.envelope)));
                     return;
                   }
                   (void)try_send_to(socket_, client, encode(reply));
                 });
  }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  RejectCounter rejects_{"submission socket"};
};

}  // namespace taskfarm::ventilator
