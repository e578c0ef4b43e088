// Per-job bookkeeping at the sink: exactly-once accounting of results, the order-independent
// digest, latency percentiles and the report. Pure logic, no sockets: unit-tested directly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/histogram.h"
#include "common/range_set.h"
#include "common/protocol.h"

namespace taskfarm::sink {

// What the aggregator made of one result.
enum class Outcome {
  kFinal,      // first final result for the task: counted
  kRetry,      // a retryable failure with attempts left: the ventilator should re-issue it
  kDuplicate,  // the task already has a final result: dropped (re-acked)
  kInvalid,    // task id out of range: rejected
};

class JobAggregator {
 public:
  // Most failures listed individually in the report.
  static constexpr size_t kMaxListedFailures = 100;
  // Longest busy time counted for one task (a day), so sums cannot overflow.
  static constexpr int64_t kMaxBusyNs = int64_t{86400} * 1'000'000'000;
  // Workers listed by name in a report; results of any further ones count under one line, so
  // a peer inventing worker ids cannot grow the sink's memory.
  static constexpr size_t kMaxListedWorkers = 4096;
  static constexpr std::string_view kOtherWorkers = "(other workers)";

  explicit JobAggregator(const v1::BatchStart& start);

  // Accounts one result received at `recv_wall_ns` from `worker`.
  // Returns: what happened to it (see Outcome).
  Outcome add(const v1::Result& result, const v1::WorkerInfo& worker, int64_t recv_wall_ns);

  // Records a worker's latest information (device memory use changes over time).
  void touch_worker(const v1::WorkerInfo& worker);

  bool complete() const { return ok_ + failed_ == total_; }
  // Returns: whether task `id` has its final result.
  bool has_final(uint64_t id) const { return final_.contains(id); }
  // Returns: the ranges of task ids with a final result (their count is about the tasks that
  // finished out of order).
  size_t final_ranges() const { return final_.ranges(); }
  uint64_t job_id() const { return job_id_; }
  const std::string& name() const { return name_; }
  uint64_t total() const { return total_; }
  uint64_t done() const { return ok_ + failed_; }
  uint64_t ok() const { return ok_; }
  uint64_t failed() const { return failed_; }
  const LatencyHistogram& latency() const { return latency_ns_; }  // send to receive, ns

  // Returns: the report as of now (final once complete()).
  v1::Report report() const;

  // Returns: everything the aggregator has counted, for the sink's journal.
  v1::AggregatorSnapshot snapshot() const;
  // Replaces the counts with a snapshot of the same job.
  // Returns: false (counts left empty) when the snapshot does not fit the job: task ids past
  // its total, or counts that disagree with the set of final tasks.
  bool restore(const v1::AggregatorSnapshot& snapshot);
  // Returns: the ids of tasks with a final result.
  const RangeSet& final_tasks() const { return final_; }

 private:
  JobAggregator(uint64_t job_id, std::string name, uint64_t total, uint32_t max_attempts);

  struct WorkerStats {
    v1::WorkerInfo info;
    uint64_t tasks = 0;
    int64_t busy_ns = 0;
  };
  struct KernelStats {
    uint64_t tasks = 0, failed = 0, bytes = 0, flops = 0;
    int64_t busy_ns = 0;
  };

  uint64_t job_id_;
  std::string name_;
  uint64_t total_;
  uint32_t max_attempts_;
  RangeSet final_;  // tasks with a final result; memory follows the gaps, not the job size
  uint64_t ok_ = 0, failed_ = 0, retried_ = 0, duplicates_ = 0;
  uint64_t bytes_ = 0, flops_ = 0;
  int64_t first_sent_ns_ = INT64_MAX, last_recv_ns_ = INT64_MIN;
  ResultDigest digest_;
  LatencyHistogram latency_ns_;
  std::map<std::string, WorkerStats> workers_;
  std::map<std::string, KernelStats> kernels_;
  // Results come in batches from one worker, mostly of one kernel: skip the map lookups.
  WorkerStats& worker_stats(const v1::WorkerInfo& worker);
  KernelStats& kernel_stats(const std::string& kernel);
  WorkerStats* last_worker_ = nullptr;
  KernelStats* last_kernel_ = nullptr;
  std::string last_worker_id_, last_kernel_name_;
  std::vector<v1::TaskFailure> failures_;
};

}  // namespace taskfarm::sink
