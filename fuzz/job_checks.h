// Invariants of an accepted job, shared by the fuzz targets that take jobs from outside
// (job files and SubmitJob messages): every task it expands into must be one workers accept.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/text.h"
#include "kernels/kernel.h"
#include "worker/task_input.h"
#include "jobs/job.h"

namespace taskfarm::fuzz {

[[noreturn]] inline void fail(const char* why, const std::string& detail = "") {
  fprintf(stderr, "fuzz: invariant broken: %s %s\n", why, detail.c_str());
  abort();
}

inline void check_task(const jobs::Job& job, uint64_t task_id) {
  v1::Task t;
  job.fill(task_id, &t);
  if (t.task_id() != task_id || t.job_id() != job.id()) fail("fill names another task");
  if (t.index() >= t.count()) fail("task index outside its entry");
  // exec and plugin kernels are checked by the workers that offer them (validate_job checks
  // their shape only): the built-ins are checked in full here.
  const auto& registry = kernels::KernelRegistry::instance();
  if (t.kernel() == jobs::kExecKernel || registry.find(t.kernel()) == nullptr) return;
  const kernels::TaskInput in = worker::task_input(t);
  if (auto why = registry.validate(t.kernel(), in)) {
    fail("accepted job makes a task workers reject:", *why);
  }
}

// Checks a job that validate_job/parse_job_json accepted.
inline void check_accepted_job(const v1::JobSpec& spec) {
  if (spec.name().empty()) fail("accepted job without a name");
  if (auto why = name_problem(spec.name(), jobs::kMaxJobNameBytes, true)) {
    fail("accepted job whose name", *why);  // shown by `taskfarm status` and logged
  }
  if (spec.max_attempts() > 100) fail("max_attempts out of range");  // 0: the ventilator's default
  jobs::Job job(42, spec);
  if (job.total() == 0 || job.total() > jobs::kMaxTasksPerJob) fail("bad total");
  uint64_t first = 0;  // first and last task of every entry
  for (const auto& entry : spec.tasks()) {
    check_task(job, first);
    check_task(job, first + entry.count() - 1);
    first += entry.count();
  }
  if (first != job.total()) fail("entry counts do not add up to the total");
}

}  // namespace taskfarm::fuzz
