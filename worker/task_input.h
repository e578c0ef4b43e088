// The kernel's view of a task descriptor. Header-only: also used by the fuzzers.
#pragma once

#include "common/protocol.h"
#include "kernels/kernel.h"

namespace taskfarm::worker {

// Returns: the kernel input of `task`; its payload view lives as long as `task`.
inline kernels::TaskInput task_input(const v1::Task& task) {
  kernels::TaskInput in;
  in.size = task.size();
  in.seed = task.seed();
  in.index = task.index();
  in.count = task.count();
  in.payload = task.payload();
  return in;
}

}  // namespace taskfarm::worker
