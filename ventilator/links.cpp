#include "ventilator/links.h"

#include <fmt/core.h>


namespace taskfarm::ventilator {

// ------------------------------------------------------------------ WorkerLink

WorkerLink::WorkerLink(zmq::context_t& ctx, const Curve& curve, const std::string& bind)
    : socket_(ctx, zmq::socket_type::router) {
  configure_socket(socket_, kMaxWorkerMessageBytes, 1000);  // linger: deliver the final kills
  socket_.set(zmq::sockopt::router_mandatory, 1);  // report unreachable workers, never drop
  socket_.set(zmq::sockopt::sndhwm, 100000);
  curve.make_server(socket_, ServerSocket::kTasks);
  endpoint_ = bind_socket(socket_, bind, "task");
}

bool WorkerLink::send(const std::string& worker, v1::Envelope& env) {
  return try_send_to(socket_, worker, encode(env));
}

// ------------------------------------------------------------------ SinkLink

SinkLink::SinkLink(zmq::context_t& ctx, const Curve& curve, const std::string& results,
                   const std::string& control)
    : to_sink_(ctx, zmq::socket_type::push), from_sink_(ctx, zmq::socket_type::sub),
      control_ep_(control) {
  configure_socket(to_sink_, kMaxSubscriptionBytes, 2000);  // linger: deliver the last cancel
  configure_socket(from_sink_, kMaxControlMessageBytes);
  from_sink_.set(zmq::sockopt::rcvhwm, 100000);
  from_sink_.set(zmq::sockopt::subscribe, kTopicAck);
  from_sink_.set(zmq::sockopt::subscribe, kTopicCtl);
  curve.make_client(to_sink_);
  curve.make_client(from_sink_);
  connect_socket(to_sink_, results, "sink results");
  connect_socket(from_sink_, control, "sink control");
}

void SinkLink::push(v1::Envelope& env) {
  outbox_.push_back(encode(env));
  flush();
}

size_t SinkLink::flush() {
  while (!outbox_.empty() && try_send(to_sink_, outbox_.front())) outbox_.pop_front();
  return outbox_.size();
}

void SinkLink::try_push(v1::Envelope& env) { (void)try_send(to_sink_, encode(env)); }

// ------------------------------------------------------------------ JobService

JobService::JobService(zmq::context_t& ctx, const Curve& curve, const std::string& bind,
                       int64_t max_request_bytes)
    : socket_(ctx, zmq::socket_type::router) {
  configure_socket(socket_, max_request_bytes + kEnvelopeOverheadBytes, 1000);
  curve.make_server(socket_, ServerSocket::kSubmit);
  endpoint_ = bind_socket(socket_, bind, "submission");
}

}  // namespace taskfarm::ventilator
