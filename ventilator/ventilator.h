// The ventilator: binds the task socket (ROUTER; workers are DEALERs that ask for work with
// credits), tells the sink about each job, and hands out tasks under leases: a task held by a
// worker that goes silent is issued again, and the sink's acknowledgements close them.
// One batch from flags or a file (run_batch), or a job service for scripts (serve).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/protocol.h"
#include "common/security.h"
#include "ventilator/dispatcher.h"
#include "jobs/job.h"
#include "ventilator/job_table.h"
#include "web/http_service.h"

namespace taskfarm::ventilator {

struct VentilatorOptions {
  std::string tasks_bind = "tcp://*:5557";
  std::string submit_bind;  // job service endpoint (serve mode), e.g. tcp://*:5560
  std::string sink_results = "tcp://localhost:5558";  // PUSH: batch start, give-ups, cancels
  std::string sink_control = "tcp://localhost:5559";  // SUB: acks, batch end
  DispatchPolicy policy;
  jobs::JobLimits job_limits;
  TableLimits table_limits;
  int64_t max_job_bytes = kDefaultMaxJobBytes;  // largest submission (--max-job-mb)
  int64_t heartbeat_ms = 500;
  int64_t sink_wait_ms = 0;  // give up when the sink does not answer for this long (0: never)
  // One-shot: give up when connected workers offer none for a kernel of the job this long.
  int64_t kernel_wait_ms = 10000;
  // Dispatch a job only once this many workers are connected (--min-workers); a one-shot batch
  // gives up after min_workers_wait_ms.
  uint32_t min_workers = 0;
  int64_t min_workers_wait_ms = 60000;
  CurveOptions curve;
  std::string state_dir;  // --state DIR: journal of the jobs, for restarts ("": none)
  // Dashboard, /metrics and JSON API (issue 16); off when unset. With http_optional (the
  // default port, not one the user chose), a port in use only turns it off with a warning.
  std::optional<web::HttpOptions> http;
  bool http_optional = false;
};

class Ventilator {
 public:
  // Binds the task socket (and the submission socket when submit_bind is set) and connects
  // to the sink. Throws: SetupError.
  explicit Ventilator(VentilatorOptions options, const Clock& clock = SystemClock::instance());
  ~Ventilator();

  const std::string& tasks_endpoint() const;
  const std::string& submit_endpoint() const;

  // Runs one batch to completion (every task acknowledged by the sink).
  // Returns: 0 when all tasks succeeded, 2 when some failed, 130 when interrupted (the sink and
  // the workers are told to end the batch too).
  // Throws: SetupError for an invalid job, a sink that refuses it or never answers
  // (sink_wait_ms).
  int run_batch(v1::JobSpec spec);

  // Serves submitted jobs, several at a time, until SIGINT/SIGTERM. Returns: 0.
  int serve();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskfarm::ventilator
