// CUDA kernels of taskfarm (see kernels/README.md for what each computes). Every kernel is
// grid-stride over at most one wave of blocks, and ends with block_finish: per-thread sums,
// a block reduction, and a last-block reduction into ReduceScratch::result. Checksums are
// wrapping uint64 sums of element_hash, so the order in which threads add them does not matter.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_kernels.cuh"
#include "kernels/inputs.h"

namespace taskfarm::kernels::gpu {
namespace {

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ void warp_reduce(unsigned long long& u, double& d) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    u += __shfl_down_sync(0xFFFFFFFFu, u, offset);
    d += __shfl_down_sync(0xFFFFFFFFu, d, offset);
  }
}

// Leaves the block's sums in thread 0. All threads of the block must call it.
__device__ __forceinline__ void block_reduce(unsigned long long& u, double& d,
                                             unsigned long long* shared_u, double* shared_d) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_reduce(u, d);
  __syncthreads();  // shared_u/shared_d may still be read by a previous call
  if (lane == 0) {
    shared_u[warp] = u;
    shared_d[warp] = d;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = static_cast<int>(blockDim.x >> 5);
    u = lane < warps ? shared_u[lane] : 0ull;
    d = lane < warps ? shared_d[lane] : 0.0;
    warp_reduce(u, d);
  }
}

// Block partial, then the last block of the grid reduces the partials in block order (the
// threadFenceReduction pattern): one launch per task, and a deterministic double sum.
__device__ void block_finish(unsigned long long u, double d, const ReduceScratch& s) {
  __shared__ unsigned long long shared_u[32];
  __shared__ double shared_d[32];
  __shared__ bool is_last;
  block_reduce(u, d, shared_u, shared_d);
  if (threadIdx.x == 0) {
    s.partials[blockIdx.x] = Sums{u, d};
    __threadfence();  // the partial is visible before the counter says so
    is_last = atomicAdd(s.blocks_done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  u = 0;
  d = 0;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
    u += __ldcg(&s.partials[b].u);  // L2, not a stale L1 line
    d += __ldcg(&s.partials[b].d);
  }
  block_reduce(u, d, shared_u, shared_d);
  if (threadIdx.x == 0) {
    *s.result = Sums{u, d};
    *s.blocks_done = 0;
  }
}

__device__ __forceinline__ uint32_t convert(Gen gen, uint32_t u) {
  switch (gen) {
    case Gen::kDyadic16:
      return float_bits(dyadic16(u));
    case Gen::kDyadic24:
      return float_bits(dyadic24(u));
    case Gen::kSmallInt:
      return float_bits(small_int(u));
    default:
      return u;
  }
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    generate_kernel(Gen gen, uint64_t seed, uint64_t index, uint32_t stream_id,
                    uint32_t* __restrict__ out, int64_t n) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = global_thread(); b < blocks; b += grid_threads()) {
    const Philox4x32 r = random_block(seed, index, stream_id, static_cast<uint64_t>(b));
    const uint4 v{convert(gen, r.v[0]), convert(gen, r.v[1]), convert(gen, r.v[2]),
                  convert(gen, r.v[3])};
    if (4 * b + 3 < n) {
      reinterpret_cast<uint4*>(out)[b] = v;
    } else {
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
      for (int64_t j = 0; 4 * b + j < n; ++j) out[4 * b + j] = w[j];
    }
  }
}

