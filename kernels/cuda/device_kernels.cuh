// Launchers of the CUDA kernels (device_kernels.cu, sort.cu): host functions that enqueue work on
// a stream and never synchronize. Used by StreamRunner and by bench/gpu, which times exactly the
// kernels that tasks run.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace taskfarm::kernels::gpu {

// A grid-wide result: a wrapping uint64 sum (hashes, counts) and a double sum.
struct Sums {
  unsigned long long u;
  double d;
};

// Device scratch for the reduction every kernel ends with. Each block writes its partial Sums;
// the last block to finish adds them in block order (so a result is deterministic for a given
// grid), writes `result` and resets `blocks_done` to 0 for the next kernel on the stream.
struct ReduceScratch {
  Sums* partials = nullptr;             // kMaxBlocks entries
  unsigned int* blocks_done = nullptr;  // 0 between kernels
  Sums* result = nullptr;
};

inline constexpr int kThreadsPerBlock = 256;
inline constexpr int kMaxBlocks = 4096;

// Where and how wide to launch: grid-stride kernels use at most one full wave of the device.
struct Launch {
  cudaStream_t stream = nullptr;
  int sm_count = 1;
  ReduceScratch scratch;
};

// What `generate` writes: the inputs.h converters of Philox words, as 32-bit patterns.
enum class Gen : int { kDyadic16 = 0, kDyadic24 = 1, kSmallInt = 2, kRawU32 = 3 };

// out[i] = gen(random_u32(seed, index, stream_id, i)) for i < n; `out` 16-byte aligned.
void generate(const Launch& l, Gen gen, uint64_t seed, uint64_t index, uint32_t stream_id,
              void* out, int64_t n);

// y = a*x + y, each operation rounded separately (as the CPU's -ffp-contract=off), so the
// output is bit-identical to the CPU's for any input. With `checksum`, result = {Σ hash(i, y[i]),
// Σ y[i]}; without, result is untouched (bench: bare saxpy). x, y 16-byte aligned.
void saxpy(const Launch& l, float a, const float* x, float* y, int64_t n, bool checksum = true);

// result.d = Σ x[i] with one double accumulator per thread (exact for dyadic24 inputs).
void reduce_sum(const Launch& l, const float* x, int64_t n);

// result = {Σ hash(i, bits(v[i])), Σ v[i]} (sgemm's C). v 16-byte aligned.
void checksum_floats(const Launch& l, const float* v, int64_t n);

// result = {Σ hash(i, keys[i]), keys[n/2]} (0 for n = 0). keys 16-byte aligned.
void checksum_sorted(const Launch& l, const uint32_t* keys, int64_t n);

// Rows [row_begin, row_end) of a size x size image: result = {Σ hash(r*size+c, iters), Σ iters}.
void mandelbrot(const Launch& l, int64_t size, int64_t row_begin, int64_t row_end);

// result.u = number of hits among samples [0, n).
void montecarlo_pi(const Launch& l, uint64_t seed, uint64_t index, int64_t n);

// Spins on the device clock for `microseconds`, then result = {hash(index, size), size}.
void sleep_us(const Launch& l, int64_t microseconds, uint64_t index);

// result = {hash(index, payload_bytes), 0}: one tiny kernel, the cost of a round trip.
void noop(const Launch& l, uint64_t index, uint64_t payload_bytes);

// Device temporary storage that `sort_keys` needs for n keys.
size_t sort_temp_bytes(int n);
// CUB radix sort of n uint32 keys; `keys` and `alt` hold n keys each. Returns: the one of
// `keys`/`alt` that holds the sorted keys.
uint32_t* sort_keys(void* temp, size_t temp_bytes, uint32_t* keys, uint32_t* alt, int n,
                    cudaStream_t stream);

// Returns: cudaSuccess when the current device can run this build's kernels,
// cudaErrorNoKernelImageForDevice (or another error) when it cannot.
cudaError_t probe_kernel_image();

}  // namespace taskfarm::kernels::gpu
