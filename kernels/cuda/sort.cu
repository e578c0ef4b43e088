// The sort kernel's radix sort: cub::DeviceRadixSort on uint32 keys, in a file of its own
// because CUB's sort kernels dominate nvcc time (a parallel build compiles it alongside the rest).
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_kernels.cuh"

namespace taskfarm::kernels::gpu {

size_t sort_temp_bytes(int n) {
  size_t bytes = 0;
  cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
  TASKFARM_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, keys, n));
  return bytes;
}

uint32_t* sort_keys(void* temp, size_t temp_bytes, uint32_t* keys, uint32_t* alt, int n,
                    cudaStream_t stream) {
  // The DoubleBuffer form needs temporary storage of O(grid), not a third copy of the keys.
  cub::DoubleBuffer<uint32_t> buffers(keys, alt);
  TASKFARM_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(
      temp, temp_bytes, buffers, n, 0, static_cast<int>(sizeof(uint32_t) * 8), stream));
  return buffers.Current();
}

}  // namespace taskfarm::kernels::gpu
