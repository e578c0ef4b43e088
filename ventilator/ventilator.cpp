#include "ventilator/ventilator.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/signals.h"
#include "common/text.h"
#include "ventilator/links.h"
#include "ventilator/ventilator_core.h"
#include "ventilator/web_view.h"

namespace taskfarm::ventilator {

// The sockets and the event loop around VentilatorCore, which makes every decision.
struct Ventilator::Impl final : VentilatorOutbox {
  VentilatorOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  WorkerLink workers{ctx, curve, opt.tasks_bind};
  SinkLink sink{ctx, curve, opt.sink_results, opt.sink_control};
  std::unique_ptr<JobService> service;
  VentilatorCore core;
  int64_t next_wait_log = 0;
  std::unique_ptr<VentilatorWeb> dashboard;  // dashboard and /metrics (issue 16), when --http

  static CoreOptions core_options(const VentilatorOptions& o, const std::string& tasks_ep) {
    CoreOptions c;
    c.tasks_endpoint = tasks_ep;
    c.policy = o.policy;
    c.job_limits = o.job_limits;
    c.table_limits = o.table_limits;
    c.max_job_bytes = o.max_job_bytes;
    c.heartbeat_ms = o.heartbeat_ms;
    c.sink_endpoint = o.sink_control;
    c.exec_jobs_allowed = o.curve.enabled() || is_loopback(o.submit_bind);
    c.state_dir = o.state_dir;
    c.min_workers = o.min_workers;
    return c;
  }

  // Returns: whether only this machine can reach `endpoint`.
  static bool is_loopback(const std::string& endpoint) {
    return endpoint.empty() || endpoint.rfind("ipc://", 0) == 0 ||
           endpoint.rfind("inproc://", 0) == 0 || endpoint.rfind("tcp://127.", 0) == 0 ||
           endpoint.rfind("tcp://localhost:", 0) == 0 || endpoint.rfind("tcp://[::1]:", 0) == 0;
  }

  Impl(VentilatorOptions o, const Clock& c)
      : opt(std::move(o)), clock(c), core(core_options(opt, workers.endpoint()), c, *this) {
    if (!opt.submit_bind.empty()) {
      service = std::make_unique<JobService>(ctx, curve, opt.submit_bind, opt.max_job_bytes);
    }
    if (opt.http) dashboard = VentilatorWeb::start(*opt.http, opt.http_optional, clock);
  }

  // VentilatorOutbox
  bool to_worker(const std::string& worker, v1::Envelope& env) override {
    return workers.send(worker, env);
  }
  void to_sink(v1::Envelope& env) override { sink.push(env); }
  void announce_to_sink(v1::Envelope& env) override { sink.try_push(env); }

  // Logs while jobs wait for the sink; gives up after --wait-sink.
  void watch_sink(int64_t now) {
    if (!core.waiting_for_sink()) {
      next_wait_log = now + ms_to_ns(2000);
      return;
    }
    if (opt.sink_wait_ms > 0) {
      for (const auto& [id, job] : core.jobs().jobs()) {
        if (job.state == v1::JOB_QUEUED && now - job.submitted_ns > ms_to_ns(opt.sink_wait_ms)) {
          throw SetupError(fmt::format("no answer from the sink at {} within {:.1f} s",
                                       opt.sink_control, opt.sink_wait_ms * 1e-3));
        }
      }
    }
    if (now >= next_wait_log) {
      log::info("waiting for the sink at {}", opt.sink_control);
      next_wait_log = now + ms_to_ns(10000);
    }
  }

