// Task outputs in the results directory, in a layout that is safe by construction (job and
// task ids, never names, become path components):
//   DIR/<job id>/outputs/<task id>   the bytes a task returned (written to a temporary file,
//                                    then renamed: a reader never sees half of one)
//   DIR/<job id>/index.jsonl         one JSON line per task with a final result:
//     {"task_id":7,"entry":0,"index":7,"kernel":"exec","status":"ok","attempt":1,
//      "worker":"node3-1234","bytes":12,"checksum":"00ab...","value":0.5,
//      "params":{"x":"1"},"output":"outputs/7","error":"..."}
// and the reading side of the results service (`taskfarm results`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/sweep.h"

namespace taskfarm::sink {

// Returns: whether a job's results get an index and outputs: it keeps outputs, or has command
// tasks, plugin kernels (they may write outputs) or a sweep (the index maps points to results).
bool job_has_outputs(const v1::JobSpec& spec);

class JobOutputs {
 public:
  // Creates DIR/<job id>/outputs. With `keep_index_bytes`, an existing index is first cut to
  // that many bytes (a restarted sink drops the lines of results its journal does not count;
  // 0: a fresh index); without, lines are appended. Throws: nothing; a folder it cannot create
  // is logged, and the outputs are then dropped (counted in failed_writes()).
  JobOutputs(const std::filesystem::path& results_dir, uint64_t job_id, const v1::JobSpec& spec,
             std::optional<uint64_t> keep_index_bytes = std::nullopt);

  // Records the final result of task `r.task_id()` (entry `entry`, index `index` in it).
  void record(const v1::Result& r, const std::string& worker, int entry, uint64_t index);
  // Makes what was recorded visible to readers (flushes the index).
  void flush();

  uint64_t failed_writes() const { return failed_writes_; }
  // Returns: the size of the index, with what was recorded (flushed or not).
  uint64_t index_bytes() const { return index_bytes_; }

 private:
  std::filesystem::path dir_;
  std::ofstream index_;
  std::vector<Sweep> sweeps_;
  std::vector<std::string> kernels_;
  uint64_t failed_writes_ = 0;
  uint64_t index_bytes_ = 0;
};

// Reads index lines of a job from byte `offset` of its index, with their outputs, until about
// `max_bytes` of outputs (at least one item when there is one). Fills `reply`'s items and
// next_offset. Returns: false when the job has no index in `results_dir`.
bool read_outputs(const std::filesystem::path& results_dir, uint64_t job_id, uint64_t offset,
                  uint64_t max_bytes, v1::ResultsReply& reply);

}  // namespace taskfarm::sink
