// The ventilator's side of the dashboard and /metrics (issue 16): owns the HttpService, turns
// the VentilatorCore's state into the snapshot it serves, and runs its commands (cancel) on the
// core, all on the event loop's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "ventilator/ventilator_core.h"
#include "web/http_service.h"
#include "web/snapshot.h"

namespace taskfarm::ventilator {

class VentilatorWeb {
 public:
  // Starts serving. Returns: nullptr when `optional` and the port cannot be bound (logged).
  // Throws: SetupError otherwise.
  static std::unique_ptr<VentilatorWeb> start(const web::HttpOptions& options, bool optional,
                                              const Clock& clock);

  // The sink's latest totals (its MetricsSinkStats message).
  void on_sink_stats(const v1::MetricsSinkStats& stats);
  // Counts a client's request by its reply (jobs submitted and refused).
  void on_request(const v1::Envelope& request, const v1::Envelope& reply);
  void on_job_added() { ++jobs_submitted_; }

  // Runs the HTTP commands on `core`; publishes a snapshot at most every 250 ms, with the
  // ventilator's rejected-frame counters from `rejected()`.
  template <typename Rejected>
  void serve(VentilatorCore& core, Rejected&& rejected) {
    run_commands(core);
    const int64_t now = clock_.steady_ns();
    if (now < next_publish_ns_) return;
    next_publish_ns_ = now + ms_to_ns(250);
    http_->publish(snapshot(core, now, rejected()));
  }

 private:
  VentilatorWeb(std::unique_ptr<web::HttpService> http, const Clock& clock);
  void run_commands(VentilatorCore& core);
  web::FarmSnapshot snapshot(VentilatorCore& core, int64_t now,
                             std::vector<web::RejectView> rejected) const;

  std::unique_ptr<web::HttpService> http_;
  const Clock& clock_;
  const int64_t started_ns_;
  const double started_wall_s_;
  v1::MetricsSinkStats sink_stats_;
  int64_t sink_stats_ns_ = 0, next_publish_ns_ = 0;
  uint64_t jobs_submitted_ = 0, jobs_refused_ = 0;
};

}  // namespace taskfarm::ventilator