  // Runs the loop until `done()` or a stop signal. Returns: whether `done()` ended it.
  template <typename Done>
  bool loop(Done&& done) {
    next_wait_log = clock.steady_ns() + ms_to_ns(2000);
    while (!stop_requested()) {
      watch_sink(clock.steady_ns());
      sink.flush();
      core.tick();
      if (done()) return true;
      zmq::pollitem_t items[] = {
          {workers.socket().handle(), 0, ZMQ_POLLIN, 0},
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
          if (!core.on_worker_message(w, env)) {
            workers.rejects().reject(
                fmt::format("unexpected '{}' message from a worker", body_name(env)));
          }
        });
      }
      if (items[1].revents & ZMQ_POLLIN) {
        sink.drain([this](const v1::Envelope& env) {
          if (env.has_metrics_sink_stats()) {  // for the dashboard only
            if (dashboard) dashboard->on_sink_stats(env.metrics_sink_stats());
            return;
          }
          core.on_sink_message(env);
        });
      }
      if (service && (items[2].revents & ZMQ_POLLIN)) {
        service->drain([this](const v1::Envelope& env) {
          v1::Envelope reply = core.on_request(env);
          if (dashboard) dashboard->on_request(env, reply);
          return reply;
        });
      }
      core.dispatch();
      if (dashboard) {
        dashboard->serve(core, [this] {
          std::vector<web::RejectView> r = {{"ventilator", "tasks", workers.rejects().count()},
                                            {"ventilator", "sink_control", sink.rejects().count()}};
          if (service) r.push_back({"ventilator", "submission", service->rejects().count()});
          return r;
        });
      }
    }
    return false;
  }

  // Returns: the batch to run: the unfinished one of the journal (a restart), which must be
  // `spec`, or `spec` added now.
  uint64_t batch_job(v1::JobSpec spec) {
    std::vector<JobRecord*> unfinished;
    for (auto& [id, job] : core.jobs().jobs()) {
      if (!job.finished()) unfinished.push_back(&job);
    }
    if (unfinished.empty()) return core.add_job(std::move(spec), "job").id;
    if (unfinished.size() > 1) {
      throw SetupError(fmt::format("--state {} holds {} unfinished jobs of a job service: give "
                                   "it to taskfarm-ventilator --serve, or use another folder",
                                   opt.state_dir, unfinished.size()));
    }
    JobRecord& job = *unfinished.front();
    if (!core.same_spec(job, std::move(spec))) {
      throw SetupError(fmt::format(
          "--state {} holds the unfinished batch '{}' ({}), not this one: run that batch to "
          "finish it, or use another folder",
          opt.state_dir, printable(job.name), job_hex(job.id)));
    }
    log::info("continuing batch '{}' ({}): {}/{} tasks acknowledged before the restart",
              printable(job.name), job_hex(job.id), core.acked(job), job.total);
    return job.id;
  }

  int run_batch(v1::JobSpec spec) {
    const uint64_t id = batch_job(std::move(spec));
    if (dashboard) dashboard->on_job_added();
    log::info("tasks on {}, sink at {}", workers.endpoint(), opt.sink_results);
    int64_t missing_kernel_since = 0, short_of_workers_since = 0;
    const bool finished = loop([&] {
      JobRecord& job = *core.jobs().get(id);
      if (job.finished()) return true;
      const std::string reason = core.waiting_reason(job);
      if (reason.rfind("waiting for", 0) == 0 && reason.find("workers") != std::string::npos) {
        const int64_t now = clock.steady_ns();
        if (short_of_workers_since == 0) short_of_workers_since = now;
        if (now - short_of_workers_since > ms_to_ns(opt.min_workers_wait_ms)) {
          core.end_early(job, v1::JOB_INTERRUPTED);
          throw SetupError(fmt::format("{} after {:.0f} s (--min-workers, --min-workers-wait)",
                                       reason, opt.min_workers_wait_ms * 1e-3));
        }
      } else {
        short_of_workers_since = 0;
      }
      // A one-shot batch whose kernel no connected worker offers fails after --kernel-wait
      // (a job service's jobs wait, with the reason in their status).
      const std::string why = core.waiting_reason(job);
      if (opt.kernel_wait_ms > 0 && why.rfind("no connected worker offers kernel", 0) == 0) {
        const int64_t now = clock.steady_ns();
        if (missing_kernel_since == 0) missing_kernel_since = now;
        if (now - missing_kernel_since > ms_to_ns(opt.kernel_wait_ms)) {
          core.end_early(job, v1::JOB_INTERRUPTED);
          throw SetupError(fmt::format("{} within {:.0f} s (plugin kernels need workers started "
                                       "with --plugin LIB; exec needs --allow-exec)",
                                       why, opt.kernel_wait_ms * 1e-3));
        }
      } else {
        missing_kernel_since = 0;
      }
      return false;
    });
    JobRecord& job = *core.jobs().get(id);
    if (!finished) {
      log::warn("interrupted: {}/{} tasks acknowledged", core.acked(job), job.total);
      // The whole one-shot farm ends the batch: the sink writes a partial report and tells the
      // workers, who are also told directly.
      core.end_early(job, v1::JOB_INTERRUPTED);
      core.kill_workers();
      return kExitInterrupted;
    }
    if (!job.error.empty()) throw SetupError(job.error);
    // Direct and reliable, for workers whose subscription missed the sink's Kill.
    if (job.stop_workers) core.kill_workers();
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
