#include "ventilator/ventilator.h"

#include <fmt/core.h>

#include <optional>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/signals.h"
#include "ventilator/job.h"

namespace taskfarm::ventilator {


struct Ventilator::Impl {
  VentilatorOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  zmq::socket_t tasks{ctx, zmq::socket_type::router};
  zmq::socket_t to_sink{ctx, zmq::socket_type::push};
  zmq::socket_t from_sink{ctx, zmq::socket_type::sub};
  std::string tasks_ep;
  RejectCounter rejects{"task socket"};
  Dispatcher dispatcher;
  uint64_t epoch = random_u64();
  v1::Envelope scratch;  // reused for outgoing task batches

  Impl(VentilatorOptions o, const Clock& c)
      : opt(std::move(o)), clock(c), dispatcher(opt.policy, c) {
    configure_socket(tasks, opt.max_message_bytes, 1000);  // linger: deliver the final kills
    tasks.set(zmq::sockopt::router_mandatory, 1);  // report unreachable workers, never drop
    tasks.set(zmq::sockopt::sndhwm, 100000);
    configure_socket(to_sink, opt.max_message_bytes, 2000);
    configure_socket(from_sink, opt.max_message_bytes);
    from_sink.set(zmq::sockopt::rcvhwm, 100000);
    from_sink.set(zmq::sockopt::subscribe, kTopicAck);
    from_sink.set(zmq::sockopt::subscribe, kTopicCtl);
    tasks_ep = bind_socket(tasks, opt.tasks_bind, "task");
    connect_socket(to_sink, opt.sink_results, "sink results");
    connect_socket(from_sink, opt.sink_control, "sink control");
  }

  // Returns: false when the worker is gone (EHOSTUNREACH) or its queue is full.
  bool send_to(const std::string& worker, v1::Envelope& env) {
    try {
      if (!tasks.send(zmq::buffer(worker), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return false;
      }
      (void)tasks.send(encode(env), zmq::send_flags::none);
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH || e.num() == EAGAIN) return false;
      throw;
    }
  }

  void report_give_ups(const Job& job, const std::vector<GiveUp>& give_ups) {
    if (give_ups.empty()) return;
    v1::Envelope env;
    auto* batch = env.mutable_results();
    batch->mutable_worker()->set_id("ventilator");
    batch->mutable_worker()->set_host(host_name());
    v1::Task task;
    for (const auto& g : give_ups) {
      job.fill(g.task.task_id, &task);
      auto* r = batch->add_results();
      r->set_job_id(g.task.job_id);
      r->set_task_id(g.task.task_id);
      r->set_attempt(g.task.attempt);
      r->set_status(v1::STATUS_FAILED);
      r->set_error(g.error);
      r->set_kernel(task.kernel());
      log::warn("task {} failed: {}", g.task.task_id, g.error);
    }
    to_sink.send(encode(env), zmq::send_flags::none);
  }

  void on_worker_message(const Job& job, const std::string& worker, const v1::Envelope& env) {
    switch (env.body_case()) {
      case v1::Envelope::kHello: {
        const auto& h = env.hello();
        log::info("worker {} joined ({} on {}, {} slots)", h.worker().id(), h.worker().device(),
                  h.worker().host(), h.worker().slots());
        report_give_ups(job, dispatcher.on_hello(worker, h.worker(), h.credit()));
        v1::Envelope welcome;
        welcome.mutable_welcome()->set_epoch(epoch);
        (void)send_to(worker, welcome);
        break;
      }
      case v1::Envelope::kCredit:
        if (!dispatcher.on_credit(worker, env.credit().credit())) ask_to_reconnect(worker);
        break;
      case v1::Envelope::kHeartbeat:
        if (!dispatcher.on_heartbeat(worker)) ask_to_reconnect(worker);
        break;
      case v1::Envelope::kGoodbye:
        dispatcher.on_goodbye(worker, env.goodbye());
        log::info("worker leaving; {} unstarted tasks returned", env.goodbye().returned_size());
        break;
      default:
        rejects.reject(fmt::format("unexpected '{}' message from a worker", body_name(env)));
    }
  }

  void ask_to_reconnect(const std::string& worker) {
    v1::Envelope env;
    env.mutable_reconnect();
    (void)send_to(worker, env);
  }

  void drain_workers(const Job& job) {
    zmq::message_t id, frame, extra;
    for (int i = 0; i < 1000; ++i) {
      if (!tasks.recv(id, zmq::recv_flags::dontwait)) return;
      if (!id.more()) {
        rejects.reject("frame without routing id");
        continue;
      }
      (void)tasks.recv(frame, zmq::recv_flags::none);
      if (frame.more()) {
        while (frame.more()) (void)tasks.recv(frame, zmq::recv_flags::none);
        rejects.reject("multipart message from a worker");
        continue;
      }
      Decoded d = decode(frame);
      if (!d) {
        rejects.reject(d.error);
        continue;
      }
      on_worker_message(job, id.to_string(), *d.envelope);
    }
  }

  struct SinkState {
    bool accepted = false;
    bool ended = false;
    bool stop_workers = false;
    uint64_t failed = 0;  // from BatchEnd
  };

