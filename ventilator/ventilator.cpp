#include "ventilator/ventilator.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/signals.h"
#include "common/text.h"
#include "ventilator/links.h"

namespace taskfarm::ventilator {

// The event loop and the decisions that join the parts: JobTable (jobs), Dispatcher (leases
// and credits), and the three links (workers, sink, clients).
struct Ventilator::Impl {
  VentilatorOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  WorkerLink workers{ctx, curve, opt.tasks_bind};
  SinkLink sink{ctx, curve, opt.sink_results, opt.sink_control};
  std::unique_ptr<JobService> service;
  Dispatcher dispatcher;
  JobTable jobs;
  uint64_t epoch = random_u64();
  int64_t next_wait_log = 0;

  Impl(VentilatorOptions o, const Clock& c)
      : opt(std::move(o)), clock(c), dispatcher(opt.policy, c), jobs(c, opt.table_limits) {
    if (!opt.submit_bind.empty()) {
      service = std::make_unique<JobService>(ctx, curve, opt.submit_bind, opt.max_job_bytes);
    }
  }

  // ------------------------------------------------------------------ jobs

  // Returns: the new job. Throws: SetupError for an invalid job or a full table.
  JobRecord& add_job(v1::JobSpec spec, const std::string& where) {
    validate_job(spec, where, opt.job_limits);
    return jobs.add(std::move(spec), opt.policy.max_attempts);
  }

  void finish_job(JobRecord& job, v1::JobState state) {
    job.done = dispatcher.job_acked(job.id);
    if (!job.report) job.failed = dispatcher.job_failed(job.id);
    dispatcher.remove_job(job.id);
    log::info("job '{}' ({}) {}: {} tasks, {} failed, {:.3f} s", printable(job.name),
              job_hex(job.id), job_state_name(state), job.total, job.failed,
              static_cast<double>(clock.steady_ns() - job.submitted_ns) * 1e-9);
    jobs.finish(job, state);
  }

  // Ends a job before its last task: the sink writes a partial report, workers drop its tasks.
  bool end_early(JobRecord& job, v1::JobState state) {
    if (job.finished()) return false;
    sink.send_end(job.id, state);
    v1::Envelope cancel;
    cancel.mutable_cancel_job()->set_job_id(job.id);
    cancel.mutable_cancel_job()->set_state(state);
    for (const auto& w : dispatcher.worker_ids()) (void)workers.send(w, cancel);
    finish_job(job, state);
    return true;
  }

  // ------------------------------------------------------------------ workers

  void ask_to_reconnect(const std::string& worker) {
    v1::Envelope env;
    env.mutable_reconnect();
    (void)workers.send(worker, env);
  }

