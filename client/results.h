// `taskfarm results JOB`: fetches a job's outputs and index from the sink's results service
// (ROUTER :5561) into a folder, as they are produced, resumable after any interruption.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/security.h"

namespace taskfarm::client {

struct FetchOptions {
  std::string endpoint;  // the sink's results service
  std::string job_id;    // 16 hex digits
  std::string out_dir;   // gets index.jsonl and outputs/<task id>
  bool wait = true;      // until the job ends (false: what exists now)
  bool quiet = false;
  int64_t timeout_ms = 5000;
  // Whether the job service still has the job queued or running: while it has, a sink that
  // does not know the job yet (its start is on the way) is waited for. Unset: not asked.
  std::function<bool()> pending;
};

// Fetches into out_dir, resuming from what out_dir already holds.
// Returns: 0 when the job succeeded (or, without wait, the fetch did), 2 when it failed or was
// cancelled, 130 when interrupted (run it again to resume). Throws: SetupError (no answer,
// unknown job, a folder it cannot write).
int fetch_results(const FetchOptions& options, const CurveOptions& curve);

// Returns: the results service's endpoint on the host of a job service's `server` spec
// ("head", "head:5560", "tcp://head:5560"), or "" when it cannot be derived (ipc://).
std::string results_endpoint_near(const std::string& server);

}  // namespace taskfarm::client
