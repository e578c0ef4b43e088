// The kernel catalog: every kernel a worker can run, built-in or from a plugin, CPU or CUDA,
// registered through the one plugin interface (include/taskfarm/plugin.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "taskfarm/plugin.h"

namespace taskfarm::kernels {

// A sweep point: (key, value as text) pairs.
using Params = std::vector<std::pair<std::string, std::string>>;

// What a command task runs (the `exec` kernel): argv with its placeholders, a shell or not.
struct Command {
  const std::vector<std::string>* argv = nullptr;
  bool shell = false;
  double timeout_s = 0;
  bool retry_failures = false;  // a non-zero exit is retryable
};

// What a kernel is asked to compute. Views stay valid for the duration of the call.
struct TaskInput {
  int64_t size = 0;          // kernel-specific: elements, matrix dimension, microseconds, ...
  uint64_t seed = 0;         // generator key
  uint64_t index = 0;        // task index within its job entry: part of the generator counter
  uint64_t count = 1;        // tasks in the entry (mandelbrot splits its image into `count` bands)
  std::string_view payload;  // inline input; empty means "generate from (seed, index)"
  uint64_t job_id = 0, task_id = 0;
  uint32_t attempt = 1;
  bool keep_output = false;        // the job asked for outputs
  const Params* params = nullptr;  // the task's sweep point, if any
  Command command;                 // for `exec`
  // Becomes non-zero when the task is cancelled; long kernels check it now and then.
  const std::atomic<int>* cancelled = nullptr;
  // When set, the kernel appends the bytes it returns to the user here (mandelbrot with
  // keep_output: its band, one grey byte per pixel, row-major; plugins: what they write;
  // exec: stdout), up to max_output_bytes.
  std::string* output = nullptr;
  uint64_t max_output_bytes = uint64_t{64} << 20;
};

// What a task reports. `checksum` is exact and device-independent for generated inputs
// (see kernels/inputs.h), so the sink's digest is the same on any mix of CPU and GPU workers.
struct KernelOutput {
  uint64_t checksum = 0;
  double value = 0;    // human-readable summary: a sum, a pi estimate, ...
  uint64_t bytes = 0;  // bytes the kernel reads and writes (for MB/s)
  uint64_t flops = 0;  // floating-point operations (for GFLOP/s)
};

// A task the kernel cannot run. Permanent errors (bad size, bad payload) are not retried;
// retryable ones (out of device memory, device fault) may succeed on another attempt.
class KernelError : public std::runtime_error {
 public:
  explicit KernelError(const std::string& what, bool retryable = false)
      : std::runtime_error(what), retryable_(retryable) {}
  bool retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

// Returns: the output. Throws: KernelError for a task that cannot run.
using CpuKernelFn = KernelOutput (*)(const TaskInput&);
using NativeKernelFn = std::function<KernelOutput(const TaskInput&)>;

// One kernel of the catalog.
struct KernelDef {
  std::string_view name;
  std::string_view size_meaning;  // "elements", "matrix dimension N (N x N)", ...
  int64_t max_size = 0;           // larger sizes are rejected before anything is allocated
  bool accepts_payload = true;
  CpuKernelFn cpu = nullptr;      // a built-in's CPU implementation, called directly
  std::string_view description;
  std::string_view plugin;        // "builtin", or the plugin that registered it
  bool size_required = false;     // size 0 is an error
  // A job entry must give a size (or a payload that sets it): a built-in's size 0 computes
  // nothing, and a job file without "size" would run it silently (noop needs none).
  bool job_needs_size = false;
  bool outputs = false;           // may return output bytes to the user
  bool cuda_builtin = false;      // its CUDA side is the GPU plugin's StreamRunner
  tf_kernel abi{};                // the plugin interface's entry: validate, run_cpu, run_cuda
  NativeKernelFn native;          // a worker-side built-in (exec), when set

  bool has_cpu() const { return cpu || native || abi.run_cpu; }
  bool has_cuda() const { return cuda_builtin || abi.run_cuda; }
};

class KernelCatalog {
 public:
  // Returns: the process-wide catalog of the built-in kernels (built once, immutable, safe to
  // share between threads). What the ventilator checks jobs against.
  static const KernelCatalog& builtins();
  static const KernelCatalog& instance() { return builtins(); }

  // Adds a plugin's kernels; `where` names it in messages (its path).
  // Throws: SetupError (one line) for another ABI version, a bad kernel table or name, or a
  // name the catalog already has.
  void add_plugin(const tf_plugin& plugin, const std::string& where);
  // Loads a plugin library (dlopen) and adds it. Throws: SetupError.
  void load_plugin(const std::string& path);
  // Loads every lib*.so in `dir`, in name order. Throws: SetupError.
  void load_plugin_dir(const std::string& dir);
  // Gives the built-in kernels named in `plugin` (the GPU plugin's table) their CUDA side.
  void attach_builtin_cuda(const tf_plugin& plugin);
  // Adds a kernel implemented inside the worker (exec). Throws: SetupError on a name clash.
  void add_native(KernelDef def);

  // Returns: the kernel's definition, or nullptr when unknown.
  const KernelDef* find(std::string_view name) const;
  const std::vector<KernelDef>& all() const { return defs_; }
  // Returns: "noop, sleep, saxpy, ..." for error messages and --help.
  std::string names() const;

  // Returns: why the task can never run (unknown kernel, negative or absurd size, bad payload
  // length), or nullopt when it is valid. Cheap: allocates nothing unless it finds a problem.
  std::optional<std::string> validate(std::string_view kernel, const TaskInput& in) const;

  // Runs the CPU implementation. Returns: the output. Throws: KernelError.
  KernelOutput run_cpu(std::string_view kernel, const TaskInput& in) const;

  KernelCatalog(const KernelCatalog&) = default;
  KernelCatalog& operator=(const KernelCatalog&) = default;

 private:
  KernelCatalog() = default;
  std::vector<KernelDef> defs_;
  std::vector<std::shared_ptr<void>> libraries_;  // dlopen handles, kept open
};

// The name the rest of the code knew it by.
using KernelRegistry = KernelCatalog;

// The plugin interface's view of a task: a tf_task pointing into `in` (and its own storage of
// sweep parameters). Lives as long as `in`.
class PluginTask {
 public:
  PluginTask(std::string_view kernel, const TaskInput& in);
  const tf_task* get() const { return &task_; }

 private:
  std::string kernel_;
  std::vector<tf_param> params_;
  tf_task task_{};
};

// A tf_output that appends to `in.output`, refusing what would pass in.max_output_bytes.
class PluginOutput {
 public:
  explicit PluginOutput(const TaskInput& in);
  tf_output* get() { return &out_; }
  bool overflowed() const { return overflowed_; }

 private:
  static int write(void* ctx, const void* data, size_t size);
  std::string* target_;
  uint64_t limit_;
  bool overflowed_ = false;
  tf_output out_{};
};

// Returns: the TaskInput a tf_task describes (views into it; no params, output or command).
TaskInput task_input_of(const tf_task& task);

// Returns: the KernelOutput of a plugin run that returned `rc` with `result`, or throws
// KernelError (TF_FAILED: permanent, TF_RETRY: retryable; also for an overflowed output).
KernelOutput plugin_outcome(std::string_view kernel, int rc, const tf_result& result,
                            const PluginOutput& output, uint64_t max_output_bytes);

}  // namespace taskfarm::kernels
