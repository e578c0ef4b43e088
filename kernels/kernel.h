// Kernel interface shared by the CPU and CUDA implementations.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace taskfarm::kernels {

// What a kernel is asked to compute. Views stay valid for the duration of the call.
struct TaskInput {
  int64_t size = 0;          // kernel-specific: elements, matrix dimension, microseconds, ...
  uint64_t seed = 0;         // generator key
  uint64_t index = 0;        // task index within its job entry: part of the generator counter
  uint64_t count = 1;        // tasks in the entry (mandelbrot splits its image into `count` bands)
  std::string_view payload;  // inline input; empty means "generate from (seed, index)"
  // When set, kernels that produce an artifact append it here (mandelbrot: its band, one grey
  // byte per pixel, row-major). Others ignore it.
  std::string* artifact = nullptr;
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

struct KernelDef {
  std::string_view name;
  std::string_view size_meaning;  // "elements", "matrix dimension N (N x N)", ...
  int64_t max_size;               // larger sizes are rejected before anything is allocated
  bool accepts_payload;
  CpuKernelFn cpu;
  // Size 0 means nothing to compute: a task needs size >= 1 unless its payload gives the size.
  bool size_required = true;
};

// Every kernel taskfarm knows, device-agnostic: the CUDA side (kernels/cuda/gpu.h) keys its
// implementations by the same names.
class KernelRegistry {
 public:
  // Returns: the process-wide registry (built once, immutable, safe to share between threads).
  static const KernelRegistry& instance();

  // Returns: the kernel's definition, or nullptr when unknown.
  const KernelDef* find(std::string_view name) const;
  const std::vector<KernelDef>& all() const { return defs_; }
  // Returns: "noop, sleep, saxpy, ..." for error messages and --help.
  std::string names() const;

  // Returns: why the task can never run (unknown kernel, negative or absurd size, bad payload
  // length), or nullopt when it is valid. Cheap: allocates nothing, touches no payload bytes.
  std::optional<std::string> validate(std::string_view kernel, const TaskInput& in) const;

  // Runs the CPU implementation. Returns: the output. Throws: KernelError.
  KernelOutput run_cpu(std::string_view kernel, const TaskInput& in) const;

 private:
  KernelRegistry();
  std::vector<KernelDef> defs_;
};

}  // namespace taskfarm::kernels
