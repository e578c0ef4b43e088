// Host-visible API of the CUDA kernels. Safe to include from host-only code: no CUDA headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/kernel.h"

namespace taskfarm::kernels::gpu {

struct DeviceInfo {
  int index = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  uint64_t total_mem = 0;  // bytes
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
};

// Returns: whether this build has the CUDA kernels at all.
bool built_with_cuda();

// Returns: the usable CUDA devices; empty without CUDA support, a driver or a device.
// Never throws. `why_none`, when given, receives the reason there is none (driver message).
std::vector<DeviceInfo> list_devices(std::string* why_none = nullptr);

// Returns: whether `kernel` has a built-in CUDA implementation.
bool has_kernel(std::string_view kernel);

// One CUDA stream with its own pinned staging buffers and stream-ordered device allocations,
// reused across tasks. Drive each one from its own thread (not thread-safe); several runners on
// one device overlap copies and kernels of different tasks.
class StreamRunner {
 public:
  // Returns: a runner on `device`. Throws: std::runtime_error when the device cannot be used.
  static std::unique_ptr<StreamRunner> create(int device);
  virtual ~StreamRunner() = default;

  // Runs one task on the stream and blocks the calling thread until the stream completes.
  // Returns: the output (same checksum as the CPU kernel). Throws: KernelError.
  virtual KernelOutput run(std::string_view kernel, const TaskInput& in) = 0;

  // Runs a plugin kernel's CUDA implementation (def.abi.run_cuda) on this runner's stream, with
  // device memory from its pool and the payload already uploaded, then waits for the stream.
  // Returns: the output. Throws: KernelError (retryable for CUDA errors).
  virtual KernelOutput run_plugin(const KernelDef& def, const TaskInput& in) = 0;

  // Returns: device memory currently held by this runner's buffers and pool, in bytes.
  virtual uint64_t device_bytes_in_use() const = 0;
};

// Returns: the built-in kernels' CUDA implementations as a plugin table (names and run_cuda),
// for KernelCatalog::attach_builtin_cuda: the catalog, not this side, lists the kernels.
const tf_plugin& builtin_cuda_kernels();

}  // namespace taskfarm::kernels::gpu