  void drain_sink(uint64_t job_id, SinkState& state) {
    zmq::message_t topic, frame;
    for (int i = 0; i < 1000; ++i) {
      if (!from_sink.recv(topic, zmq::recv_flags::dontwait)) return;
      if (!topic.more()) continue;
      (void)from_sink.recv(frame, zmq::recv_flags::none);
      while (frame.more()) (void)from_sink.recv(frame, zmq::recv_flags::none);
      Decoded d = decode(frame);
      if (!d) {
        rejects.reject(fmt::format("from sink: {}", d.error));
        continue;
      }
      const auto& env = *d.envelope;
      switch (env.body_case()) {
        case v1::Envelope::kAck: dispatcher.on_ack(env.ack()); break;
        case v1::Envelope::kJobAccepted:
          if (env.job_accepted().job_id() == job_id && !state.accepted) {
            state.accepted = true;
            log::info("sink accepted the batch; dispatching to {} workers", dispatcher.workers());
          }
          break;
        case v1::Envelope::kBatchEnd:
          if (env.batch_end().job_id() == job_id) {
            state.ended = true;
            state.stop_workers = env.batch_end().stop_workers();
            state.failed = env.batch_end().tasks_failed();
          }
          break;
        default: break;  // Kill and others are for workers
      }
    }
  }

  void dispatch(const Job& job) {
    for (;;) {
      auto assignments = dispatcher.assign();
      if (assignments.empty()) return;
      for (const auto& a : assignments) {
        scratch.Clear();
        auto* batch = scratch.mutable_tasks();
        const int64_t now = clock.wall_ns();
        for (const auto& t : a.tasks) {
          auto* task = batch->add_tasks();
          job.fill(t.task_id, task);
          task->set_attempt(t.attempt);
          task->set_sent_ns(now);
        }
        if (!send_to(a.worker, scratch)) {
          dispatcher.unsend(a);
          report_give_ups(job, dispatcher.on_unreachable(a.worker));
        }
      }
    }
  }

  void heartbeat_workers(const Job& job) {
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_epoch(epoch);
    for (const auto& w : dispatcher.worker_ids()) {
      if (!send_to(w, hb)) report_give_ups(job, dispatcher.on_unreachable(w));
    }
  }

  int run_batch(v1::JobSpec spec) {
    validate_job(spec);
    const Job job(random_u64(), std::move(spec));
    dispatcher.add_job(job.id(), job.total(), job.spec().priority());

    v1::Envelope start;
    auto* bs = start.mutable_batch_start();
    bs->set_job_id(job.id());
    bs->set_name(job.spec().name());
    bs->set_total(job.total());
    bs->set_max_attempts(job.spec().max_attempts());
    bs->set_start_ns(clock.wall_ns());
    log::info("batch '{}' ({:016x}): {} tasks; tasks on {}, sink at {}", job.spec().name(),
              job.id(), job.total(), tasks_ep, opt.sink_results);

    SinkState sink;
    const int64_t t0 = clock.steady_ns();
    int64_t next_start = 0, next_heartbeat = 0, next_wait_log = t0 + ms_to_ns(2000);
    int64_t start_backoff_ms = 20;
    int64_t done_at = 0;  // the sink's answer is lost until our SUB has joined
    while (!stop_requested()) {
      const int64_t now = clock.steady_ns();
      if (!sink.accepted && now >= next_start) {
        to_sink.send(encode(start), zmq::send_flags::dontwait);
        next_start = now + ms_to_ns(start_backoff_ms);
        start_backoff_ms = std::min<int64_t>(start_backoff_ms * 2, 1000);
        if (now >= next_wait_log) {
          log::info("waiting for the sink at {}", opt.sink_control);
          next_wait_log = now + ms_to_ns(10000);
        }
        if (opt.sink_wait_ms > 0 && now - t0 > ms_to_ns(opt.sink_wait_ms)) {
          throw SetupError(fmt::format("no answer from the sink at {} within {:.1f} s",
                                       opt.sink_control, opt.sink_wait_ms * 1e-3));
        }
      }
      if (now >= next_heartbeat) {
        heartbeat_workers(job);
        report_give_ups(job, dispatcher.expire());
        next_heartbeat = now + ms_to_ns(opt.heartbeat_ms);
      }
      zmq::pollitem_t items[] = {{tasks.handle(), 0, ZMQ_POLLIN, 0},
                                 {from_sink.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(std::min<int64_t>(opt.heartbeat_ms, 100)));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) drain_workers(job);
      if (items[1].revents & ZMQ_POLLIN) drain_sink(job.id(), sink);
      if (sink.accepted) dispatch(job);
      if (dispatcher.job_done(job.id()) && !sink.ended && done_at == 0) done_at = now;
      // The sink's BatchEnd follows its last ack at once; wait briefly for it.
      if (sink.ended || (done_at > 0 && now - done_at > ms_to_ns(2000))) {
        if (sink.stop_workers) {
          // Direct and reliable, for workers whose subscription missed the sink's Kill.
          v1::Envelope kill;
          kill.mutable_kill();
          for (const auto& w : dispatcher.worker_ids()) (void)send_to(w, kill);
        }
        const uint64_t failed = sink.ended ? sink.failed : dispatcher.job_failed(job.id());
        log::info("batch '{}' complete: {} tasks, {} failed, {} re-issued, {:.3f} s",
                  job.spec().name(), job.total(), failed, dispatcher.reissued(),
                  static_cast<double>(clock.steady_ns() - t0) * 1e-9);
        return failed > 0 ? kExitTasksFailed : kExitOk;
      }
    }
    log::warn("interrupted: {}/{} tasks acknowledged", dispatcher.job_acked(job.id()), job.total());
    return kExitInterrupted;
  }
};

Ventilator::Ventilator(VentilatorOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Ventilator::~Ventilator() = default;
const std::string& Ventilator::tasks_endpoint() const { return impl_->tasks_ep; }
int Ventilator::run_batch(v1::JobSpec spec) { return impl_->run_batch(std::move(spec)); }

}  // namespace taskfarm::ventilator
