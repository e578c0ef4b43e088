#include "ventilator/web_view.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>

#include "common/errors.h"
#include "common/job_state.h"
#include "common/log.h"
#include "common/text.h"

namespace taskfarm::ventilator {

std::unique_ptr<VentilatorWeb> VentilatorWeb::start(const web::HttpOptions& options,
                                                    bool optional, const Clock& clock) {
  std::unique_ptr<web::HttpService> http;
  try {
    http = std::make_unique<web::HttpService>(options);
  } catch (const SetupError& e) {
    if (!optional) throw;
    log::warn("dashboard off: {} (choose a port with --http PORT)", e.what());
    return nullptr;
  }
  log::info("dashboard on {} (metrics at /metrics)", http->url());
  return std::unique_ptr<VentilatorWeb>(new VentilatorWeb(std::move(http), clock));
}

VentilatorWeb::VentilatorWeb(std::unique_ptr<web::HttpService> http, const Clock& clock)
    : http_(std::move(http)),
      clock_(clock),
      started_ns_(clock.steady_ns()),
      started_wall_s_(static_cast<double>(clock.wall_ns()) * 1e-9) {}

void VentilatorWeb::on_sink_stats(const v1::MetricsSinkStats& stats) {
  sink_stats_ = stats;
  sink_stats_ns_ = clock_.steady_ns();
}

void VentilatorWeb::on_request(const v1::Envelope& request, const v1::Envelope& reply) {
  if (!request.has_submit()) return;
  if (reply.submit_reply().error().empty()) {
    ++jobs_submitted_;
  } else {
    ++jobs_refused_;
  }
}

void VentilatorWeb::run_commands(VentilatorCore& core) {
  for (auto& cmd : http_->take_commands()) {
    JobRecord* job = core.jobs().find(cmd->job);
    if (!job) {
      cmd->reply.set_value({404, fmt::format("unknown job '{}'", printable(cmd->job))});
    } else if (job->finished()) {
      cmd->reply.set_value({409, fmt::format("job '{}' is already {}", printable(cmd->job),
                                             job_state_name(job->state))});
    } else {
      log::info("job '{}' ({}) cancelled from the dashboard", printable(job->name),
                job_hex(job->id));
      cmd->reply.set_value({200, job_hex(job->id)});
      core.end_early(*job, v1::JOB_CANCELLED);
      next_publish_ns_ = 0;  // show it at once
    }
  }
}

web::FarmSnapshot VentilatorWeb::snapshot(VentilatorCore& core, int64_t now,
                                          std::vector<web::RejectView> rejected) const {
  constexpr size_t kFinishedShown = 200, kFailuresShown = 20;
  const Dispatcher& dispatcher = core.dispatcher();
  web::FarmSnapshot s;
  s.uptime_s = static_cast<double>(now - started_ns_) * 1e-9;
  s.start_time_s = started_wall_s_;
  std::map<std::string, const v1::Report*> live;  // the sink's reports of running jobs
  for (const auto& r : sink_stats_.jobs()) live[r.job_id()] = &r;
  std::vector<const JobRecord*> order;
  for (const auto& [id, job] : core.jobs().jobs()) order.push_back(&job);
  std::sort(order.begin(), order.end(), [](const JobRecord* a, const JobRecord* b) {
    return a->submitted_ns > b->submitted_ns;  // newest first
  });
  size_t finished_shown = 0;
  for (const JobRecord* job : order) {
    if (job->finished() && ++finished_shown > kFinishedShown) continue;
    const v1::JobStatus st = core.status_of(*job);
    web::JobView j;
    j.id = st.job_id();
    j.name = st.name();
    j.state = std::string(job_state_name(job->state));
    j.error = job->error;
    j.priority = st.priority();
    j.total = st.total();
    j.failed = st.failed();
    j.ok = st.done() >= st.failed() ? st.done() - st.failed() : 0;
    j.in_flight = job->finished() ? 0 : dispatcher.job_in_flight(job->id);
    j.age_s = st.age_s();
    if (job->started_ns > 0) {
      j.running_s =
          static_cast<double>((job->finished() ? job->finished_ns : now) - job->started_ns) * 1e-9;
    }
    j.tasks_per_s = st.tasks_per_s();
    if (job->job) {  // the spec is released when the job ends
      for (const auto& t : job->job->spec().tasks()) {
        if (std::find(j.kernels.begin(), j.kernels.end(), t.kernel()) == j.kernels.end()) {
          j.kernels.push_back(t.kernel());
        }
      }
    }
    const v1::Report* rep = job->report ? &*job->report : nullptr;
    if (!rep) {
      auto l = live.find(j.id);
      if (l != live.end()) rep = l->second;
    }
    if (rep) {
      if (j.kernels.empty()) {
        for (const auto& k : rep->kernels()) j.kernels.push_back(k.kernel());
      }
      j.retried = rep->retried();
      j.duplicates = rep->duplicates_dropped();
      for (int i = 0; i < rep->failures_size() && j.failures.size() < kFailuresShown; ++i) {
        j.failures.push_back(rep->failures(i));
      }
    }
    if (job->state == v1::JOB_RUNNING) {
      s.queue_depth += j.total - std::min(j.total, j.ok + j.failed + j.in_flight);
    }
    s.jobs.push_back(std::move(j));
  }
  std::map<std::string, const v1::MetricsWorkerTotal*> totals;
  for (const auto& w : sink_stats_.workers()) totals[w.id()] = &w;
  for (const auto& w : dispatcher.worker_summaries()) {
    web::WorkerView v;
    v.id = w.info->id();
    v.host = w.info->host();
    v.device = w.info->device();
    v.slots = w.info->slots();
    v.held = w.held;
    v.credit = w.credit;
    v.last_seen_s = static_cast<double>(now - w.last_seen_ns) * 1e-9;
    v.leaving = w.leaving;
    v.gpu_mem_bytes = w.info->gpu_mem_bytes();
    if (auto t = totals.find(v.id); t != totals.end()) {
      v.tasks = t->second->tasks();
      v.busy_s = t->second->busy_s();
      v.gpu_mem_bytes = std::max(v.gpu_mem_bytes, t->second->gpu_mem_bytes());
    }
    s.workers.push_back(std::move(v));
  }
  s.jobs_submitted = jobs_submitted_;
  s.jobs_refused = jobs_refused_;
  s.reissued = dispatcher.reissued();
  s.workers_lost = dispatcher.workers_lost();
  s.rejected = std::move(rejected);
  s.have_sink_stats = sink_stats_ns_ > 0;
  s.sink_stats_age_s = s.have_sink_stats ? static_cast<double>(now - sink_stats_ns_) * 1e-9 : 0;
  s.sink = sink_stats_;
  const JobTable& table = core.jobs();
  if (table.journaled()) {
    s.journals.push_back(web::JournalView{"ventilator", table.journal_commits(), -1,
                                          table.unjournaled_acks(), table.journal_lag_s(),
                                          table.journal_error()});
  }
  if (s.have_sink_stats && sink_stats_.journaled()) {
    s.journals.push_back(web::JournalView{"sink", sink_stats_.journal_commits(),
                                          sink_stats_.journal_commit_seconds(), 0, 0,
                                          sink_stats_.journal_error()});
  }
  return s;
}

}  // namespace taskfarm::ventilator
