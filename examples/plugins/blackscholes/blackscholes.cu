// The CUDA implementation of the `blackscholes` kernel: one thread per option on the worker's
// stream, in device memory from the worker's pool; the prices come back to the host for the
// task's output. Same formula and inputs as the CPU (blackscholes.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <new>
#include <vector>

#include "blackscholes.h"

namespace blackscholes {
namespace {

__global__ void price_options(const Option* options, uint64_t seed, uint64_t index, size_t n,
                              Price* prices) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    prices[i] = price(options != nullptr ? options[i] : generate(seed, index, i));
  }
}

// A CUDA failure is retryable: another attempt, maybe on another GPU, may succeed.
int cuda_failure(tf_result* result, const char* what, cudaError_t err) {
  std::snprintf(result->error, sizeof result->error, "%s: %s (%s)", what, cudaGetErrorString(err),
                cudaGetErrorName(err));
  return TF_RETRY;
}

}  // namespace

int run_cuda(const tf_task* task, tf_cuda* cuda, tf_output* output, tf_result* result) {
  if (check_options(*task, result) != TF_OK) return TF_FAILED;  // the host copy of the payload
  const size_t n = option_count(*task);
  // This plugin has its own CUDA runtime (linked statically), with its own current device and
  // error state: select the worker's device (its primary context, shared with the worker) and
  // clear an error a previous task may have left on this thread.
  cudaError_t err = cudaSetDevice(cuda->device);
  if (err != cudaSuccess) return cuda_failure(result, "cudaSetDevice", err);
  (void)cudaGetLastError();
  const auto stream = static_cast<cudaStream_t>(cuda->stream);

  auto* prices = static_cast<Price*>(cuda->alloc(cuda, n * sizeof(Price)));
  if (prices == nullptr) {
    std::snprintf(result->error, sizeof result->error,
                  "out of device memory for %zu options", n);
    return TF_RETRY;
  }
  const auto* options = static_cast<const Option*>(cuda->payload_device);  // NULL: generate
  if (task->payload_size != 0 && options == nullptr) {
    std::snprintf(result->error, sizeof result->error, "no device copy of the payload");
    return TF_RETRY;
  }
  const unsigned threads = 256;
  const size_t blocks = std::min<size_t>((n + threads - 1) / threads, 65536);
  price_options<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(options, task->seed,
                                                                        task->index, n, prices);
  // Launch errors are in this runtime's state, which the worker cannot see: check them here.
  if ((err = cudaGetLastError()) != cudaSuccess) return cuda_failure(result, "launch", err);

  std::vector<Price> host;
  try {
    host.resize(n);
  } catch (const std::bad_alloc&) {
    std::snprintf(result->error, sizeof result->error, "out of host memory for the prices");
    return TF_RETRY;
  }
  // The output is written during the call, so wait for the prices here (the worker synchronises
  // the stream again after we return, and frees `prices` in stream order).
  err = cudaMemcpyAsync(host.data(), prices, n * sizeof(Price), cudaMemcpyDeviceToHost, stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) return cuda_failure(result, "copying the prices back", err);
  return finish(*task, host.data(), n, output, result);
}

}  // namespace blackscholes
