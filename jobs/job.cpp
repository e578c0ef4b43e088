#include "jobs/job.h"

#include <fmt/core.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>

#include "common/errors.h"
#include "common/files.h"
#include "common/strict_json.h"
#include "common/text.h"
#include "kernels/kernel.h"

namespace taskfarm::jobs {

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
  return parse_job_json(text, printable(path, 1024), printable(base, kMaxJobNameBytes - 16));
}

namespace {

constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxArgBytes = 64 << 10;
constexpr double kMaxTimeoutS = 30 * 86400.0;

bool valid_kernel_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Checks an argv template's placeholders: {index}, {task_id}, {job_id}, {attempt}, {KEY} of a
// sweep parameter; {{ and }} are literal braces. Returns: why it is bad, or "".
std::string check_template(const std::string& arg, const Sweep& sweep) {
  for (size_t i = 0; i < arg.size(); ++i) {
    if (arg[i] == '}') {
      if (i + 1 < arg.size() && arg[i + 1] == '}') {
        ++i;
        continue;
      }
      return fmt::format("a lone '}}' in '{}' (write }}}} for a brace)", printable(arg));
    }
    if (arg[i] != '{') continue;
    if (i + 1 < arg.size() && arg[i + 1] == '{') {
      ++i;
      continue;
    }
    const size_t end = arg.find('}', i);
    if (end == std::string::npos) return fmt::format("an unclosed '{{' in '{}'", printable(arg));
    const std::string name = arg.substr(i + 1, end - i - 1);
    const auto& keys = sweep.keys();
    if (name != "index" && name != "task_id" && name != "job_id" && name != "attempt" &&
        std::find(keys.begin(), keys.end(), name) == keys.end()) {
      return fmt::format("unknown placeholder {{{}}} in '{}' (known: {{index}}, {{task_id}}, "
                         "{{job_id}}, {{attempt}}{})",
                         printable(name), printable(arg), keys.empty() ? "" : " and the params");
    }
    i = end;
  }
  return "";
}

}  // namespace

void validate_job(v1::JobSpec& job, const std::string& where, const JobLimits& limits) {
  if (job.tasks_size() == 0) throw SetupError(fmt::format("{}: job has no tasks", where));
  if (job.max_attempts() > kMaxMaxAttempts) {
    throw SetupError(fmt::format("{}: max_attempts {} is above {}", where, job.max_attempts(),
                                 kMaxMaxAttempts));
  }
  const auto& registry = kernels::KernelRegistry::instance();
  uint64_t total = 0;
  for (int i = 0; i < job.tasks_size(); ++i) {
    auto& t = *job.mutable_tasks(i);
    const std::string entry = fmt::format("{}: task entry {} ({})", where, i + 1, printable(t.kernel()));
    if (!valid_kernel_name(t.kernel())) {
      throw SetupError(fmt::format("{}: '{}' is not a kernel name (1-64 of A-Z a-z 0-9 _ . -; "
                                   "built-in: {})",
                                   entry, printable(t.kernel()), registry.names()));
    }
    Sweep sweep;
    try {
      sweep = Sweep::parse(t.params(), limits.max_tasks);
    } catch (const SetupError& e) {
      throw SetupError(fmt::format("{}: {}", entry, e.what()));
    }
    if (!sweep.empty()) {
      if (t.count() == 0) t.set_count(sweep.points());
      if (t.count() != sweep.points()) {
        throw SetupError(fmt::format("{}: count {} but params has {} points (give no count)",
                                     entry, t.count(), sweep.points()));
      }
    }
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
    const bool exec = t.kernel() == kExecKernel;
    if (!exec && (t.argv_size() > 0 || t.shell() || t.retry_failures() || t.timeout_s() != 0)) {
      throw SetupError(fmt::format("{}: argv, shell, timeout_s and retry_failures are for the "
                                   "exec kernel",
                                   entry));
    }
    if (exec) {
      if (t.argv_size() == 0 || t.argv(0).empty()) {
        throw SetupError(fmt::format("{}: exec needs argv, e.g. [\"./simulate\", \"{{index}}\"]",
                                     entry));
      }
      if (static_cast<size_t>(t.argv_size()) > kMaxArgs) {
        throw SetupError(fmt::format("{}: more than {} arguments", entry, kMaxArgs));
      }
      for (const auto& arg : t.argv()) {
        if (arg.size() > kMaxArgBytes || arg.find('\0') != std::string::npos) {
          throw SetupError(fmt::format("{}: an argument longer than {} bytes or with a NUL byte",
                                       entry, kMaxArgBytes));
        }
        if (auto why = check_template(arg, sweep); !why.empty()) {
          throw SetupError(fmt::format("{}: {}", entry, why));
        }
      }
      if (!(t.timeout_s() >= 0 && t.timeout_s() <= kMaxTimeoutS)) {
        throw SetupError(fmt::format("{}: timeout_s must be between 0 (none) and {}", entry,
                                     kMaxTimeoutS));
      }
      if (t.size() != 0) throw SetupError(fmt::format("{}: exec takes no size", entry));
      continue;
    }
    if (registry.find(t.kernel()) == nullptr) {
      // A plugin's kernel: workers that load the plugin check the task; here only the shape.
      if (t.size() < 0) throw SetupError(fmt::format("{}: negative size {}", entry, t.size()));
      continue;
    }
    kernels::TaskInput in;
    in.size = t.size();
    in.seed = t.seed();
    in.count = t.count();
    in.payload = t.payload();
    if (auto err = registry.validate(t.kernel(), in)) {
      throw SetupError(fmt::format("{}: {}", entry, *err));
    }
    // A missing size is 0 in JSON: never run a size-0 batch silently.
    const kernels::KernelDef* def = registry.find(t.kernel());
    if (def->job_needs_size && t.size() == 0 && t.payload().empty()) {
      throw SetupError(fmt::format("{}: needs a size ({}) of at least 1", entry, def->size_meaning));
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
    sweeps_.push_back(Sweep::parse(t.params(), UINT32_MAX));  // validated before
  }
}

void Job::fill(uint64_t task_id, v1::Task* task) const {
  // Last entry whose first id is <= task_id.
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), task_id) - 1;
  const size_t e = static_cast<size_t>(it - starts_.begin());
  const auto& t = spec_.tasks(static_cast<int>(e));
  task->set_job_id(id_);
  task->set_task_id(task_id);
  task->set_kernel(t.kernel());
  task->set_size(t.size());
  task->set_seed(t.seed());
  task->set_index(task_id - *it);
  task->set_count(t.count());
  if (!t.payload().empty()) task->set_payload(t.payload());
  if (spec_.keep_output()) task->set_keep_output(true);
  if (!sweeps_[e].empty()) {
    for (auto& [key, value] : sweeps_[e].point(task->index())) {
      auto* p = task->add_params();
      p->set_key(std::move(key));
      p->set_value(std::move(value));
    }
  }
  if (t.argv_size() > 0) {
    *task->mutable_argv() = t.argv();
    task->set_shell(t.shell());
    task->set_timeout_s(t.timeout_s());
    task->set_retry_failures(t.retry_failures());
  }
}

}  // namespace taskfarm::jobs
