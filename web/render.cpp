#include "web/render.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace taskfarm::web {

// ---------------------------------------------------------------- history

void History::add(const FarmSnapshot& s) {
  const double t = s.uptime_s;
  for (const auto& job : s.jobs) {
    const uint64_t done = job.ok + job.failed;
    uint64_t& last = job_done_[job.id];
    if (done > last) completed_ += done - last;
    last = done;
    auto& samples = job_samples_[job.id];
    samples.push_back({t, done});
    while (samples.size() > 2 && samples.front().t < t - kRateWindowS) samples.pop_front();
  }
  // Forget jobs that left the snapshot.
  for (auto it = job_done_.begin(); it != job_done_.end();) {
    const bool present = std::any_of(s.jobs.begin(), s.jobs.end(),
                                     [&](const JobView& j) { return j.id == it->first; });
    if (present) {
      ++it;
    } else {
      job_samples_.erase(it->first);
      it = job_done_.erase(it);
    }
  }

  std::map<std::string, WorkerTrack> tracks;
  for (const auto& w : s.workers) {
    WorkerTrack& track = tracks[w.id];
    if (auto old = workers_.find(w.id); old != workers_.end()) track = std::move(old->second);
    track.slots = w.slots;
    track.last_t = t;
    const double slots = std::max<uint32_t>(w.slots, 1);
    track.occupancy_sum += std::min(static_cast<double>(w.held), slots) / slots;
    ++track.occupancy_n;
  }
  for (const auto& w : s.sink.workers()) {
    auto it = tracks.find(w.id());
    if (it == tracks.end()) continue;
    auto& busy = it->second.busy;
    busy.emplace_back(t, w.busy_s());
    while (busy.size() > 2 && busy.front().first < t - kRateWindowS) busy.pop_front();
  }
  workers_ = std::move(tracks);

  if (point_t_ < 0) {
    point_t_ = t;
    point_completed_ = completed_;
  } else if (t - point_t_ >= 1.0) {
    throughput_.push_back({t, static_cast<double>(completed_ - point_completed_) / (t - point_t_)});
    while (throughput_.size() > kPoints) throughput_.pop_front();
    point_t_ = t;
    point_completed_ = completed_;
    for (auto& [id, track] : workers_) {
      track.occupancy.push_back(
          track.occupancy_n ? static_cast<float>(track.occupancy_sum / track.occupancy_n) : 0.f);
      while (track.occupancy.size() > kStripPoints) track.occupancy.pop_front();
      track.occupancy_sum = 0;
      track.occupancy_n = 0;
    }
  }
}

double History::job_rate(const std::string& id) const {
  auto it = job_samples_.find(id);
  if (it == job_samples_.end() || it->second.size() < 2) return 0;
  const auto& a = it->second.front();
  const auto& b = it->second.back();
  if (b.t - a.t < 0.2) return 0;
  return static_cast<double>(b.done - a.done) / (b.t - a.t);
}

std::deque<float> History::occupancy(const std::string& worker) const {
  auto it = workers_.find(worker);
  return it == workers_.end() ? std::deque<float>{} : it->second.occupancy;
}

double History::busy_ratio(const std::string& worker) const {
  auto it = workers_.find(worker);
  if (it == workers_.end() || it->second.busy.size() < 2 || it->second.slots == 0) return -1;
  const auto& a = it->second.busy.front();
  const auto& b = it->second.busy.back();
  if (b.first - a.first < 0.5) return -1;
  const double r = (b.second - a.second) / ((b.first - a.first) * it->second.slots);
  return std::clamp(r, 0.0, 1.0);
}

// ---------------------------------------------------------------- Prometheus text

namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  void family(const std::string& name, const char* type, const char* help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(const std::string& name, const Labels& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i) out_ += ',';
        out_ += fmt::format("{}=\"{}\"", labels[i].first, escape_label(labels[i].second));
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
  }
  void one(const std::string& name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};


}  // namespace

