#include "worker/exec_kernel.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

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
  def.native = [runner, dir](const kernels::TaskInput& in) -> kernels::KernelOutput {
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
    const auto folder = std::filesystem::path(dir) / fmt::format("{:016x}", in.job_id) /
                        fmt::format("{}-{}", in.task_id, in.attempt);
    req.workdir = folder.string();
    ExecResult res = runner->run(req, in.cancelled);
    std::error_code ec;
    std::filesystem::remove_all(folder, ec);  // the task's files go with it
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
