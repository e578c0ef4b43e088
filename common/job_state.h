// Job states in words: the one place that turns v1::JobState into what people and reports read.
#pragma once

#include <string_view>

#include "taskfarm.pb.h"

namespace taskfarm {

// Returns: "queued", "running", "done", "failed", "cancelled" or "interrupted" ("unknown" for
// anything else).
constexpr std::string_view job_state_name(v1::JobState state) {
  switch (state) {
    case v1::JOB_QUEUED: return "queued";
    case v1::JOB_RUNNING: return "running";
    case v1::JOB_DONE: return "done";
    case v1::JOB_FAILED: return "failed";
    case v1::JOB_CANCELLED: return "cancelled";
    case v1::JOB_INTERRUPTED: return "interrupted";
    default: return "unknown";
  }
}

// Returns: the state named `name` (as job_state_name writes it), or JOB_STATE_UNSPECIFIED.
constexpr v1::JobState job_state_from_name(std::string_view name) {
  for (int s = v1::JOB_QUEUED; s <= v1::JOB_INTERRUPTED; ++s) {
    if (job_state_name(static_cast<v1::JobState>(s)) == name) return static_cast<v1::JobState>(s);
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

// Returns: whether a job in `state` is over (it will not change again).
constexpr bool job_state_final(v1::JobState state) {
  return state == v1::JOB_DONE || state == v1::JOB_FAILED || state == v1::JOB_CANCELLED ||
         state == v1::JOB_INTERRUPTED;
}

}  // namespace taskfarm