std::string prometheus_text(const FarmSnapshot& s, const History& h) {
  Exposition m;
  m.one("process_start_time_seconds", "gauge", "Start time of the process since the unix epoch.",
        s.start_time_s);

  m.family("taskfarm_jobs", "gauge", "Jobs the job service knows, by state.");
  for (int st = v1::JOB_QUEUED; st <= v1::JOB_INTERRUPTED; ++st) {
    const std::string state(job_state_name(static_cast<v1::JobState>(st)));
    const auto n = std::count_if(s.jobs.begin(), s.jobs.end(),
                                 [&](const JobView& j) { return j.state == state; });
    m.sample("taskfarm_jobs", {{"state", state}}, static_cast<double>(n));
  }
  m.one("taskfarm_jobs_submitted_total", "counter", "Jobs accepted since the start.",
        static_cast<double>(s.jobs_submitted));
  m.one("taskfarm_jobs_refused_total", "counter", "Invalid job submissions refused.",
        static_cast<double>(s.jobs_refused));

  m.family("taskfarm_job_tasks", "gauge",
           "Tasks of each known job by state: queued (not issued yet), in_flight, ok, failed.");
  for (const auto& j : s.jobs) {
    const uint64_t settled = j.ok + j.failed + j.in_flight;
    const uint64_t queued = j.finished() || j.total < settled ? 0 : j.total - settled;
    const std::pair<const char*, uint64_t> parts[] = {
        {"queued", queued}, {"in_flight", j.in_flight}, {"ok", j.ok}, {"failed", j.failed}};
    for (const auto& [state, n] : parts) {
      m.sample("taskfarm_job_tasks", {{"job_id", j.id}, {"job", j.name}, {"state", state}},
               static_cast<double>(n));
    }
  }
  m.family("taskfarm_job_tasks_expected", "gauge", "Tasks each known job has in all.");
  for (const auto& j : s.jobs) {
    m.sample("taskfarm_job_tasks_expected", {{"job_id", j.id}, {"job", j.name}},
             static_cast<double>(j.total));
  }

  m.family("taskfarm_tasks_total", "counter",
           "Final task results since the sink started, by kernel and state (ok or failed).");
  for (const auto& k : s.sink.kernels()) {
    m.sample("taskfarm_tasks_total", {{"kernel", k.kernel()}, {"state", "ok"}},
             static_cast<double>(k.ok()));
    m.sample("taskfarm_tasks_total", {{"kernel", k.kernel()}, {"state", "failed"}},
             static_cast<double>(k.failed()));
  }
  m.family("taskfarm_task_busy_seconds_total", "counter",
           "Task run time summed over workers, by kernel.");
  for (const auto& k : s.sink.kernels()) {
    m.sample("taskfarm_task_busy_seconds_total", {{"kernel", k.kernel()}}, k.busy_s());
  }
  m.one("taskfarm_tasks_retried_total", "counter",
        "Tasks whose final result came from a second or later attempt.",
        static_cast<double>(s.sink.retried()));
  m.one("taskfarm_task_reissues_total", "counter",
        "Tasks issued again by the ventilator (worker lost, timeout, retryable failure).",
        static_cast<double>(s.reissued));
  m.one("taskfarm_duplicate_results_total", "counter",
        "Results dropped because their task already had a final result.",
        static_cast<double>(s.sink.duplicates()));
  m.one("taskfarm_late_results_total", "counter",
        "Results that arrived after their job ended or was cancelled.",
        static_cast<double>(s.sink.late_results()));

  m.family("taskfarm_rejected_messages_total", "counter",
           "Frames dropped as undecodable, of another protocol version or out of place.");
  for (const auto& r : s.rejected) {
    m.sample("taskfarm_rejected_messages_total", {{"process", r.process}, {"socket", r.socket}},
             static_cast<double>(r.count));
  }
  if (s.have_sink_stats) {
    m.sample("taskfarm_rejected_messages_total", {{"process", "sink"}, {"socket", "results"}},
             static_cast<double>(s.sink.rejected_messages()));
  }

  m.one("taskfarm_queue_depth", "gauge", "Tasks of running jobs not issued to a worker yet.",
        static_cast<double>(s.queue_depth));
  uint64_t in_flight = 0;
  for (const auto& j : s.jobs) in_flight += j.in_flight;
  m.one("taskfarm_tasks_in_flight", "gauge", "Tasks issued to workers without a final result.",
        static_cast<double>(in_flight));

  m.one("taskfarm_workers", "gauge", "Workers connected.", static_cast<double>(s.workers.size()));
  m.one("taskfarm_workers_lost_total", "counter", "Workers declared lost (silent or gone).",
        static_cast<double>(s.workers_lost));
  m.family("taskfarm_worker_info", "gauge", "Connected workers: host and device (value 1).");
  for (const auto& w : s.workers) {
    m.sample("taskfarm_worker_info", {{"worker", w.id}, {"host", w.host}, {"device", w.device}}, 1);
  }
  m.family("taskfarm_worker_slots", "gauge", "Tasks a worker runs at once (threads or streams).");
  for (const auto& w : s.workers) m.sample("taskfarm_worker_slots", {{"worker", w.id}}, w.slots);
  m.family("taskfarm_worker_tasks_held", "gauge", "Tasks a worker holds (running or queued).");
  for (const auto& w : s.workers) {
    m.sample("taskfarm_worker_tasks_held", {{"worker", w.id}}, static_cast<double>(w.held));
  }
  m.family("taskfarm_worker_busy_ratio", "gauge",
           "Fraction of a worker's slots busy over the last 10 seconds.");
  for (const auto& w : s.workers) {
    const double r = h.busy_ratio(w.id);
    if (r >= 0) m.sample("taskfarm_worker_busy_ratio", {{"worker", w.id}}, r);
  }
  m.family("taskfarm_worker_busy_seconds_total", "counter", "Task run time on each worker.");
  for (const auto& w : s.workers) m.sample("taskfarm_worker_busy_seconds_total", {{"worker", w.id}}, w.busy_s);
  m.family("taskfarm_worker_tasks_total", "counter", "Tasks each worker completed successfully.");
  for (const auto& w : s.workers) {
    m.sample("taskfarm_worker_tasks_total", {{"worker", w.id}}, static_cast<double>(w.tasks));
  }
  m.family("taskfarm_worker_gpu_memory_bytes", "gauge", "Device memory a GPU worker holds.");
  for (const auto& w : s.workers) {
    m.sample("taskfarm_worker_gpu_memory_bytes", {{"worker", w.id}},
             static_cast<double>(w.gpu_mem_bytes));
  }
  m.family("taskfarm_worker_last_seen_seconds", "gauge", "Seconds since a worker's last message.");
  for (const auto& w : s.workers) {
    m.sample("taskfarm_worker_last_seen_seconds", {{"worker", w.id}}, w.last_seen_s);
  }

  m.family("taskfarm_task_latency_seconds", "histogram",
           "Ventilator send to sink receive of each final result (queueing included).");
  const auto& sink = s.sink;
  for (int i = 0; i < sink.latency_bounds_s_size() && i < sink.latency_counts_size(); ++i) {
    m.sample("taskfarm_task_latency_seconds_bucket", {{"le", number(sink.latency_bounds_s(i))}},
             static_cast<double>(sink.latency_counts(i)));
  }
  m.sample("taskfarm_task_latency_seconds_bucket", {{"le", "+Inf"}},
           static_cast<double>(sink.latency_count()));
  m.sample("taskfarm_task_latency_seconds_sum", {}, sink.latency_sum_s());
  m.sample("taskfarm_task_latency_seconds_count", {}, static_cast<double>(sink.latency_count()));

  if (!s.journals.empty()) {
    m.family("taskfarm_journal_commits_total", "counter",
             "Transactions committed to a --state journal.");
    for (const auto& j : s.journals) {
      m.sample("taskfarm_journal_commits_total", {{"process", j.process}},
               static_cast<double>(j.commits));
    }
    m.family("taskfarm_journal_writable", "gauge",
             "Whether the last write to a --state journal worked (0: jobs are paused).");
    for (const auto& j : s.journals) {
      m.sample("taskfarm_journal_writable", {{"process", j.process}}, j.error.empty() ? 1 : 0);
    }
    m.family("taskfarm_journal_commit_seconds_total", "counter",
             "Time spent committing to a --state journal.");
    for (const auto& j : s.journals) {
      if (j.commit_s >= 0) {
        m.sample("taskfarm_journal_commit_seconds_total", {{"process", j.process}}, j.commit_s);
      }
    }
    m.family("taskfarm_journal_lag_tasks", "gauge",
             "Acknowledged tasks the ventilator's journal does not have yet (run again after a "
             "crash).");
    m.family("taskfarm_journal_lag_seconds", "gauge",
             "Seconds since the ventilator's last journal write while changes wait for the "
             "next (0: none wait).");
    for (const auto& j : s.journals) {
      if (j.process != "ventilator") continue;
      m.sample("taskfarm_journal_lag_tasks", {{"process", j.process}},
               static_cast<double>(j.unjournaled_tasks));
      m.sample("taskfarm_journal_lag_seconds", {{"process", j.process}}, j.lag_s);
    }
  }

  m.one("taskfarm_sink_up", "gauge", "Whether the sink's statistics arrived in the last 5 seconds.",
        s.have_sink_stats && s.sink_stats_age_s < 5 ? 1 : 0);
  return m.take();
}