template <bool kChecksum>
__global__ void __launch_bounds__(kThreadsPerBlock)
    saxpy_kernel(float a, const float* __restrict__ x, float* __restrict__ y, int64_t n,
                 ReduceScratch s) {
  unsigned long long h = 0;
  double sum = 0;
  const int64_t vectors = n / 4;
  const auto* x4 = reinterpret_cast<const float4*>(x);
  auto* y4 = reinterpret_cast<float4*>(y);
  for (int64_t v = global_thread(); v < vectors; v += grid_threads()) {
    const float4 xv = x4[v];
    float4 yv = y4[v];
    yv.x = __fadd_rn(__fmul_rn(a, xv.x), yv.x);
    yv.y = __fadd_rn(__fmul_rn(a, xv.y), yv.y);
    yv.z = __fadd_rn(__fmul_rn(a, xv.z), yv.z);
    yv.w = __fadd_rn(__fmul_rn(a, xv.w), yv.w);
    y4[v] = yv;
    if constexpr (kChecksum) {
      const uint64_t i = 4 * static_cast<uint64_t>(v);
      h += element_hash(i, float_bits(yv.x)) + element_hash(i + 1, float_bits(yv.y)) +
           element_hash(i + 2, float_bits(yv.z)) + element_hash(i + 3, float_bits(yv.w));
      sum += static_cast<double>(yv.x) + static_cast<double>(yv.y) + static_cast<double>(yv.z) +
             static_cast<double>(yv.w);
    }
  }
  for (int64_t i = 4 * vectors + global_thread(); i < n; i += grid_threads()) {
    const float out = __fadd_rn(__fmul_rn(a, x[i]), y[i]);
    y[i] = out;
    h += element_hash(static_cast<uint64_t>(i), float_bits(out));
    sum += out;
  }
  if constexpr (kChecksum) block_finish(h, sum, s);
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    reduce_kernel(const float* __restrict__ x, int64_t n, ReduceScratch s) {
  // Two float4 loads in flight per thread per iteration; each thread adds in double.
  double sum = 0;
  const int64_t vectors = n / 4;
  const auto* x4 = reinterpret_cast<const float4*>(x);
  const int64_t stride = grid_threads();
  int64_t v = global_thread();
  for (; v + stride < vectors; v += 2 * stride) {
    const float4 p = x4[v], q = x4[v + stride];
    sum += static_cast<double>(p.x) + static_cast<double>(p.y) + static_cast<double>(p.z) +
           static_cast<double>(p.w) + static_cast<double>(q.x) + static_cast<double>(q.y) +
           static_cast<double>(q.z) + static_cast<double>(q.w);
  }
  if (v < vectors) {
    const float4 p = x4[v];
    sum += static_cast<double>(p.x) + static_cast<double>(p.y) + static_cast<double>(p.z) +
           static_cast<double>(p.w);
  }
  for (int64_t i = 4 * vectors + global_thread(); i < n; i += stride) sum += x[i];
  block_finish(0, sum, s);
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    checksum_floats_kernel(const float* __restrict__ v, int64_t n, ReduceScratch s) {
  unsigned long long h = 0;
  double sum = 0;
  const int64_t vectors = n / 4;
  const auto* v4 = reinterpret_cast<const float4*>(v);
  for (int64_t k = global_thread(); k < vectors; k += grid_threads()) {
    const float4 p = v4[k];
    const uint64_t i = 4 * static_cast<uint64_t>(k);
    h += element_hash(i, float_bits(p.x)) + element_hash(i + 1, float_bits(p.y)) +
         element_hash(i + 2, float_bits(p.z)) + element_hash(i + 3, float_bits(p.w));
    sum += static_cast<double>(p.x) + static_cast<double>(p.y) + static_cast<double>(p.z) +
           static_cast<double>(p.w);
  }
  for (int64_t i = 4 * vectors + global_thread(); i < n; i += grid_threads()) {
    h += element_hash(static_cast<uint64_t>(i), float_bits(v[i]));
    sum += v[i];
  }
  block_finish(h, sum, s);
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    checksum_sorted_kernel(const uint32_t* __restrict__ keys, int64_t n, ReduceScratch s) {
  unsigned long long h = 0;
  double median = 0;  // only the thread that reads keys[n/2] contributes it
  const int64_t vectors = n / 4, mid = n / 2;
  const auto* k4 = reinterpret_cast<const uint4*>(keys);
  for (int64_t k = global_thread(); k < vectors; k += grid_threads()) {
    const uint4 p = k4[k];
    const uint64_t i = 4 * static_cast<uint64_t>(k);
    h += element_hash(i, p.x) + element_hash(i + 1, p.y) + element_hash(i + 2, p.z) +
         element_hash(i + 3, p.w);
  }
  for (int64_t i = 4 * vectors + global_thread(); i < n; i += grid_threads())
    h += element_hash(static_cast<uint64_t>(i), keys[i]);
  if (n > 0 && global_thread() == 0) median = keys[mid];
  block_finish(h, median, s);
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    mandelbrot_kernel(int64_t size, int64_t row_begin, int64_t pixels, ReduceScratch s) {
  // Every operation rounded separately, in the CPU's order (kernels/README.md).
  const float step_x = __fdiv_rn(3.5f, static_cast<float>(size));
  const float step_y = __fdiv_rn(2.5f, static_cast<float>(size));
  unsigned long long h = 0;
  double total = 0;
  for (int64_t p = global_thread(); p < pixels; p += grid_threads()) {
    const int64_t r = row_begin + p / size, c = p % size;
    const float cx = __fadd_rn(-2.5f, __fmul_rn(static_cast<float>(c), step_x));
    const float cy = __fadd_rn(-1.25f, __fmul_rn(static_cast<float>(r), step_y));
    float x = 0, y = 0;
    int iters = 0;
    for (; iters < kMandelbrotMaxIter; ++iters) {
      const float x2 = __fmul_rn(x, x), y2 = __fmul_rn(y, y);
      if (__fadd_rn(x2, y2) > 4.0f) break;
      y = __fadd_rn(__fmul_rn(__fmul_rn(2.0f, x), y), cy);
      x = __fadd_rn(__fsub_rn(x2, y2), cx);
    }
    h += element_hash(static_cast<uint64_t>(r * size + c), static_cast<uint64_t>(iters));
    total += iters;
  }
  block_finish(h, total, s);
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    montecarlo_kernel(uint64_t seed, uint64_t index, int64_t n, ReduceScratch s) {
  unsigned long long hits = 0;
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = global_thread(); b < blocks; b += grid_threads()) {
    const Philox4x32 xs = random_block(seed, index, kStreamX, static_cast<uint64_t>(b));
    const Philox4x32 ys = random_block(seed, index, kStreamY, static_cast<uint64_t>(b));
    const int64_t valid = min(int64_t{4}, n - 4 * b);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t x = xs.v[j] >> 1, y = ys.v[j] >> 1;
      hits += (j < valid && x * x + y * y < (uint64_t{1} << 62)) ? 1 : 0;
    }
  }
  block_finish(hits, 0, s);
}

__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void sleep_kernel(uint64_t ns, uint64_t index, int64_t size, Sums* result) {
  const uint64_t start = global_timer_ns();
  for (uint64_t elapsed = 0; elapsed < ns; elapsed = global_timer_ns() - start) {
    const uint64_t left = ns - elapsed;
    __nanosleep(left > 20000 ? 10000u : static_cast<unsigned>(left / 2 + 1));
  }
  *result = Sums{element_hash(index, static_cast<uint64_t>(size)), static_cast<double>(size)};
}

__global__ void noop_kernel(uint64_t index, uint64_t payload_bytes, Sums* result) {
  *result = Sums{element_hash(index, payload_bytes), 0.0};
}

// Blocks for a grid-stride kernel over `work` items: at most one full wave of the device.
template <auto kKernel>
int grid_for(const Launch& l, int64_t work) {
  static const int per_sm = [] {  // per kernel; the same for every device of one architecture
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kKernel, kThreadsPerBlock, 0) !=
            cudaSuccess ||
        blocks < 1) {
      (void)cudaGetLastError();
      blocks = 1;
    }
    return blocks;
  }();
  const int64_t wave = std::min<int64_t>(kMaxBlocks, int64_t{per_sm} * l.sm_count);
  const int64_t needed = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(std::max<int64_t>(1, std::min(wave, needed)));
}

void check_aligned(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    throw KernelError("internal error: device buffer not 16-byte aligned", true);
}

}  // namespace

