#include "worker/exec_kernel.h"

#include <fmt/core.h>

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "common/errors.h"
#include "common/text.h"
#include "kernels/inputs.h"

namespace taskfarm::worker {

std::string expand_placeholders(const std::string& arg, const kernels::TaskInput& in) {
  std::string out;
  out.reserve(arg.size());
  for (size_t i = 0; i < arg.size(); ++i) {
    const char c = arg[i];
    if ((c == '{' || c == '}') && i + 1 < arg.size() && arg[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    const size_t end = c == '{' ? arg.find('}', i) : std::string::npos;
    if (end == std::string::npos) {
      out += c;
      continue;
    }
    const std::string_view name(arg.data() + i + 1, end - i - 1);
    if (name == "index") {
      out += std::to_string(in.index);
    } else if (name == "task_id") {
      out += std::to_string(in.task_id);
    } else if (name == "job_id") {
      out += fmt::format("{:016x}", in.job_id);
    } else if (name == "attempt") {
      out += std::to_string(in.attempt);
    } else {
      bool found = false;
      if (in.params) {
        for (const auto& [key, value] : *in.params) {
          if (key == name) {
            out += value;
            found = true;
            break;
          }
        }
      }
      if (!found) out.append(arg, i, end - i + 1);
    }
    i = end;
  }
  return out;
}

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The tasks' working folders, kept between tasks and emptied after each: making and removing
// a folder per task cost ~4 ms of waiting on an ext4 mounted with online discard (bench/
// RESULTS.md, "Command tasks"), checking that a folder is empty costs a readdir. Each folder
// serves one task at a time. Thread-safe.
class WorkdirPool {
 public:
  explicit WorkdirPool(std::filesystem::path dir) : dir_(std::move(dir)) {}
  WorkdirPool(const WorkdirPool&) = delete;
  WorkdirPool& operator=(const WorkdirPool&) = delete;
  ~WorkdirPool() {
    std::error_code ec;
    for (const auto& folder : free_) std::filesystem::remove_all(folder, ec);
  }

  // Returns: an empty folder for one task, or "" when none can be made (the runner then
  // fails the task with the reason).
  std::string take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        std::string folder = std::move(free_.back());
        free_.pop_back();
        return folder;
      }
    }
    // A unique name: several workers may share one --exec-dir.
    std::string templ = (dir_ / "task-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return "";
    return templ;
  }

  // Empties `folder` after its task and keeps it for the next; one that cannot be emptied
  // (a task made something it may not remove) is given up.
  void give_back(std::string folder) {
    std::error_code ec;
    bool empty = true;
    for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::error_code rm;
      std::filesystem::remove_all(it->path(), rm);
      if (rm) empty = false;
    }
    if (ec || !empty) {
      std::filesystem::remove_all(folder, ec);
      return;
    }
    std::lock_guard lock(mu_);
    free_.push_back(std::move(folder));
  }

 private:
  const std::filesystem::path dir_;
  std::mutex mu_;                  // guards free_
  std::vector<std::string> free_;  // empty folders
};

}  // namespace

kernels::KernelDef exec_kernel(std::shared_ptr<const ExecRunner> runner, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw SetupError(fmt::format("--exec-dir {}: cannot create it ({})", printable(dir),
                                 ec ? ec.message() : "not a directory"));
  }
  kernels::KernelDef def;
  def.name = "exec";
  def.size_meaning = "ignored";
  def.description = "runs a command per task: argv with {index}, {task_id}, {params}";
  def.max_size = 0;
  def.plugin = "builtin";
  def.outputs = true;  // stdout
  auto workdirs = std::make_shared<WorkdirPool>(dir);
  def.native = [runner, workdirs](const kernels::TaskInput& in) -> kernels::KernelOutput {
    if (in.command.argv == nullptr || in.command.argv->empty()) {
      throw kernels::KernelError("exec: the task has no argv");
    }
    ExecRequest req;
    for (const auto& arg : *in.command.argv) req.argv.push_back(expand_placeholders(arg, in));
    req.shell = in.command.shell;
    req.timeout_s = in.command.timeout_s;
    req.stdin_data = in.payload;
    req.max_output_bytes = in.max_output_bytes;
    req.env = {{"TASKFARM_JOB_ID", fmt::format("{:016x}", in.job_id)},
               {"TASKFARM_TASK_ID", std::to_string(in.task_id)},
               {"TASKFARM_TASK_INDEX", std::to_string(in.index)},
               {"TASKFARM_ATTEMPT", std::to_string(in.attempt)}};
    if (in.params) {
      for (const auto& [key, value] : *in.params) req.env.emplace_back("TASKFARM_PARAM_" + upper(key), value);
    }
    req.workdir = workdirs->take();
    if (req.workdir.empty()) {
      throw kernels::KernelError(
          fmt::format("exec: cannot make a working folder in the worker's --exec-dir: {}",
                      std::strerror(errno)),
          /*retryable=*/true);
    }
    ExecResult res = runner->run(req, in.cancelled);
    workdirs->give_back(std::move(req.workdir));  // the task's files go
    switch (res.status) {
      case ExecResult::Status::kOk: {
        if (in.output) *in.output = std::move(res.output);
        const std::string& out = in.output ? *in.output : res.output;
        // The checksum of a command's result is a hash of its stdout.
        uint64_t h = kernels::mix64(out.size());
        for (size_t i = 0; i < out.size(); i += 8) {
          uint64_t w = 0;
          std::memcpy(&w, out.data() + i, std::min<size_t>(8, out.size() - i));
          h += kernels::element_hash(i / 8, w);
        }
        return kernels::KernelOutput{h, res.wall_s, out.size(), 0};
      }
      case ExecResult::Status::kFailed:
        throw kernels::KernelError(fmt::format("exec: {}", res.error), in.command.retry_failures);
      case ExecResult::Status::kTimedOut:
        throw kernels::KernelError(fmt::format("exec: {}", res.error), in.command.retry_failures);
      case ExecResult::Status::kCancelled:
        throw kernels::KernelError(fmt::format("exec: {}", res.error), /*retryable=*/true);
      case ExecResult::Status::kOutputTooLarge:
        throw kernels::KernelError(
            fmt::format("exec: {} (--max-output-mb)", res.error));
      case ExecResult::Status::kSpawnFailed:
        // A missing program fails everywhere alike; a permission or format problem too.
        throw kernels::KernelError(fmt::format("exec: {}", res.error));
    }
    throw kernels::KernelError("exec: unknown outcome");
  };
  return def;
}

}  // namespace taskfarm::worker
