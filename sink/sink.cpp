#include "sink/sink.h"

#include <fmt/core.h>

#include <thread>

#include "common/log.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "sink/sink_core.h"

namespace taskfarm::sink {

struct Sink::Impl {
  SinkOptions opt;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  zmq::socket_t results{ctx, zmq::socket_type::pull};
  zmq::socket_t control{ctx, zmq::socket_type::pub};
  zmq::socket_t service{ctx, zmq::socket_type::router};  // `taskfarm results` clients
  std::string results_ep, control_ep, service_ep;
  RejectCounter service_rejects{"results service"};
  SinkCore core;

  Impl(SinkOptions o, const Clock& clock)
      : opt(std::move(o)),
        core(opt, clock, [this](std::string_view topic, v1::Envelope& env) {
          control.send(zmq::buffer(topic), zmq::send_flags::sndmore);
          control.send(encode(env), zmq::send_flags::none);
        }) {
    configure_socket(results, opt.max_message_bytes);
    results.set(zmq::sockopt::rcvhwm, 10000);
    configure_socket(control, kMaxSubscriptionBytes, 2000);  // linger: flush BatchEnd/Kill
    control.set(zmq::sockopt::sndhwm, 100000);
    curve.make_server(results, ServerSocket::kResults);
    curve.make_server(control, ServerSocket::kControl);
    results_ep = bind_socket(results, opt.results_bind, "results");
    control_ep = bind_socket(control, opt.control_bind, "control");
    if (!opt.results_service_bind.empty()) {
      configure_socket(service, kMaxSubscriptionBytes, 1000);  // requests are small
      service.set(zmq::sockopt::sndhwm, 16);  // replies carry up to 16 MiB of outputs
      curve.make_server(service, ServerSocket::kOutputs);
      service_ep = bind_socket(service, opt.results_service_bind, "results service");
    }
  }

  void serve_clients() {
    drain_socket(service, Framing::kRoutingId, service_rejects,
                 [this](std::string_view client, const zmq::message_t& frame) {
                   Decoded d = decode(frame);
                   if (!d) {
                     service_rejects.reject(d.error);
                     return;
                   }
                   v1::Envelope reply = core.on_client_request(*d.envelope);
                   if (reply.body_case() == v1::Envelope::BODY_NOT_SET) {
                     service_rejects.reject(fmt::format("unexpected '{}' message",
                                                        body_name(*d.envelope)));
                     return;
                   }
                   (void)try_send_to(service, client, encode(reply));
                 },
                 16);
  }

  // Tells the workers to exit, repeated for `ms`: a worker whose subscription is still joining
  // gets it too.
  void kill_workers(int ms) {
    v1::Envelope kill;
    kill.mutable_kill();
    for (int waited = 0; waited < ms; waited += 100) {
      control.send(zmq::buffer(kTopicCtl), zmq::send_flags::sndmore);
      control.send(encode(kill), zmq::send_flags::none);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  int run() {
    log::info("results on {}, control on {}{}", results_ep, control_ep,
              service_ep.empty() ? std::string() : ", results service on " + service_ep);
    zmq::message_t frame;
    std::optional<int> exit_code;
    const bool serving = !service_ep.empty();
    while (!stop_requested() && !exit_code) {
      zmq::pollitem_t items[] = {{results.handle(), 0, ZMQ_POLLIN, 0},
                                 {serving ? service.handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, serving ? 2 : 1, std::chrono::milliseconds(core.wait_ms()));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      // Drain what is queued, then publish one ack message for all of it.
      for (int i = 0; i < 1000; ++i) {
        std::optional<size_t> got;
        try {
          got = results.recv(frame, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t& e) {
          if (e.num() == EINTR) break;
          throw;
        }
        if (!got) break;
        const bool more = frame.more();
        core.on_frame(frame.data(), frame.size(), more, [&frame] { return peer_of(frame); },
                      curve.sent_by(frame, kRoleHead));
        while (frame.more()) (void)results.recv(frame, zmq::recv_flags::none);  // discard extras
      }
      core.flush_acks(/*now=*/false);
      if (serving && (items[1].revents & ZMQ_POLLIN)) serve_clients();
      core.progress();
      core.heartbeat();
      core.publish_stats();
      exit_code = core.finish_complete_jobs();
    }
    if (!exit_code) exit_code = core.stop();
    // One-shot: the batch is over (complete or interrupted); the workers go too.
    if (!opt.serve && !opt.keep_workers) kill_workers(stop_requested() ? 300 : 1000);
    return *exit_code;
  }
};

Sink::Sink(SinkOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Sink::~Sink() = default;
const std::string& Sink::results_endpoint() const { return impl_->results_ep; }
const std::string& Sink::control_endpoint() const { return impl_->control_ep; }
int Sink::run() { return impl_->run(); }

}  // namespace taskfarm::sink
