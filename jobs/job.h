// Jobs: loading and validating job files (the JSON mapping of v1::JobSpec), and turning a job's
// task ids into task descriptors lazily, so a job of 10 million tasks costs a few bytes.
// Shared by the ventilator (dispatch) and the `taskfarm` client (checks a job before submitting).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/sweep.h"

namespace taskfarm::jobs {

inline constexpr uint64_t kMaxTasksPerJob = UINT32_MAX;
// Job names are shown in `taskfarm status` and logs: short, printable UTF-8.
inline constexpr size_t kMaxJobNameBytes = 128;
// The kernel that runs a command per task (workers offer it only with --allow-exec).
inline constexpr std::string_view kExecKernel = "exec";

// What one job may hold (flags of the ventilator; the defaults are the protocol's limits).
struct JobLimits {
  uint64_t max_tasks = kMaxTasksPerJob;
  // A task with its inline payload must fit in one message to a worker.
  int64_t max_task_bytes = kDefaultMaxMessageBytes - kEnvelopeOverheadBytes;
};

// Returns: the job in `path`, a file of at most `max_bytes`. Throws: SetupError (missing,
// non-regular or too large file, malformed JSON, duplicate key, quoted number, unknown field,
// invalid job) with a one-line message naming the file and the problem.
v1::JobSpec load_job_file(const std::string& path,
                          int64_t max_bytes = kDefaultMaxJobBytes);

// Returns: the job parsed from JSON text (strict: no duplicate keys, numbers as numbers; see
// common/strict_json.h), named `default_name` when it has no name (or after its first kernel
// when that is empty too). Throws: SetupError.
v1::JobSpec parse_job_json(const std::string& json, const std::string& where = "job",
                           const std::string& default_name = "");

// Checks every entry (built-in kernels fully, with a size where the kernel needs one; exec's argv template; a plugin kernel's name and
// size only: the workers that have it check the rest), sizes within limits, payload format,
// counts, room in a message, sweep params (a count of 0 becomes the number of points), and the
// name (printable UTF-8, at most kMaxJobNameBytes); names the job after its first kernel when it
// has no name. max_attempts 0 stays 0: the ventilator's --max-attempts applies.
// Throws: SetupError naming the entry and problem.
void validate_job(v1::JobSpec& job, const std::string& where = "job", const JobLimits& limits = {});

class Job {
 public:
  Job(uint64_t id, v1::JobSpec spec);

  uint64_t id() const { return id_; }
  const v1::JobSpec& spec() const { return spec_; }
  uint64_t total() const { return total_; }

  // Fills `task` with the descriptor of task `task_id` (attempt and sent time left to the caller).
  void fill(uint64_t task_id, v1::Task* task) const;

 private:
  uint64_t id_;
  v1::JobSpec spec_;
  std::vector<uint64_t> starts_;  // first task id of each entry
  std::vector<Sweep> sweeps_;     // each entry's parameter points (empty: none)
  uint64_t total_ = 0;
};

}  // namespace taskfarm::jobs
