// The kernel's view of a task descriptor. Header-only: also used by the fuzzers.
#pragma once

#include "common/protocol.h"
#include "kernels/kernel.h"

namespace taskfarm::worker {

// Returns: the kernel input of `task`; its views live as long as `task` (and `params`/`argv`,
// which receive the task's sweep point and command line when it has them).
inline kernels::TaskInput task_input(const v1::Task& task, kernels::Params* params = nullptr,
                                     std::vector<std::string>* argv = nullptr) {
  kernels::TaskInput in;
  in.size = task.size();
  in.seed = task.seed();
  in.index = task.index();
  in.count = task.count();
  in.payload = task.payload();
  in.job_id = task.job_id();
  in.task_id = task.task_id();
  in.attempt = task.attempt();
  in.keep_output = task.keep_output();
  if (params && task.params_size() > 0) {
    params->clear();
    for (const auto& p : task.params()) params->emplace_back(p.key(), p.value());
    in.params = params;
  }
  if (argv && task.argv_size() > 0) {
    argv->assign(task.argv().begin(), task.argv().end());
    in.command.argv = argv;
    in.command.shell = task.shell();
    in.command.timeout_s = task.timeout_s();
    in.command.retry_failures = task.retry_failures();
  }
  return in;
}

}  // namespace taskfarm::worker
