// The sink: binds the results socket (PULL) and the control socket (PUB), aggregates results
// exactly once per task, acknowledges them to the ventilator, and reports each batch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/protocol.h"
#include "common/security.h"

namespace taskfarm::sink {

struct SinkOptions {
  std::string results_bind = "tcp://*:5558";
  std::string control_bind = "tcp://*:5559";
  std::string report_path;          // JSON report of a one-shot batch; empty for none
  std::string results_dir;          // DIR/<job id>/report.json for every job; empty for none
  bool serve = false;               // handle jobs until SIGINT/SIGTERM instead of one batch
  bool keep_workers = false;        // do not tell workers to exit after the batch
  bool quiet = false;               // no table on stdout
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // Limits that keep the sink's memory bounded whatever its peers send (flags of the same names).
  uint64_t max_jobs = 1000;                      // jobs aggregated at once
  uint64_t max_tasks_per_job = UINT32_MAX;         // tasks in one job (reports count in 32 bits)
  uint64_t max_output_bytes = uint64_t{64} << 20;  // one task's output (--max-output-mb)
  std::string results_service_bind;  // ROUTER for `taskfarm results` (empty: none)
  // --state DIR: the journal (DIR/sink.db) that lets a restarted sink continue its jobs; empty
  // for none.
  std::string state_dir;
  // With a journal: commits (and the acks that wait for them) at most this often, so that a
  // fast stream of results makes fewer, larger transactions (0: a commit per flush).
  int64_t min_commit_gap_ms = 2;
  CurveOptions curve;
};

class Sink {
 public:
  // Binds both sockets. Throws: SetupError (address in use, bad endpoint).
  explicit Sink(SinkOptions options, const Clock& clock = SystemClock::instance());
  ~Sink();

  // Endpoints actually bound (with the chosen port for tcp://host:0).
  const std::string& results_endpoint() const;
  const std::string& control_endpoint() const;

  // Runs until one batch is complete (serve: until a stop signal).
  // Returns: the process exit code (0, 2 some tasks failed, 130 interrupted mid-batch).
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskfarm::sink
