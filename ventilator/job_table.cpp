#include "ventilator/job_table.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/text.h"
#include "ventilator/journal.h"

namespace taskfarm::ventilator {

std::string job_hex(uint64_t id) { return fmt::format("{:016x}", id); }

JobTable::JobTable(const Clock& clock, TableLimits limits)
    : clock_(clock), limits_(limits), ventilator_id_(random_u64() | 1) {}

JobTable::~JobTable() = default;

void JobTable::open_state(const std::string& dir) {
  state_ = std::make_unique<StateDir>(dir, "ventilator");
  journal_ = std::make_unique<VentilatorJournal>(state_->file("ventilator.db"));
  last_write_ns_ = clock_.steady_ns();
  ventilator_id_ = journal_->ventilator_id();
  auto loaded = journal_->load(clock_.steady_ns(), clock_.wall_ns());
  for (const auto& p : loaded.problems) log::error("journal {}: {}", journal_->path(), p);
  size_t running = 0;
  for (auto& rec : loaded.jobs) {
    const uint64_t id = rec.id;
    if (rec.finished()) {
      rec.acked_tasks.clear();
      finished_order_.push_back(id);
    } else {
      ++unfinished_;
      spec_bytes_ += rec.spec_bytes;
      rec.journaled_acked = rec.acked_tasks.size();
      ++running;
      log::info("job '{}' ({}) continues: {}, {}/{} tasks acknowledged", printable(rec.name),
                job_hex(id), job_state_name(rec.state), rec.acked_tasks.size(), rec.total);
    }
    jobs_.insert_or_assign(id, std::move(rec));
  }
  // A row that could not be read ended its job: record that.
  for (const auto& [id, rec] : jobs_) {
    if (rec.finished() && !rec.error.empty() && rec.error.rfind("its journal row", 0) == 0) {
      changed_.insert(id);
    }
  }
  trim_finished();
  log::info("state in {}: {} job(s) to continue, {} finished", dir, running,
            finished_order_.size());
  if (!sync(true)) throw SetupError(fmt::format("--state {}: {}", dir, journal_error_));
}

uint64_t JobTable::journal_commits() const { return journal_ ? journal_->commits() : 0; }

uint64_t JobTable::unjournaled_acks() const {
  uint64_t n = 0;
  if (!journal_) return n;
  for (const auto& [id, job] : jobs_) {
    if (!job.finished() && job.acked_tasks.size() > job.journaled_acked) {
      n += job.acked_tasks.size() - job.journaled_acked;
    }
  }
  return n;
}

double JobTable::journal_lag_s() const {
  if (!journal_) return 0;
  if (added_.empty() && changed_.empty() && erased_.empty() && unjournaled_acks() == 0) return 0;
  return static_cast<double>(clock_.steady_ns() - last_write_ns_) * 1e-9;
}

bool JobTable::sync(bool force) {
  if (!journal_) return true;
  const int64_t now = clock_.steady_ns();
  if (!journal_error_.empty() && now < next_retry_ns_ && !force) return false;
  const bool progress_due = force || now >= next_progress_ns_;
  if (added_.empty() && changed_.empty() && erased_.empty() && !progress_due) {
    return journal_error_.empty();
  }
  const int64_t wall_offset = clock_.wall_ns() - now;
  try {
    const bool failing = !journal_error_.empty();
    journal_->write([&](VentilatorJournal::Batch& b) {
      if (failing) b.touch(clock_.wall_ns());  // a real write says whether writes work again
      for (uint64_t id : erased_) b.erase(id);
      for (uint64_t id : added_) {
        if (auto it = jobs_.find(id); it != jobs_.end()) b.put(it->second, wall_offset);
      }
      for (uint64_t id : changed_) {
        auto it = jobs_.find(id);
        if (it != jobs_.end() && !added_.count(id)) b.update(it->second, wall_offset);
      }
      if (!progress_due) return;
      for (auto& [id, job] : jobs_) {
        if (job.finished() || changed_.count(id) || added_.count(id) ||
            job.acked_tasks.size() == job.journaled_acked) {
          continue;
        }
        b.progress(job);
      }
    });
  } catch (const std::exception& e) {
    if (journal_error_.empty()) {
      log::error("cannot write the journal {}: {}; dispatching pauses until it can",
                 journal_->path(), e.what());
    }
    journal_error_ = e.what();
    next_retry_ns_ = now + ms_to_ns(500);
    return false;
  }
  if (!journal_error_.empty()) {
    log::info("the journal {} can be written again; dispatching resumes", journal_->path());
    journal_error_.clear();
  }
  for (auto& [id, job] : jobs_) {
    if (progress_due || changed_.count(id) || added_.count(id)) {
      job.journaled_acked = job.acked_tasks.size();
    }
  }
  added_.clear();
  changed_.clear();
  erased_.clear();
  last_write_ns_ = now;
  if (progress_due) next_progress_ns_ = now + ms_to_ns(kProgressIntervalMs);
  return true;
}

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
  // A job submitted while the journal cannot be written is refused: it could not be promised.
  if (journal_ && !journal_error_.empty() && !sync(true)) {
    throw SetupError(fmt::format("the job service cannot write its state ({}): {}",
                                 journal_->path(), journal_error_));
  }
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
  JobRecord& added = jobs_.emplace(id, std::move(rec)).first->second;
  if (journal_) {
    // Journaled before the client gets its id.
    added_.insert(id);
    if (!sync(true)) {
      added_.erase(id);
      spec_bytes_ -= bytes;
      --unfinished_;
      jobs_.erase(id);
      throw SetupError(fmt::format("the job service cannot write its state ({}): {}",
                                   journal_->path(), journal_error_));
    }
  }
  log::info("job '{}' ({}): {} tasks, priority {}", printable(added.name), job_hex(id),
            added.total, added.priority);
  return added;
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
  changed_.insert(job.id);
  (void)sync(true);
}

void JobTable::finish(JobRecord& job, v1::JobState state) {
  if (job.finished()) return;
  job.state = state;
  job.finished_ns = clock_.steady_ns();
  job.job.reset();  // the spec and its payloads: only the summary is kept
  job.acked_tasks.clear();
  job.dispatching = false;
  spec_bytes_ -= job.spec_bytes;
  job.spec_bytes = 0;
  --unfinished_;
  finished_order_.push_back(job.id);
  changed_.insert(job.id);
  (void)sync(true);  // a failure is retried at the next sync
  trim_finished();
}

void JobTable::trim_finished() {
  while (finished_order_.size() > limits_.keep_finished) {
    const uint64_t id = finished_order_.front();
    jobs_.erase(id);
    changed_.erase(id);
    added_.erase(id);
    if (journal_) erased_.insert(id);
    finished_order_.pop_front();
  }
}

}  // namespace taskfarm::ventilator
