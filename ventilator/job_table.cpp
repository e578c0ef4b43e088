#include "ventilator/job_table.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/text.h"

namespace taskfarm::ventilator {

std::string job_hex(uint64_t id) { return fmt::format("{:016x}", id); }

JobTable::JobTable(const Clock& clock, TableLimits limits) : clock_(clock), limits_(limits) {}

JobRecord& JobTable::add(v1::JobSpec spec, uint32_t max_attempts) {
  if (unfinished_ >= limits_.max_unfinished) {
    throw SetupError(fmt::format("the job service holds {} unfinished jobs, its limit "
                                 "(taskfarm-ventilator --max-jobs)",
                                 unfinished_));
  }
  const uint64_t bytes = spec.SpaceUsedLong();
  if (bytes > limits_.max_spec_bytes - std::min(spec_bytes_, limits_.max_spec_bytes)) {
    throw SetupError(fmt::format(
        "the job service holds {:.1f} MiB of queued jobs; this one ({:.1f} MiB) would pass its "
        "limit of {:.1f} MiB (taskfarm-ventilator --max-queued-mb)",
        static_cast<double>(spec_bytes_) / (1 << 20), static_cast<double>(bytes) / (1 << 20),
        static_cast<double>(limits_.max_spec_bytes) / (1 << 20)));
  }
  uint64_t id;
  do id = random_u64(); while (id == 0 || jobs_.count(id));
  JobRecord rec;
  rec.id = id;
  rec.name = spec.name();
  rec.priority = spec.priority();
  rec.max_attempts = spec.max_attempts() > 0 ? spec.max_attempts() : max_attempts;
  spec.set_max_attempts(rec.max_attempts);
  rec.job = std::make_unique<jobs::Job>(id, std::move(spec));
  rec.total = rec.job->total();
  rec.spec_bytes = bytes;
  rec.submitted_ns = clock_.steady_ns();
  spec_bytes_ += bytes;
  ++unfinished_;
  log::info("job '{}' ({}): {} tasks, priority {}", printable(rec.name), job_hex(id), rec.total,
            rec.priority);
  return jobs_.emplace(id, std::move(rec)).first->second;
}

JobRecord* JobTable::get(uint64_t id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

JobRecord* JobTable::find(std::string_view key) {
  JobRecord* best = nullptr;
  for (auto& [id, rec] : jobs_) {
    const bool match = job_hex(id) == key || rec.name == key;
    if (match && (!best || rec.submitted_ns > best->submitted_ns)) best = &rec;
  }
  return best;
}

void JobTable::start(JobRecord& job) {
  job.state = v1::JOB_RUNNING;
  job.started_ns = clock_.steady_ns();
}

void JobTable::finish(JobRecord& job, v1::JobState state) {
  if (job.finished()) return;
  job.state = state;
  job.finished_ns = clock_.steady_ns();
  job.job.reset();  // the spec and its payloads: only the summary is kept
  spec_bytes_ -= job.spec_bytes;
  job.spec_bytes = 0;
  --unfinished_;
  finished_order_.push_back(job.id);
  while (finished_order_.size() > limits_.keep_finished) {
    jobs_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

}  // namespace taskfarm::ventilator
