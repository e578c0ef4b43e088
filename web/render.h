// Pure functions of a FarmSnapshot: the Prometheus text, the JSON of the API and the
// dashboard, and the short history (throughput, per-worker utilisation) they draw.
#pragma once

#include <nlohmann/json.hpp>

#include <deque>
#include <map>
#include <string>

#include "web/snapshot.h"

namespace taskfarm::web {

// Keeps the last few minutes of a sequence of snapshots, one point a second.
class History {
 public:
  static constexpr size_t kPoints = 300;       // throughput chart: 5 minutes
  static constexpr size_t kStripPoints = 120;  // per-worker utilisation strip: 2 minutes
  static constexpr double kRateWindowS = 10;   // recent rates and busy ratios

  // Takes a snapshot in; call at each publish (a few times a second).
  void add(const FarmSnapshot& snapshot);

  struct Point {
    double t;            // FarmSnapshot::uptime_s
    double tasks_per_s;  // final results per second over the last second
  };
  const std::deque<Point>& throughput() const { return throughput_; }
  // Returns: the job's rate over the last kRateWindowS seconds (0 when unknown).
  double job_rate(const std::string& id) const;
  // Returns: slots held per second (0..1) over the last kStripPoints seconds, oldest first.
  std::deque<float> occupancy(const std::string& worker) const;
  // Returns: the fraction of the worker's slots busy over the last kRateWindowS seconds (from
  // the sink's busy time), or -1 when unknown.
  double busy_ratio(const std::string& worker) const;
  uint64_t tasks_completed() const { return completed_; }

 private:
  struct Sample {
    double t;
    uint64_t done;
  };
  struct WorkerTrack {
    std::deque<float> occupancy;
    double occupancy_sum = 0;  // of the snapshots in the current second
    int occupancy_n = 0;
    std::deque<std::pair<double, double>> busy;  // (t, busy_s from the sink)
    uint32_t slots = 0;
    double last_t = 0;
  };
  uint64_t completed_ = 0;                   // final results of every job seen
  std::map<std::string, uint64_t> job_done_; // last seen done count, for deltas
  std::map<std::string, std::deque<Sample>> job_samples_;
  std::map<std::string, WorkerTrack> workers_;
  std::deque<Point> throughput_;
  double point_t_ = -1;           // start of the current second
  uint64_t point_completed_ = 0;  // completed_ at its start
};

// Returns: the metrics in the Prometheus text exposition format (version 0.0.4).
std::string prometheus_text(const FarmSnapshot& snapshot, const History& history);

// Returns: one job for the API; with its failures when `detail`.
nlohmann::json job_json(const JobView& job, const History& history, bool detail);
// Returns: one worker for the API.
nlohmann::json worker_json(const WorkerView& worker, const History& history);
// Returns: everything the dashboard draws, in one object.
nlohmann::json dashboard_json(const FarmSnapshot& snapshot, const History& history,
                              bool token_required);

}  // namespace taskfarm::web
