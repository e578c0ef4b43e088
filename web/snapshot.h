// What the HTTP service shows: a plain copy of the farm's state that the ventilator's event loop
// publishes a few times a second. HTTP threads read only this, never the ventilator itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/job_state.h"
#include "taskfarm.pb.h"

namespace taskfarm::web {

struct JobView {
  std::string id;     // 16 hex digits
  std::string name;
  std::string state;  // job_state_name(): queued, running, done, failed, cancelled, interrupted
  std::string error;  // why it ended without running (refused by the sink)
  int32_t priority = 0;
  uint64_t total = 0;
  uint64_t ok = 0;         // final results, succeeded
  uint64_t failed = 0;     // final results, failed
  uint64_t in_flight = 0;  // issued to a worker, no final result yet
  double age_s = 0;        // since submission
  double running_s = 0;    // since the sink accepted it (0 while queued)
  double tasks_per_s = 0;  // over its whole run
  std::vector<std::string> kernels;  // of its task entries
  uint64_t retried = 0, duplicates = 0;  // from the sink
  std::vector<v1::TaskFailure> failures;  // first ones, with their error text
  bool finished() const { return job_state_final(job_state_from_name(state)); }
};

struct WorkerView {
  std::string id, host, device;
  uint32_t slots = 0;       // CPU threads or CUDA streams
  uint64_t held = 0;        // tasks it holds (running or queued on it)
  int64_t credit = 0;       // tasks it asked for and was not given yet
  double last_seen_s = 0;   // seconds since its last message
  bool leaving = false;
  uint64_t gpu_mem_bytes = 0;
  std::vector<std::string> kernels;  // what it can run, where known
  // From the sink, since it started:
  uint64_t tasks = 0;
  double busy_s = 0;
};

// A --state journal: the ventilator's, from its job table; the sink's, from its statistics.
struct JournalView {
  std::string process;            // "ventilator" or "sink"
  uint64_t commits = 0;
  double commit_s = -1;           // time spent committing (-1: not measured)
  uint64_t unjournaled_tasks = 0; // acknowledged tasks not in the journal yet (ventilator)
  double lag_s = 0;               // since the oldest change not in the journal (0: none)
  std::string error;              // why it cannot be written now ("": it can)
};

// One rejected-message counter: which process and socket, and how many.
struct RejectView {
  std::string process, socket;
  uint64_t count = 0;
};

struct FarmSnapshot {
  double uptime_s = 0;          // since the service started
  double start_time_s = 0;      // unix time the process started
  std::vector<JobView> jobs;    // in progress and recently finished, newest first
  std::vector<WorkerView> workers;
  uint64_t jobs_submitted = 0;  // since start
  uint64_t jobs_refused = 0;
  uint64_t reissued = 0;        // tasks issued again (lost workers, timeouts, retries)
  uint64_t workers_lost = 0;
  uint64_t queue_depth = 0;     // tasks of running jobs not issued yet
  std::vector<RejectView> rejected;
  std::vector<JournalView> journals;  // only the processes started with --state
  bool have_sink_stats = false;
  double sink_stats_age_s = 0;
  v1::MetricsSinkStats sink;    // the sink's latest totals
};

}  // namespace taskfarm::web