void generate(const Launch& l, Gen gen, uint64_t seed, uint64_t index, uint32_t stream_id,
              void* out, int64_t n) {
  if (n == 0) return;
  check_aligned(out);
  const int grid = grid_for<generate_kernel>(l, (n + 3) / 4);
  generate_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(gen, seed, index, stream_id,
                                                           static_cast<uint32_t*>(out), n);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void saxpy(const Launch& l, float a, const float* x, float* y, int64_t n, bool checksum) {
  check_aligned(x);
  check_aligned(y);
  if (checksum) {
    const int grid = grid_for<saxpy_kernel<true>>(l, n / 4);
    saxpy_kernel<true><<<grid, kThreadsPerBlock, 0, l.stream>>>(a, x, y, n, l.scratch);
  } else {
    const int grid = grid_for<saxpy_kernel<false>>(l, n / 4);
    saxpy_kernel<false><<<grid, kThreadsPerBlock, 0, l.stream>>>(a, x, y, n, l.scratch);
  }
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void reduce_sum(const Launch& l, const float* x, int64_t n) {
  check_aligned(x);
  const int grid = grid_for<reduce_kernel>(l, n / 8);  // two float4 per thread per step
  reduce_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(x, n, l.scratch);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void checksum_floats(const Launch& l, const float* v, int64_t n) {
  check_aligned(v);
  const int grid = grid_for<checksum_floats_kernel>(l, n / 4);
  checksum_floats_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(v, n, l.scratch);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void checksum_sorted(const Launch& l, const uint32_t* keys, int64_t n) {
  check_aligned(keys);
  const int grid = grid_for<checksum_sorted_kernel>(l, n / 4);
  checksum_sorted_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(keys, n, l.scratch);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void mandelbrot(const Launch& l, int64_t size, int64_t row_begin, int64_t row_end) {
  const int64_t pixels = (row_end - row_begin) * size;
  const int grid = grid_for<mandelbrot_kernel>(l, pixels);
  mandelbrot_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(size, row_begin, pixels, l.scratch);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void montecarlo_pi(const Launch& l, uint64_t seed, uint64_t index, int64_t n) {
  const int grid = grid_for<montecarlo_kernel>(l, (n + 3) / 4);
  montecarlo_kernel<<<grid, kThreadsPerBlock, 0, l.stream>>>(seed, index, n, l.scratch);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void sleep_us(const Launch& l, int64_t microseconds, uint64_t index) {
  sleep_kernel<<<1, 1, 0, l.stream>>>(static_cast<uint64_t>(microseconds) * 1000, index,
                                      microseconds, l.scratch.result);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

void noop(const Launch& l, uint64_t index, uint64_t payload_bytes) {
  noop_kernel<<<1, 1, 0, l.stream>>>(index, payload_bytes, l.scratch.result);
  TASKFARM_CUDA_CHECK(cudaGetLastError());
}

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, noop_kernel);
}

}  // namespace taskfarm::kernels::gpu
