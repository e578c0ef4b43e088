// The ventilator's table of submitted jobs: their states, specs while they run, and a summary
// once they end. Pure bookkeeping, no sockets; the one owner of job state (and of its journal).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/state_dir.h"
#include "common/job_state.h"
#include "common/protocol.h"
#include "common/range_set.h"
#include "jobs/job.h"

namespace taskfarm::ventilator {

class VentilatorJournal;

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

  // Restarts (issue 14).
  // Tasks the sink acknowledged, kept for the journal (--state): a restarted ventilator skips
  // them. Without a journal only while the job waits to be dispatched again.
  RangeSet acked_tasks;
  bool dispatching = false;  // handed to the dispatcher (the sink accepted it)
  bool sink_confirmed = false;  // the sink process of now has the job (it answered its start)
  uint64_t journaled_acked = 0; // acked_tasks.size() when the journal last had it
  // A job ended early is told to the sink again until its report comes back.
  int64_t next_end_notice_ns = 0;
  int end_notices = 0;

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
  ~JobTable();

  // --state DIR: opens DIR/ventilator.db and loads the jobs it holds (queued and running ones
  // continue; finished ones keep their summary for `status`). Without it, nothing is kept.
  // Throws: SetupError (folder or journal unusable).
  void open_state(const std::string& dir);
  // Returns: the ventilator's identity: kept in the journal across restarts, else random.
  uint64_t ventilator_id() const { return ventilator_id_; }
  bool journaled() const { return journal_ != nullptr; }

  // Writes what changed to the journal: changes of state at once (`force`, or a job marked
  // changed), the acknowledged tasks of running jobs at most every kProgressIntervalMs.
  // Returns: whether the journal has everything (also true without a journal); when false,
  // journal_error() says why and the next call tries again.
  bool sync(bool force = false);
  // The job's row must be written again at the next sync (a report or an error came).
  void changed(const JobRecord& job) { changed_.insert(job.id); }
  // Returns: why the journal cannot be written now ("" when it can).
  const std::string& journal_error() const { return journal_error_; }
  uint64_t journal_commits() const;
  // Returns: acknowledged tasks of unfinished jobs that the journal does not have yet (after a
  // crash they would run again).
  uint64_t unjournaled_acks() const;
  // Returns: seconds since the last journal write while something waits for the next (0 when
  // the journal has everything, or there is none).
  double journal_lag_s() const;
  static constexpr int64_t kProgressIntervalMs = 50;

  // Adds a validated job that runs each task at most `max_attempts` times; with a journal, the
  // job is in it before this returns.
  // Returns: its record. Throws: SetupError when the table is full (job count or bytes) or
  // the journal cannot be written.
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
  // Forgets the oldest finished jobs beyond the limit.
  void trim_finished();

  const Clock& clock_;
  TableLimits limits_;
  Map jobs_;
  std::deque<uint64_t> finished_order_;
  size_t unfinished_ = 0;
  uint64_t spec_bytes_ = 0;  // of unfinished jobs
  uint64_t ventilator_id_;
  std::unique_ptr<StateDir> state_;
  std::unique_ptr<VentilatorJournal> journal_;
  std::set<uint64_t> added_;    // rows to write whole, spec included
  std::set<uint64_t> changed_;  // rows to write again, but their spec
  std::set<uint64_t> erased_;   // rows to delete
  int64_t next_progress_ns_ = 0;
  int64_t next_retry_ns_ = 0;
  int64_t last_write_ns_ = 0;  // of the last successful journal write
  std::string journal_error_;
};

// Returns: a job id as clients see it (16 hex digits).
std::string job_hex(uint64_t id);

}  // namespace taskfarm::ventilator
