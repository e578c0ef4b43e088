// The sink's farm-wide totals for the ventilator's /metrics and dashboard (issue 16): folded
// from each job's report when it ends, plus the jobs in progress, so the hot path pays nothing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/histogram.h"
#include "common/protocol.h"
#include "sink/aggregator.h"

namespace taskfarm::sink {

// Upper bounds (seconds) of the latency histogram exported to Prometheus.
inline const std::vector<double>& latency_bounds_s() {
  static const std::vector<double> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10,    30,     60,
                                             300};
  return bounds;
}

class SinkMetrics {
 public:
  // Adds an ended (complete or cancelled) job to the totals.
  void fold(const JobAggregator& job);

  // Returns: the totals including the jobs in progress, and their reports so far.
  v1::MetricsSinkStats stats(const std::vector<const JobAggregator*>& active, uint64_t rejected,
                             uint64_t late_results) const;

 private:
  struct Kernel {
    uint64_t ok = 0, failed = 0;
    double busy_s = 0;
  };
  struct Worker {
    std::string host, device;
    uint64_t tasks = 0, gpu_mem_bytes = 0;
    double busy_s = 0;
  };
  static void add(const v1::Report& rep, std::map<std::string, Kernel>& kernels,
                  std::map<std::string, Worker>& workers);

  std::map<std::string, Kernel> kernels_;
  std::map<std::string, Worker> workers_;
  uint64_t retried_ = 0, duplicates_ = 0;
  LatencyHistogram latency_ns_;
};

}  // namespace taskfarm::sink
