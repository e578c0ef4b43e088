// The ventilator's table of submitted jobs: their states, specs while they run, and a summary
// once they end. Pure bookkeeping, no sockets; the one owner of job state (and of its journal).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/job_state.h"
#include "common/protocol.h"
#include "jobs/job.h"

namespace taskfarm::ventilator {

struct JobRecord {
  uint64_t id = 0;
  std::string name;
  int32_t priority = 0;
  uint64_t total = 0;
  uint32_t max_attempts = 0;  // effective: the job's, or the ventilator's default
  v1::JobState state = v1::JOB_QUEUED;
  std::unique_ptr<jobs::Job> job;   // spec and task descriptors; released when the job ends
  uint64_t spec_bytes = 0;    // what the spec holds in memory (for --max-queued-mb)
  int64_t submitted_ns = 0, started_ns = 0, finished_ns = 0;  // steady clock
  // Progress once finished (while running, the dispatcher has it).
  uint64_t done = 0, failed = 0;
  std::optional<v1::Report> report;  // the sink's final report
  std::string error;                 // why it ended without running (e.g. the sink refused it)
  // BatchStart is re-sent with back-off until the sink accepts the job.
  int64_t next_announce_ns = 0, announce_backoff_ms = 20;
  int64_t all_acked_ns = 0;  // every task acknowledged: the sink's BatchEnd should follow
  bool stop_workers = false;

  bool finished() const { return job_state_final(state); }
};

struct TableLimits {
  size_t max_unfinished = 1000;                 // jobs queued or running (--max-jobs)
  uint64_t max_spec_bytes = uint64_t{1} << 30;  // specs of unfinished jobs (--max-queued-mb)
  size_t keep_finished = 1000;                  // finished jobs remembered for `status`
};

class JobTable {
 public:
  using Map = std::map<uint64_t, JobRecord>;

  JobTable(const Clock& clock, TableLimits limits);

  // Adds a validated job that runs each task at most `max_attempts` times.
  // Returns: its record. Throws: SetupError when the table is full (job count or bytes).
  JobRecord& add(v1::JobSpec spec, uint32_t max_attempts);

  // Returns: the job, or nullptr.
  JobRecord* get(uint64_t id);
  // Returns: the job named by `key`: its id (16 hex digits) or its name (the newest of that
  // name), or nullptr.
  JobRecord* find(std::string_view key);

  // The sink accepted the job: it runs.
  void start(JobRecord& job);
  // Ends the job in `state`: keeps its summary, releases its spec, and forgets the oldest
  // finished jobs beyond the limit. `job` may be gone afterwards if the limit is 0.
  void finish(JobRecord& job, v1::JobState state);

  Map& jobs() { return jobs_; }
  const Map& jobs() const { return jobs_; }
  size_t unfinished() const { return unfinished_; }

 private:
  const Clock& clock_;
  TableLimits limits_;
  Map jobs_;
  std::deque<uint64_t> finished_order_;
  size_t unfinished_ = 0;
  uint64_t spec_bytes_ = 0;  // of unfinished jobs
};

// Returns: a job id as clients see it (16 hex digits).
std::string job_hex(uint64_t id);

}  // namespace taskfarm::ventilator