// ---------------------------------------------------------------- JSON

nlohmann::json job_json(const JobView& j, const History& h, bool detail) {
  const uint64_t done = j.ok + j.failed;
  const uint64_t settled = done + j.in_flight;
  const double rate = j.finished() ? 0 : h.job_rate(j.id);
  nlohmann::json out = {
      {"id", j.id},
      {"name", j.name},
      {"state", j.state},
      {"priority", j.priority},
      {"total", j.total},
      {"done", done},
      {"ok", j.ok},
      {"failed", j.failed},
      {"in_flight", j.in_flight},
      {"queued", j.finished() || j.total < settled ? 0 : j.total - settled},
      {"age_s", j.age_s},
      {"running_s", j.running_s},
      {"tasks_per_s", j.tasks_per_s},
      {"recent_tasks_per_s", rate},
      {"eta_s", nullptr},
      {"kernels", j.kernels},
      {"retried", j.retried},
      {"duplicates", j.duplicates},
      {"error", j.error},
  };
  if (j.finished()) {
    out["eta_s"] = 0;
  } else if (rate > 0 && j.total >= done) {
    out["eta_s"] = static_cast<double>(j.total - done) / rate;
  }
  if (detail) {
    auto& failures = out["failures"] = nlohmann::json::array();
    for (const auto& f : j.failures) {
      failures.push_back({{"task_id", f.task_id()},
                          {"kernel", f.kernel()},
                          {"attempts", f.attempts()},
                          {"error", f.error()}});
    }
  }
  return out;
}

