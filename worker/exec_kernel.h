// The `exec` kernel: each task runs a command (issue: "command tasks", README "Command tasks").
// Built into the worker, and offered only with --allow-exec.
#pragma once

#include <memory>
#include <string>

#include "kernels/kernel.h"
#include "worker/exec_runner.h"

namespace taskfarm::worker {

// Returns: argv[i] with its placeholders replaced: {index}, {task_id}, {job_id} (16 hex digits),
// {attempt}, {KEY} for each sweep parameter; {{ and }} are braces. Unknown placeholders stay as
// they are (the ventilator refused them already).
std::string expand_placeholders(const std::string& arg, const kernels::TaskInput& in);

// Returns: the catalog entry of `exec`: commands run by `runner`, each in an empty folder of
// its own, DIR/task-XXXXXX, emptied after the task and reused by a later one (removed when the
// entry is destroyed).
// Throws: SetupError when `dir` cannot be created.
kernels::KernelDef exec_kernel(std::shared_ptr<const ExecRunner> runner, const std::string& dir);

}  // namespace taskfarm::worker
