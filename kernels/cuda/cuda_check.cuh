// TASKFARM_CUDA_CHECK: turns a failed CUDA runtime call into a KernelError that keeps the
// call's text, file and line (nvbench's NVBENCH_CUDA_CALL).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/kernel.h"

namespace taskfarm::kernels::gpu {

// Throws: KernelError, always retryable: out of device memory may pass on another attempt or
// another worker, and a device fault says nothing about the task itself.
[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  throw KernelError(std::string("CUDA error ") + cudaGetErrorName(err) + " (" +
                        cudaGetErrorString(err) + ") in " + call + " at " + file + ":" +
                        std::to_string(line),
                    /*retryable=*/true);
}

}  // namespace taskfarm::kernels::gpu

#define TASKFARM_CUDA_CHECK(call)                                                                \
  do {                                                                                           \
    const cudaError_t taskfarm_cuda_err_ = (call);                                               \
    if (taskfarm_cuda_err_ != cudaSuccess)                                                       \
      ::taskfarm::kernels::gpu::throw_cuda_error(taskfarm_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)
