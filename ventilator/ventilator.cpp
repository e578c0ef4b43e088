#include "ventilator/ventilator.h"

#include <fmt/core.h>

#include <deque>
#include <map>
#include <optional>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/signals.h"
#include "common/text.h"
#include "ventilator/job.h"

namespace taskfarm::ventilator {
namespace {

std::string job_hex(uint64_t id) { return fmt::format("{:016x}", id); }

}  // namespace

struct Ventilator::Impl {
  // One submitted job, from submission until it is forgotten.
  struct JobState {
    std::unique_ptr<Job> job;
    std::string state = "queued";  // queued -> running -> done | failed | cancelled
    v1::Envelope start;            // BatchStart, re-sent until the sink accepts the job
    int64_t next_start_ns = 0, start_backoff_ms = 20;
    int64_t submitted_ns = 0, started_ns = 0, finished_ns = 0;
    int64_t acked_at_ns = 0;       // every task acknowledged; BatchEnd should follow at once
    bool stop_workers = false;
    uint64_t failed = 0;
    uint64_t acked = 0;  // at the end
    std::optional<v1::Report> report;
    bool finished() const { return state == "done" || state == "failed" || state == "cancelled"; }
  };

  VentilatorOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  zmq::socket_t tasks{ctx, zmq::socket_type::router};
  zmq::socket_t to_sink{ctx, zmq::socket_type::push};
  zmq::socket_t from_sink{ctx, zmq::socket_type::sub};
  zmq::socket_t submit{ctx, zmq::socket_type::router};
  std::string tasks_ep, submit_ep;
  RejectCounter rejects{"task socket"};
  RejectCounter submit_rejects{"submission socket"};
  Dispatcher dispatcher;
  uint64_t epoch = random_u64();
  v1::Envelope scratch;  // reused for outgoing task batches
  // Kept outside `scratch`: Envelope::Clear() deletes its oneof body, and with it 1024 Tasks.
  v1::TaskBatch batch_scratch;
  std::map<uint64_t, JobState> jobs;
  std::deque<uint64_t> finished_order;  // for forgetting old finished jobs
  int64_t next_wait_log = 0;

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
    curve.make_server(tasks, ServerSocket::kTasks);
    curve.make_client(to_sink);
    curve.make_client(from_sink);
    tasks_ep = bind_socket(tasks, opt.tasks_bind, "task");
    if (!opt.submit_bind.empty()) {
      configure_socket(submit, opt.max_message_bytes, 1000);
      curve.make_server(submit, ServerSocket::kSubmit);
      submit_ep = bind_socket(submit, opt.submit_bind, "submission");
    }
    connect_socket(to_sink, opt.sink_results, "sink results");
    connect_socket(from_sink, opt.sink_control, "sink control");
  }

  // ------------------------------------------------------------------ jobs

  // Returns: the new job's id. Throws: SetupError for an invalid job.
  uint64_t add_job(v1::JobSpec spec) {
    validate_job(spec);
    if (spec.max_attempts() == 0) spec.set_max_attempts(opt.policy.max_attempts);
    uint64_t id;
    do id = random_u64(); while (id == 0 || jobs.count(id));
    JobState js;
    js.job = std::make_unique<Job>(id, std::move(spec));
    auto* bs = js.start.mutable_batch_start();
    bs->set_job_id(id);
    bs->set_name(js.job->spec().name());
    bs->set_total(js.job->total());
    bs->set_max_attempts(js.job->spec().max_attempts());
    bs->set_start_ns(clock.wall_ns());
    js.submitted_ns = clock.steady_ns();
    log::info("job '{}' ({}): {} tasks, priority {}", js.job->spec().name(), job_hex(id),
              js.job->total(), js.job->spec().priority());
    jobs.emplace(id, std::move(js));
    return id;
  }

  void finish_job(uint64_t id, JobState& js, std::string state) {
    js.state = std::move(state);
    js.finished_ns = clock.steady_ns();
    js.acked = dispatcher.job_acked(id);
    dispatcher.remove_job(id);
    log::info("job '{}' ({}) {}: {} tasks, {} failed, {:.3f} s", js.job->spec().name(),
              job_hex(id), js.state, js.job->total(), js.failed,
              static_cast<double>(js.finished_ns - js.submitted_ns) * 1e-9);
    finished_order.push_back(id);
    while (finished_order.size() > opt.keep_finished) {
      jobs.erase(finished_order.front());
      finished_order.pop_front();
    }
  }