nlohmann::json worker_json(const WorkerView& w, const History& h) {
  const double busy = h.busy_ratio(w.id);
  return {
      {"id", w.id},
      {"host", w.host},
      {"device", w.device},
      {"slots", w.slots},
      {"held", w.held},
      {"credit", w.credit},
      {"last_seen_s", w.last_seen_s},
      {"leaving", w.leaving},
      {"gpu_mem_bytes", w.gpu_mem_bytes},
      {"kernels", w.kernels},
      {"tasks", w.tasks},
      {"busy_s", w.busy_s},
      {"busy_ratio", busy >= 0 ? nlohmann::json(busy) : nlohmann::json(nullptr)},
  };
}

nlohmann::json dashboard_json(const FarmSnapshot& s, const History& h, bool token_required) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& j : s.jobs) jobs.push_back(job_json(j, h, true));
  nlohmann::json workers = nlohmann::json::array();
  uint64_t slots = 0, held = 0, in_flight = 0;
  for (const auto& w : s.workers) {
    auto wj = worker_json(w, h);
    wj["occupancy"] = h.occupancy(w.id);
    workers.push_back(std::move(wj));
    slots += w.slots;
    held += std::min<uint64_t>(w.held, w.slots);
  }
  for (const auto& j : s.jobs) in_flight += j.in_flight;
  nlohmann::json throughput = nlohmann::json::array();
  for (const auto& p : h.throughput()) throughput.push_back({p.t, p.tasks_per_s});
  uint64_t rejected = s.have_sink_stats ? s.sink.rejected_messages() : 0;
  for (const auto& r : s.rejected) rejected += r.count;
  return {
      {"uptime_s", s.uptime_s},
      {"token_required", token_required},
      {"summary",
       {{"workers", s.workers.size()},
        {"slots", slots},
        {"slots_busy", held},
        {"in_flight", in_flight},
        {"queue_depth", s.queue_depth},
        {"tasks_per_s", h.throughput().empty() ? 0.0 : h.throughput().back().tasks_per_s},
        {"tasks_completed", h.tasks_completed()},
        {"reissued", s.reissued},
        {"workers_lost", s.workers_lost},
        {"duplicates", s.sink.duplicates()},
        {"rejected_messages", rejected},
        {"sink_up", s.have_sink_stats && s.sink_stats_age_s < 5}}},
      {"jobs", std::move(jobs)},
      {"workers", std::move(workers)},
      {"throughput", std::move(throughput)},
      {"strip_seconds", History::kStripPoints},
  };
}

}  // namespace taskfarm::web