  void on_worker_message(const std::string& worker, const v1::Envelope& env) {
    switch (env.body_case()) {
      case v1::Envelope::kHello: {
        const auto& h = env.hello();
        log::info("worker {} joined ({} on {}, {} slots)", printable(h.worker().id()),
                  printable(h.worker().device()), printable(h.worker().host()),
                  h.worker().slots());
        sink.send_give_ups(dispatcher.on_hello(worker, h.worker(), h.credit()), jobs);
        v1::Envelope welcome;
        welcome.mutable_welcome()->set_epoch(epoch);
        welcome.mutable_welcome()->set_heartbeat_ms(static_cast<uint32_t>(opt.heartbeat_ms));
        (void)workers.send(worker, welcome);
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
        workers.rejects().reject(
            fmt::format("unexpected '{}' message from a worker", body_name(env)));
    }
  }

  void dispatch() {
    for (;;) {
      auto assignments = dispatcher.assign();
      if (assignments.empty()) return;
      const int64_t now = clock.wall_ns();
      for (const auto& a : assignments) {
        if (!workers.send_tasks(a, jobs, now)) {
          dispatcher.unsend(a);
          sink.send_give_ups(dispatcher.on_unreachable(a.worker), jobs);
        }
      }
    }
  }

  void heartbeat_workers() {
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_epoch(epoch);
    for (const auto& w : dispatcher.worker_ids()) {
      if (!workers.send(w, hb)) sink.send_give_ups(dispatcher.on_unreachable(w), jobs);
    }
  }

  void kill_workers() {
    v1::Envelope kill;
    kill.mutable_kill();
    for (const auto& w : dispatcher.worker_ids()) (void)workers.send(w, kill);
  }

  // ------------------------------------------------------------------ sink

  void on_sink_message(const v1::Envelope& env) {
    switch (env.body_case()) {
      case v1::Envelope::kAck: dispatcher.on_ack(env.ack()); break;
      case v1::Envelope::kJobAccepted: {
        JobRecord* job = jobs.get(env.job_accepted().job_id());
        if (!job || job->state != v1::JOB_QUEUED) break;
        if (!env.job_accepted().error().empty()) {
          job->error = fmt::format("refused by the sink: {}", env.job_accepted().error());
          log::warn("job '{}' ({}) {}", printable(job->name), job_hex(job->id), job->error);
          finish_job(*job, v1::JOB_FAILED);
          break;
        }
        jobs.start(*job);
        uint64_t task_bytes = 0;
        for (const auto& t : job->job->spec().tasks()) {
          task_bytes = std::max<uint64_t>(task_bytes, t.payload().size());
        }
        dispatcher.add_job(job->id, job->total, job->priority, job->max_attempts, task_bytes);
        log::info("sink accepted job '{}'; dispatching to {} workers", printable(job->name),
                  dispatcher.workers());
        break;
      }
      case v1::Envelope::kBatchEnd: {
        const auto& be = env.batch_end();
        JobRecord* job = jobs.get(be.job_id());
        if (!job || job->finished()) break;
        job->stop_workers = be.stop_workers();
        job->failed = be.tasks_failed();
        if (be.has_report()) job->report = be.report();
        v1::JobState state = be.state();
        if (!job_state_final(state)) state = be.tasks_failed() > 0 ? v1::JOB_FAILED : v1::JOB_DONE;
        finish_job(*job, state);
        break;
      }
      default: break;  // Kill and others are for workers
    }
  }

  // Announces queued jobs to the sink; logs while none answers.
  void announce_jobs(int64_t now) {
    bool waiting = false;
    for (auto& [id, job] : jobs.jobs()) {
      if (job.state != v1::JOB_QUEUED) continue;
      waiting = true;
      sink.announce(job, now, clock.wall_ns());
      if (opt.sink_wait_ms > 0 && now - job.submitted_ns > ms_to_ns(opt.sink_wait_ms)) {
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
    for (auto& [id, job] : jobs.jobs()) {
      if (job.state != v1::JOB_RUNNING || !dispatcher.job_done(id)) continue;
      if (job.all_acked_ns == 0) job.all_acked_ns = now;
      if (now - job.all_acked_ns > ms_to_ns(2000)) {
        job.failed = dispatcher.job_failed(id);
        finish_job(job, job.failed > 0 ? v1::JOB_FAILED : v1::JOB_DONE);
      }
    }
  }

  // ------------------------------------------------------------------ job service

  v1::JobStatus status_of(const JobRecord& job) const {
    v1::JobStatus st;
    st.set_job_id(job_hex(job.id));
    st.set_name(job.name);
    st.set_state(job.state);
    st.set_total(job.total);
    st.set_priority(job.priority);
    const int64_t now = clock.steady_ns();
    st.set_age_s(static_cast<double>(now - job.submitted_ns) * 1e-9);
    if (job.finished()) {
      st.set_done(job.done);
      st.set_failed(job.failed);
      if (job.report) {
        *st.mutable_report() = *job.report;
        st.set_done(job.report->tasks_ok() + job.report->tasks_failed());
        st.set_tasks_per_s(job.report->tasks_per_s());
      }
    } else {
      st.set_done(dispatcher.job_acked(job.id));
      st.set_failed(dispatcher.job_failed(job.id));
      if (job.started_ns > 0 && now > job.started_ns) {
        st.set_tasks_per_s(static_cast<double>(st.done()) /
                           (static_cast<double>(now - job.started_ns) * 1e-9));
      }
    }
    return st;
  }

  v1::Envelope on_request(const v1::Envelope& env) {
    v1::Envelope reply;
    switch (env.body_case()) {
      case v1::Envelope::kSubmit: {
        auto* r = reply.mutable_submit_reply();
        try {
          r->set_job_id(job_hex(add_job(env.submit().job(), "job").id));
        } catch (const SetupError& e) {
          r->set_error(e.what());
          log::warn("refused a job: {}", printable(e.what(), 500));
        }
        break;
      }
      case v1::Envelope::kStatus: {
        auto* r = reply.mutable_status_reply();
        const std::string& key = env.status().job();
        if (key.empty()) {
          for (const auto& [id, job] : jobs.jobs()) {
            auto st = status_of(job);
            st.clear_report();  // the list stays small
            *r->add_jobs() = std::move(st);
          }
        } else if (const JobRecord* job = jobs.find(key)) {
          *r->add_jobs() = status_of(*job);
        } else {
          r->set_error(fmt::format("unknown job '{}'", printable(key)));
        }
        break;
      }
      case v1::Envelope::kCancel: {
        auto* r = reply.mutable_cancel_reply();
        const std::string& key = env.cancel().job();
        JobRecord* job = jobs.find(key);
        if (!job) {
          r->set_error(fmt::format("unknown job '{}'", printable(key)));
        } else if (job->finished()) {
          r->set_error(fmt::format("job '{}' is already {}", printable(key),
                                   job_state_name(job->state)));
        } else {
          r->set_job_id(job_hex(job->id));
          end_early(*job, v1::JOB_CANCELLED);
        }
        break;
      }
      default: break;  // no reply: JobService counts it as rejected
    }
    return reply;
  }

  // ------------------------------------------------------------------ event loop

  // Runs the loop until `done()` or a stop signal. Returns: whether `done()` ended it.
  template <typename Done>
  bool loop(Done&& done) {
    int64_t next_heartbeat = 0;
    next_wait_log = clock.steady_ns() + ms_to_ns(2000);
    while (!stop_requested()) {
      const int64_t now = clock.steady_ns();
      announce_jobs(now);
      sink.flush();
      if (now >= next_heartbeat) {
        heartbeat_workers();
        sink.send_give_ups(dispatcher.expire(), jobs);
        next_heartbeat = now + ms_to_ns(opt.heartbeat_ms);
      }
      zmq::pollitem_t items[] = {{workers.socket().handle(), 0, ZMQ_POLLIN, 0},
                                 {sink.control().handle(), 0, ZMQ_POLLIN, 0},
                                 {service ? service->socket().handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, service ? 3 : 2,
                  std::chrono::milliseconds(std::min<int64_t>(opt.heartbeat_ms, 100)));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) {
        workers.drain([this](const std::string& w, const v1::Envelope& env) {
          on_worker_message(w, env);
        });
      }
      if (items[1].revents & ZMQ_POLLIN) {
        sink.drain([this](const v1::Envelope& env) { on_sink_message(env); });
      }
      if (service && (items[2].revents & ZMQ_POLLIN)) {
        service->drain([this](const v1::Envelope& env) { return on_request(env); });
      }
      dispatch();
      finish_acked_jobs(clock.steady_ns());
      if (done()) return true;
    }
    return false;
  }

  int run_batch(v1::JobSpec spec) {
    const uint64_t id = add_job(std::move(spec), "job").id;
    log::info("tasks on {}, sink at {}", workers.endpoint(), opt.sink_results);
    const bool finished = loop([&] { return jobs.get(id)->finished(); });
    JobRecord& job = *jobs.get(id);
    if (!finished) {
      log::warn("interrupted: {}/{} tasks acknowledged", dispatcher.job_acked(id), job.total);
      // The whole one-shot farm ends the batch: the sink writes a partial report and tells
      // the workers, who are also told directly.
      end_early(job, v1::JOB_INTERRUPTED);
      kill_workers();
      return kExitInterrupted;
    }
    if (!job.error.empty()) throw SetupError(job.error);
    if (job.stop_workers) kill_workers();  // direct and reliable, for workers that missed the sink's
    if (job.state == v1::JOB_INTERRUPTED) return kExitInterrupted;
    return job.failed > 0 ? kExitTasksFailed : kExitOk;
  }

  int serve() {
    log::info("serving jobs on {}; tasks on {}, sink at {}", service->endpoint(),
              workers.endpoint(), opt.sink_results);
    loop([] { return false; });
    log::info("stopping");
    return kExitOk;
  }
};

Ventilator::Ventilator(VentilatorOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Ventilator::~Ventilator() = default;
const std::string& Ventilator::tasks_endpoint() const { return impl_->workers.endpoint(); }
const std::string& Ventilator::submit_endpoint() const {
  static const std::string none;
  return impl_->service ? impl_->service->endpoint() : none;
}
int Ventilator::run_batch(v1::JobSpec spec) { return impl_->run_batch(std::move(spec)); }
int Ventilator::serve() { return impl_->serve(); }

}  // namespace taskfarm::ventilator