  // Returns: the job named by an id (16 hex digits) or a name (the newest with that name).
  JobState* find_job(const std::string& key, uint64_t* id_out) {
    JobState* best = nullptr;
    for (auto& [id, js] : jobs) {
      const bool match = job_hex(id) == key || js.job->spec().name() == key;
      if (match && (!best || js.submitted_ns > best->submitted_ns)) {
        best = &js;
        *id_out = id;
      }
    }
    return best;
  }

  bool cancel_job(uint64_t id, JobState& js) {
    if (js.finished()) return false;
    v1::Envelope cancel;
    cancel.mutable_cancel_job()->set_job_id(id);
    to_sink.send(encode(cancel), zmq::send_flags::dontwait);
    for (const auto& w : dispatcher.worker_ids()) (void)send_to(w, cancel);  // drop queued tasks
    finish_job(id, js, "cancelled");
    return true;
  }

  // ------------------------------------------------------------------ workers

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

  void report_give_ups(const std::vector<GiveUp>& give_ups) {
    if (give_ups.empty()) return;
    v1::Envelope env;
    auto* batch = env.mutable_results();
    batch->mutable_worker()->set_host(host_name());  // no id: not a worker
    v1::Task task;
    for (const auto& g : give_ups) {
      auto it = jobs.find(g.task.job_id);
      if (it == jobs.end()) continue;
      it->second.job->fill(g.task.task_id, &task);
      auto* r = batch->add_results();
      r->set_job_id(g.task.job_id);
      r->set_task_id(g.task.task_id);
      r->set_attempt(g.task.attempt);
      r->set_status(v1::STATUS_FAILED);
      r->set_error(g.error);
      r->set_kernel(task.kernel());
      log::warn("task {} of job '{}' failed: {}", g.task.task_id, it->second.job->spec().name(),
                printable(g.error, 300));
    }
    if (batch->results_size() > 0) to_sink.send(encode(env), zmq::send_flags::none);
  }

  void ask_to_reconnect(const std::string& worker) {
    v1::Envelope env;
    env.mutable_reconnect();
    (void)send_to(worker, env);
  }

