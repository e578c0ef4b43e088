#include "ventilator/job.h"

#include <fmt/core.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "common/errors.h"
#include "common/files.h"
#include "common/strict_json.h"
#include "common/text.h"
#include "kernels/kernel.h"

namespace taskfarm::ventilator {

v1::JobSpec parse_job_json(const std::string& json, const std::string& where,
                           const std::string& default_name) {
  v1::JobSpec job;
  // protobuf lets a key given twice and "count": "7" through: refused here first.
  if (auto why = strict_json_problem(json, *v1::JobSpec::descriptor())) {
    throw SetupError(fmt::format("{}: invalid job: {}", where, *why));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &job, options);
  if (!status.ok()) {
    std::string msg(status.message());
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    throw SetupError(fmt::format("{}: invalid job: {}", where, printable(msg, 300)));
  }
  if (job.name().empty()) job.set_name(default_name);
  validate_job(job, where);
  return job;
}

v1::JobSpec load_job_file(const std::string& path, int64_t max_bytes) {
  const std::string text = read_file_capped(path, static_cast<size_t>(max_bytes), "job file");
  auto base = path.substr(path.find_last_of('/') + 1);
  base = base.substr(0, base.rfind(".json"));
  // The default name comes from the file name, which may hold anything: shown escaped and cut.
  return parse_job_json(text, printable(path), printable(base, kMaxJobNameBytes - 16));
}

void validate_job(v1::JobSpec& job, const std::string& where, const JobLimits& limits) {
  if (job.tasks_size() == 0) throw SetupError(fmt::format("{}: job has no tasks", where));
  if (job.max_attempts() > kMaxMaxAttempts) {
    throw SetupError(fmt::format("{}: max_attempts {} is above {}", where, job.max_attempts(),
                                 kMaxMaxAttempts));
  }
  const auto& registry = kernels::KernelRegistry::instance();
  uint64_t total = 0;
  for (int i = 0; i < job.tasks_size(); ++i) {
    const auto& t = job.tasks(i);
    const std::string entry =
        fmt::format("{}: task entry {} ({})", where, i + 1, printable(t.kernel(), 64));
    if (t.count() == 0) throw SetupError(fmt::format("{}: count is 0", entry));
    if (t.count() > limits.max_tasks - total) {
      throw SetupError(fmt::format("{}: job has more than {} tasks (the limit: --max-tasks)",
                                   entry, limits.max_tasks));
    }
    if (static_cast<int64_t>(t.payload().size()) > limits.max_task_bytes) {
      throw SetupError(fmt::format(
          "{}: a payload of {:.1f} MiB cannot fit in a task message (limit {:.1f} MiB)", entry,
          static_cast<double>(t.payload().size()) / (1 << 20),
          static_cast<double>(limits.max_task_bytes) / (1 << 20)));
    }
    total += t.count();
    kernels::TaskInput in;
    in.size = t.size();
    in.seed = t.seed();
    in.count = t.count();
    in.payload = t.payload();
    if (auto err = registry.validate(t.kernel(), in)) {
      throw SetupError(fmt::format("{}: {}", entry, *err));
    }
  }
  if (job.name().empty()) job.set_name(job.tasks(0).kernel());
  if (auto why = name_problem(job.name(), kMaxJobNameBytes, /*allow_spaces=*/true)) {
    throw SetupError(
        fmt::format("{}: job name '{}' {} (job names: printable UTF-8, at most {} bytes)", where,
                    printable(job.name(), 64), *why, kMaxJobNameBytes));
  }
}

Job::Job(uint64_t id, v1::JobSpec spec) : id_(id), spec_(std::move(spec)) {
  for (const auto& t : spec_.tasks()) {
    starts_.push_back(total_);
    total_ += t.count();
  }
}

void Job::fill(uint64_t task_id, v1::Task* task) const {
  // Last entry whose first id is <= task_id.
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), task_id) - 1;
  const auto& t = spec_.tasks(static_cast<int>(it - starts_.begin()));
  task->set_job_id(id_);
  task->set_task_id(task_id);
  task->set_kernel(t.kernel());
  task->set_size(t.size());
  task->set_seed(t.seed());
  task->set_index(task_id - *it);
  task->set_count(t.count());
  if (!t.payload().empty()) task->set_payload(t.payload());
  if (spec_.keep_output()) task->set_keep_output(true);
}

}  // namespace taskfarm::ventilator