  void on_worker_message(const std::string& worker, const v1::Envelope& env) {
    switch (env.body_case()) {
      case v1::Envelope::kHello: {
        const auto& h = env.hello();
        log::info("worker {} joined ({} on {}, {} slots)", printable(h.worker().id()),
                  printable(h.worker().device()), printable(h.worker().host()), h.worker().slots());
        report_give_ups(dispatcher.on_hello(worker, h.worker(), h.credit()));
        v1::Envelope welcome;
        welcome.mutable_welcome()->set_epoch(epoch);
        welcome.mutable_welcome()->set_heartbeat_ms(static_cast<uint32_t>(opt.heartbeat_ms));
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

  // Reads [routing id][envelope] messages from a ROUTER socket; calls `handle` for valid ones.
  template <typename Handler>
  void drain_router(zmq::socket_t& socket, RejectCounter& counter, Handler&& handle) {
    zmq::message_t id, frame;
    for (int i = 0; i < 1000; ++i) {
      if (!socket.recv(id, zmq::recv_flags::dontwait)) return;
      if (!id.more()) {
        counter.reject("frame without routing id");
        continue;
      }
      (void)socket.recv(frame, zmq::recv_flags::none);
      if (frame.more()) {
        while (frame.more()) (void)socket.recv(frame, zmq::recv_flags::none);
        counter.reject("multipart message");
        continue;
      }
      Decoded d = decode(frame);
      if (!d) {
        counter.reject(d.error);
        continue;
      }
      handle(id.to_string(), *d.envelope);
    }
  }

  void dispatch() {
    for (;;) {
      auto assignments = dispatcher.assign();
      if (assignments.empty()) return;
      for (const auto& a : assignments) {
        batch_scratch.Clear();  // keeps the Task objects for reuse
        const int64_t now = clock.wall_ns();
        const Job* job = nullptr;
        uint64_t job_id = 0;
        for (const auto& t : a.tasks) {
          if (!job || t.job_id != job_id) job = jobs.at(job_id = t.job_id).job.get();
          auto* task = batch_scratch.add_tasks();
          job->fill(t.task_id, task);
          task->set_attempt(t.attempt);
          task->set_sent_ns(now);
        }
        bool sent;
        {
          // Lend the batch to the envelope; take it back even if send_to throws.
          struct GiveBack {
            v1::Envelope& envelope;
            ~GiveBack() { (void)envelope.release_tasks(); }
          } give_back{scratch};
          scratch.set_allocated_tasks(&batch_scratch);
          sent = send_to(a.worker, scratch);
        }
        if (!sent) {
          dispatcher.unsend(a);
          report_give_ups(dispatcher.on_unreachable(a.worker));
        }
      }
    }
  }

  void heartbeat_workers() {
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_epoch(epoch);
    for (const auto& w : dispatcher.worker_ids()) {
      if (!send_to(w, hb)) report_give_ups(dispatcher.on_unreachable(w));
    }
  }

  // ------------------------------------------------------------------ sink

  void drain_sink() {
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
        case v1::Envelope::kJobAccepted: {
          auto it = jobs.find(env.job_accepted().job_id());
          if (it == jobs.end() || it->second.state != "queued") break;
          JobState& js = it->second;
          js.state = "running";
          js.started_ns = clock.steady_ns();
          uint64_t task_bytes = 0;
          for (const auto& t : js.job->spec().tasks()) {
            task_bytes = std::max<uint64_t>(task_bytes, t.payload().size());
          }
          dispatcher.add_job(it->first, js.job->total(), js.job->spec().priority(),
                             js.job->spec().max_attempts(), task_bytes);
          log::info("sink accepted job '{}'; dispatching to {} workers", js.job->spec().name(),
                    dispatcher.workers());
          break;
        }
        case v1::Envelope::kBatchEnd: {
          const auto& be = env.batch_end();
          auto it = jobs.find(be.job_id());
          if (it == jobs.end() || it->second.finished()) break;
          it->second.stop_workers = be.stop_workers();
          it->second.failed = be.tasks_failed();
          if (be.has_report()) it->second.report = be.report();
          finish_job(it->first, it->second, be.tasks_failed() > 0 ? "failed" : "done");
          break;
        }
        default: break;  // Kill and others are for workers
      }
    }
  }

  // Re-sends BatchStart for jobs the sink has not accepted yet, with back-off.
  void announce_jobs(int64_t now) {
    bool waiting = false;
    for (auto& [id, js] : jobs) {
      if (js.state != "queued") continue;
      waiting = true;
      if (now < js.next_start_ns) continue;
      to_sink.send(encode(js.start), zmq::send_flags::dontwait);
      js.next_start_ns = now + ms_to_ns(js.start_backoff_ms);
      js.start_backoff_ms = std::min<int64_t>(js.start_backoff_ms * 2, 1000);
      if (opt.sink_wait_ms > 0 && now - js.submitted_ns > ms_to_ns(opt.sink_wait_ms)) {
        throw SetupError(fmt::format("no answer from the sink at {} within {:.1f} s",
                                     opt.sink_control, opt.sink_wait_ms * 1e-3));
      }
    }
    if (!waiting) {
      next_wait_log = now + ms_to_ns(2000);
    } else if (now >= next_wait_log) {
      log::info("waiting for the sink at {}", opt.sink_control);
      next_wait_log = now + ms_to_ns(10000);
    }
  }

  // Jobs whose every task is acknowledged get their BatchEnd at once; if it was lost, they
  // finish on the acks alone after a moment.
  void finish_acked_jobs(int64_t now) {
    for (auto& [id, js] : jobs) {
      if (js.state != "running" || !dispatcher.job_done(id)) continue;
      if (js.acked_at_ns == 0) js.acked_at_ns = now;
      if (now - js.acked_at_ns > ms_to_ns(2000)) {
        js.failed = dispatcher.job_failed(id);
        finish_job(id, js, js.failed > 0 ? "failed" : "done");
      }
    }
  }

  // ------------------------------------------------------------------ job service

  v1::JobStatus status_of(uint64_t id, const JobState& js) const {
    v1::JobStatus st;
    st.set_job_id(job_hex(id));
    st.set_name(js.job->spec().name());
    st.set_state(js.state);
    st.set_total(js.job->total());
    st.set_priority(js.job->spec().priority());
    const int64_t now = clock.steady_ns();
    st.set_age_s(static_cast<double>(now - js.submitted_ns) * 1e-9);
    if (js.finished()) {
      st.set_done(js.state == "cancelled" ? js.acked : js.job->total());
      st.set_failed(js.failed);
      if (js.report) {
        *st.mutable_report() = *js.report;
        st.set_done(js.report->tasks_ok() + js.report->tasks_failed());
        st.set_tasks_per_s(js.report->tasks_per_s());
      }
    } else {
      st.set_done(dispatcher.job_acked(id));
      st.set_failed(dispatcher.job_failed(id));
      if (js.started_ns > 0 && now > js.started_ns) {
        st.set_tasks_per_s(static_cast<double>(st.done()) / (static_cast<double>(now - js.started_ns) * 1e-9));
      }
    }
    return st;
  }

  void on_client(const std::string& client, const v1::Envelope& env) {
    v1::Envelope reply;
    switch (env.body_case()) {
      case v1::Envelope::kSubmit: {
        auto* r = reply.mutable_submit_reply();
        try {
          r->set_job_id(job_hex(add_job(env.submit().job())));
        } catch (const SetupError& e) {
          r->set_error(e.what());
          log::warn("refused a job: {}", e.what());
        }
        break;
      }
      case v1::Envelope::kStatus: {
        auto* r = reply.mutable_status_reply();
        const std::string& key = env.status().job();
        if (key.empty()) {
          for (const auto& [id, js] : jobs) {
            auto st = status_of(id, js);
            st.clear_report();  // the list stays small
            *r->add_jobs() = std::move(st);
          }
        } else {
          uint64_t id = 0;
          if (JobState* js = find_job(key, &id)) {
            *r->add_jobs() = status_of(id, *js);
          } else {
            r->set_error(fmt::format("unknown job '{}'", key));
          }
        }
        break;
      }
      case v1::Envelope::kCancel: {
        auto* r = reply.mutable_cancel_reply();
        uint64_t id = 0;
        JobState* js = find_job(env.cancel().job(), &id);
        if (!js) {
          r->set_error(fmt::format("unknown job '{}'", env.cancel().job()));
        } else if (!cancel_job(id, *js)) {
          r->set_error(fmt::format("job '{}' is already {}", env.cancel().job(), js->state));
        } else {
          r->set_job_id(job_hex(id));
        }
        break;
      }
      default:
        submit_rejects.reject(fmt::format("unexpected '{}' message from a client", body_name(env)));
        return;
    }
    try {
      submit.send(zmq::buffer(client), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      submit.send(encode(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EAGAIN && e.num() != EHOSTUNREACH) throw;
    }
  }

  // ------------------------------------------------------------------ event loop

  // Runs the loop until `done()` or a stop signal. Returns: whether `done()` ended it.
  template <typename Done>
  bool loop(Done&& done) {
    int64_t next_heartbeat = 0;
    const bool serving = !submit_ep.empty();
    next_wait_log = clock.steady_ns() + ms_to_ns(2000);
    while (!stop_requested()) {
      const int64_t now = clock.steady_ns();
      announce_jobs(now);
      if (now >= next_heartbeat) {
        heartbeat_workers();
        report_give_ups(dispatcher.expire());
        next_heartbeat = now + ms_to_ns(opt.heartbeat_ms);
      }
      zmq::pollitem_t items[] = {{tasks.handle(), 0, ZMQ_POLLIN, 0},
                                 {from_sink.handle(), 0, ZMQ_POLLIN, 0},
                                 {serving ? submit.handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, serving ? 3 : 2,
                  std::chrono::milliseconds(std::min<int64_t>(opt.heartbeat_ms, 100)));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) {
        drain_router(tasks, rejects, [this](const std::string& w, const v1::Envelope& env) {
          on_worker_message(w, env);
        });
      }
      if (items[1].revents & ZMQ_POLLIN) drain_sink();
      if (serving && (items[2].revents & ZMQ_POLLIN)) {
        drain_router(submit, submit_rejects, [this](const std::string& c, const v1::Envelope& env) {
          on_client(c, env);
        });
      }
      dispatch();
      finish_acked_jobs(clock.steady_ns());
      if (done()) return true;
    }
    return false;
  }

  int run_batch(v1::JobSpec spec) {
    const uint64_t id = add_job(std::move(spec));
    log::info("tasks on {}, sink at {}", tasks_ep, opt.sink_results);
    const bool finished = loop([&] { return jobs.at(id).finished(); });
    JobState& js = jobs.at(id);
    if (!finished) {
      log::warn("interrupted: {}/{} tasks acknowledged", dispatcher.job_acked(id), js.job->total());
      return kExitInterrupted;
    }
    if (js.stop_workers) {
      // Direct and reliable, for workers whose subscription missed the sink's Kill.
      v1::Envelope kill;
      kill.mutable_kill();
      for (const auto& w : dispatcher.worker_ids()) (void)send_to(w, kill);
    }
    return js.failed > 0 ? kExitTasksFailed : kExitOk;
  }

  int serve() {
    log::info("serving jobs on {}; tasks on {}, sink at {}", submit_ep, tasks_ep,
              opt.sink_results);
    loop([] { return false; });
    log::info("stopping");
    return kExitOk;
  }
};

Ventilator::Ventilator(VentilatorOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Ventilator::~Ventilator() = default;
const std::string& Ventilator::tasks_endpoint() const { return impl_->tasks_ep; }
const std::string& Ventilator::submit_endpoint() const { return impl_->submit_ep; }
int Ventilator::run_batch(v1::JobSpec spec) { return impl_->run_batch(std::move(spec)); }
int Ventilator::serve() { return impl_->serve(); }

}  // namespace taskfarm::ventilator
