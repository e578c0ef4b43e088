// CPU kernels (kernels/README.md is the spec): one task runs single-threaded on the calling
// thread; the worker runs several tasks in parallel. Inputs come from kernels/inputs.h, so the
// checksums match the CUDA kernels bit for bit.
#include <algorithm>
#include <array>
#include <cmath>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "kernels/cpu_kernels.h"
#include "kernels/inputs.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TASKFARM_X86 1
// An AVX2 build of the function next to the baseline one, picked at load time.
#define TASKFARM_CLONE_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define TASKFARM_X86 0
#define TASKFARM_CLONE_AVX2
#endif

namespace taskfarm::kernels::cpu {
namespace {

// Elements per generated chunk: two chunks of words stay in L1 next to the work on them.
constexpr size_t kChunk = 2048;

// ---- Philox, several blocks at a time ------------------------------------------------------

// Words first .. first+n-1 of the stream, one Philox call per block of four words.
void fill_scalar(uint64_t seed, uint64_t index, uint32_t stream, uint64_t first, size_t n,
                 uint32_t* out) {
  size_t done = 0;
  while (done < n) {
    const uint64_t word = first + done;
    const Philox4x32 r = random_block(seed, index, stream, word >> 2);
    for (uint64_t w = word & 3; w < 4 && done < n; ++w) out[done++] = r.v[w];
  }
}

#if TASKFARM_X86
constexpr size_t kAvx2Group = 8;   // blocks per 256-bit vector of counters
constexpr size_t kAvx2Groups = 2;  // independent vectors in flight, to hide multiply latency
constexpr size_t kAvx2Blocks = kAvx2Group * kAvx2Groups;

// hi:lo = a * m for 8 lanes of 32 bits (m's constant in each 64-bit half): the even lanes
// directly, the odd ones shuffled down, then merged.
__attribute__((target("avx2"), always_inline)) inline void mul_hilo(__m256i a, __m256i m,
                                                                    __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_shuffle_epi32(a, 0xF5), m);
  lo = _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xA0), 0xAA);
  hi = _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xF5), odd, 0xAA);
}

// Philox4x32-10 on 16 consecutive blocks per step; first_block % 16 == 0, nblocks % 16 == 0.
// The same rounds as inputs.h's philox4x32_10; tests check it against random_u32.
__attribute__((target("avx2"))) void philox_blocks_avx2(uint64_t seed, uint64_t index,
                                                         uint32_t stream, uint64_t first_block,
                                                         size_t nblocks, uint32_t* out) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u);
  const __m256i m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  const __m256i ctr2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(index)));
  const __m256i ctr3 = _mm256_set1_epi32(static_cast<int>(
      (static_cast<uint32_t>(index >> 32) & 0xFFFFu) | (stream << 16)));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t base = 0; base < nblocks; base += kAvx2Blocks) {
    __m256i v0[kAvx2Groups], v1[kAvx2Groups], v2[kAvx2Groups], v3[kAvx2Groups];
    for (size_t g = 0; g < kAvx2Groups; ++g) {
      const uint64_t block = first_block + base + g * kAvx2Group;  // no carry: block % 8 == 0
      v0[g] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block))),
                               lane);
      v1[g] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
      v2[g] = ctr2;
      v3[g] = ctr3;
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
      const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
      for (size_t g = 0; g < kAvx2Groups; ++g) {
        __m256i hi0, lo0, hi1, lo1;
        mul_hilo(v0[g], m0, hi0, lo0);
        mul_hilo(v2[g], m1, hi1, lo1);
        v0[g] = _mm256_xor_si256(_mm256_xor_si256(hi1, v1[g]), key0);
        v2[g] = _mm256_xor_si256(_mm256_xor_si256(hi0, v3[g]), key1);
        v1[g] = lo1;
        v3[g] = lo0;
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Transpose word-major vectors into the stream's block-major order.
    for (size_t g = 0; g < kAvx2Groups; ++g) {
      const __m256i t0 = _mm256_unpacklo_epi32(v0[g], v1[g]);
      const __m256i t1 = _mm256_unpackhi_epi32(v0[g], v1[g]);
      const __m256i t2 = _mm256_unpacklo_epi32(v2[g], v3[g]);
      const __m256i t3 = _mm256_unpackhi_epi32(v2[g], v3[g]);
      const __m256i b04 = _mm256_unpacklo_epi64(t0, t2), b15 = _mm256_unpackhi_epi64(t0, t2);
      const __m256i b26 = _mm256_unpacklo_epi64(t1, t3), b37 = _mm256_unpackhi_epi64(t1, t3);
      auto* dst = reinterpret_cast<__m256i*>(out + 4 * (base + g * kAvx2Group));
      _mm256_storeu_si256(dst + 0, _mm256_permute2x128_si256(b04, b15, 0x20));
      _mm256_storeu_si256(dst + 1, _mm256_permute2x128_si256(b26, b37, 0x20));
      _mm256_storeu_si256(dst + 2, _mm256_permute2x128_si256(b04, b15, 0x31));
      _mm256_storeu_si256(dst + 3, _mm256_permute2x128_si256(b26, b37, 0x31));
    }
  }
}

bool cpu_has_avx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
}
#endif

// ---- radix sort -----------------------------------------------------------------------------

// LSD radix sort of keys[0..n) by their low `bytes` bytes (the others are equal), ping-ponging
// through tmp. Returns: the buffer that holds the sorted keys (keys or tmp).
uint32_t* lsd_radix_sort(uint32_t* keys, uint32_t* tmp, size_t n, int bytes) {
  if (n < 64) {
    std::sort(keys, keys + n);
    return keys;
  }
  std::array<std::array<size_t, 256>, 4> count{};
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = keys[i];
    for (int b = 0; b < 4; ++b) ++count[b][(k >> (8 * b)) & 0xFF];
  }
  uint32_t* src = keys;
  uint32_t* dst = tmp;
  for (int pass = 0; pass < bytes; ++pass) {
    const int shift = 8 * pass;
    auto& offsets = count[pass];
    if (offsets[(src[0] >> shift) & 0xFF] == n) continue;  // every key has this digit
    size_t sum = 0;
    for (size_t& c : offsets) sum += std::exchange(c, sum);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t k = src[i];
      dst[offsets[(k >> shift) & 0xFF]++] = k;
    }
    std::swap(src, dst);
  }
  return src;
}

// Radix sort of keys[0..n), using tmp[0..n). Returns: the buffer that holds the sorted keys.
// Large inputs are first split by their top byte, so the three passes over each bucket run in
// cache instead of scattering the whole array four times.
uint32_t* radix_sort(uint32_t* keys, uint32_t* tmp, size_t n) {
  constexpr size_t kInCacheKeys = size_t{1} << 17;
  if (n <= kInCacheKeys) return lsd_radix_sort(keys, tmp, n, 4);
  std::array<size_t, 256> offsets{};
  for (size_t i = 0; i < n; ++i) ++offsets[keys[i] >> 24];
  std::array<size_t, 257> bucket{};
  for (size_t b = 0; b < 256; ++b) bucket[b + 1] = bucket[b] + offsets[b];
  std::copy(bucket.begin(), bucket.end() - 1, offsets.begin());
  for (size_t i = 0; i < n; ++i) tmp[offsets[keys[i] >> 24]++] = keys[i];
  for (size_t b = 0; b < 256; ++b) {
    const size_t begin = bucket[b], len = bucket[b + 1] - begin;
    const uint32_t* sorted = lsd_radix_sort(tmp + begin, keys + begin, len, 3);
    if (sorted != keys + begin) std::copy(sorted, sorted + len, keys + begin);
  }
  return keys;
}

// ---- mandelbrot -----------------------------------------------------------------------------

using F32x4 = float __attribute__((vector_size(16)));
using I32x4 = int32_t __attribute__((vector_size(16)));
using F32x8 = float __attribute__((vector_size(32)));
using I32x8 = int32_t __attribute__((vector_size(32)));

// Pixels per call of mandelbrot_run: a stack buffer of counts.
constexpr size_t kMandelbrotRun = 256;

// Iteration counts of pixels c_begin .. c_begin+n-1 of one row, in lanes of vector F. Each lane
// performs exactly the README's scalar sequence of rounded operations and stops updating once it
// escapes, so the counts are bit-exact with a scalar loop.
template <typename F, typename I>
[[gnu::always_inline]] inline void mandelbrot_lanes(float cy, float step_x, uint64_t c_begin,
                                                    size_t n, uint32_t* iters) {
  constexpr size_t kLanes = sizeof(F) / sizeof(float);
  constexpr size_t kVectors = 4;  // independent chains hide the latency of z = z^2 + c
  for (size_t p = 0; p < n; p += kVectors * kLanes) {
    F cx[kVectors], x[kVectors], y[kVectors];
    I count[kVectors], active[kVectors];
    for (size_t v = 0; v < kVectors; ++v) {
      for (size_t l = 0; l < kLanes; ++l) {
        const auto c = static_cast<float>(c_begin + p + v * kLanes + l);
        cx[v][l] = -2.5f + c * step_x;
      }
      x[v] = F{};
      y[v] = F{};
      count[v] = I{};
      active[v] = I{} - 1;
    }
    for (int k = 0; k < kMandelbrotMaxIter; ++k) {
      I any = I{};
      for (size_t v = 0; v < kVectors; ++v) {
        const F x2 = x[v] * x[v];
        const F y2 = y[v] * y[v];
        active[v] &= ~(x2 + y2 > 4.0f);
        const F yn = 2.0f * x[v] * y[v] + cy;
        const F xn = x2 - y2 + cx[v];
        x[v] = active[v] ? xn : x[v];
        y[v] = active[v] ? yn : y[v];
        count[v] -= active[v];  // active lanes are -1
        any |= active[v];
      }
      uint64_t words[sizeof(I) / 8];
      std::memcpy(words, &any, sizeof words);
      uint64_t bits = 0;
      for (uint64_t w : words) bits |= w;
      if (bits == 0) break;
    }
    for (size_t v = 0; v < kVectors; ++v) {
      for (size_t l = 0; l < kLanes; ++l) {
        const size_t i = p + v * kLanes + l;
        if (i < n) iters[i] = static_cast<uint32_t>(count[v][l]);
      }
    }
  }
}

using MandelbrotRun = void (*)(float cy, float step_x, uint64_t c_begin, size_t n,
                               uint32_t* iters);

// 16-byte vectors: SSE2 on any x86-64, NEON on aarch64.
void mandelbrot_run_baseline(float cy, float step_x, uint64_t c_begin, size_t n,
                             uint32_t* iters) {
  mandelbrot_lanes<F32x4, I32x4>(cy, step_x, c_begin, n, iters);
}

#if TASKFARM_X86
__attribute__((target("avx2"))) void mandelbrot_run_avx2(float cy, float step_x,
                                                          uint64_t c_begin, size_t n,
                                                          uint32_t* iters) {
  mandelbrot_lanes<F32x8, I32x8>(cy, step_x, c_begin, n, iters);
}
#endif

MandelbrotRun pick_mandelbrot_run() {
#if TASKFARM_X86
  if (cpu_has_avx2()) return mandelbrot_run_avx2;
#endif
  return mandelbrot_run_baseline;
}

// ---- montecarlo -----------------------------------------------------------------------------

TASKFARM_CLONE_AVX2 uint64_t count_hits(const uint32_t* xs, const uint32_t* ys, size_t n) {
  uint64_t hits = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t x = xs[i] >> 1, y = ys[i] >> 1;
    hits += (x * x + y * y < (uint64_t{1} << 62)) ? 1 : 0;
  }
  return hits;
}

double sum_floats(const float* x, size_t n) {
  // Independent accumulators break the add dependency chain; the exact generated sums give the
  // same answer in any order.
  constexpr size_t kAcc = 8;
  std::array<double, kAcc> acc{};
  size_t i = 0;
  for (; i + kAcc <= n; i += kAcc) {
    for (size_t a = 0; a < kAcc; ++a) acc[a] += static_cast<double>(x[i + a]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

void fill_random_u32(uint64_t seed, uint64_t index, uint32_t stream, uint64_t first, size_t n,
                     uint32_t* out) {
#if TASKFARM_X86
  if (cpu_has_avx2()) {
    constexpr uint64_t kWords = 4 * kAvx2Blocks;
    const uint64_t aligned = (first + kWords - 1) / kWords * kWords;
    const size_t head = static_cast<size_t>(std::min<uint64_t>(aligned - first, n));
    fill_scalar(seed, index, stream, first, head, out);
    const size_t body = (n - head) / kWords * kWords;
    philox_blocks_avx2(seed, index, stream, aligned / 4, body / 4, out + head);
    fill_scalar(seed, index, stream, first + head + body, n - head - body, out + head + body);
    return;
  }
#endif
  fill_scalar(seed, index, stream, first, n, out);
}

KernelOutput noop(const TaskInput& in) {
  return {element_hash(in.index, in.payload.size()), 0.0, in.payload.size(), 0};
}

KernelOutput sleep(const TaskInput& in) {
  std::this_thread::sleep_for(std::chrono::microseconds(in.size));
  const auto us = static_cast<uint64_t>(in.size);
  return {element_hash(in.index, us), static_cast<double>(us), 0, 0};
}

KernelOutput saxpy(const TaskInput& in) {
  const bool generated = in.payload.empty();
  const uint64_t n = generated ? static_cast<uint64_t>(in.size) : (in.payload.size() - 4) / 8;
  float a;
  if (generated) {
    a = saxpy_scalar(in.seed, in.index);
  } else {
    std::memcpy(&a, in.payload.data(), sizeof a);
  }
  const char* x_bytes = generated ? nullptr : in.payload.data() + 4;  // no arithmetic on null
  const char* y_bytes = generated ? nullptr : x_bytes + 4 * n;

  uint64_t checksum = 0;
  double sum = 0;
  alignas(32) std::array<float, kChunk> x, y;
  alignas(32) std::array<uint32_t, kChunk> ux, uy;
  for (uint64_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, n - begin));
    if (generated) {
      fill_random_u32(in.seed, in.index, kStreamX, begin, len, ux.data());
      fill_random_u32(in.seed, in.index, kStreamY, begin, len, uy.data());
      for (size_t i = 0; i < len; ++i) {
        x[i] = dyadic16(ux[i]);
        y[i] = dyadic16(uy[i]);
      }
    } else {
      std::memcpy(x.data(), x_bytes + 4 * begin, 4 * len);
      std::memcpy(y.data(), y_bytes + 4 * begin, 4 * len);
    }
    for (size_t i = 0; i < len; ++i) {
      const float out = a * x[i] + y[i];  // two roundings: -ffp-contract=off
      checksum += element_hash(begin + i, float_bits(out));
      sum += static_cast<double>(out);
    }
  }
  return {checksum, sum, 12 * n, 2 * n};
}

KernelOutput reduce(const TaskInput& in) {
  const bool generated = in.payload.empty();
  const uint64_t n = generated ? static_cast<uint64_t>(in.size) : in.payload.size() / 4;
  double sum = 0;
  alignas(32) std::array<float, kChunk> x;
  alignas(32) std::array<uint32_t, kChunk> u;
  for (uint64_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, n - begin));
    if (generated) {
      fill_random_u32(in.seed, in.index, kStreamX, begin, len, u.data());
      for (size_t i = 0; i < len; ++i) x[i] = dyadic24(u[i]);
    } else {
      std::memcpy(x.data(), in.payload.data() + 4 * begin, 4 * len);
    }
    sum += sum_floats(x.data(), len);
  }
  return {element_hash(0, double_bits(sum)), sum, 4 * n, n};
}

// Grey level of a pixel: black inside the set, brighter the faster it escapes.
uint8_t grey(uint32_t iters) {
  if (iters >= static_cast<uint32_t>(kMandelbrotMaxIter)) return 0;
  // Logarithmic, so that the many pixels escaping in a few iterations stay distinguishable.
  const float shade = std::log2(1.0f + static_cast<float>(iters)) /
                      std::log2(1.0f + static_cast<float>(kMandelbrotMaxIter));
  return static_cast<uint8_t>(255.0f * (1.0f - shade));
}

KernelOutput mandelbrot(const TaskInput& in) {
  const auto size = static_cast<uint64_t>(in.size);
  const uint64_t row_begin = band_begin(size, in.count, in.index);
  const uint64_t row_end = band_begin(size, in.count, in.index + 1);
  const float step_x = 3.5f / static_cast<float>(size);
  const float step_y = 2.5f / static_cast<float>(size);
  static const MandelbrotRun run = pick_mandelbrot_run();
  uint64_t checksum = 0, total = 0;
  std::array<uint32_t, kMandelbrotRun> iters;
  std::string* band = in.keep_output ? in.output : nullptr;  // the image's rows, when asked
  if (band) band->reserve(band->size() + (row_end - row_begin) * size);
  for (uint64_t r = row_begin; r < row_end; ++r) {
    const float cy = -1.25f + static_cast<float>(r) * step_y;
    for (uint64_t c = 0; c < size; c += kMandelbrotRun) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(kMandelbrotRun, size - c));
      run(cy, step_x, c, len, iters.data());
      for (size_t i = 0; i < len; ++i) {
        checksum += element_hash(r * size + c + i, iters[i]);
        total += iters[i];
      }
      if (band) {
        for (size_t i = 0; i < len; ++i) band->push_back(static_cast<char>(grey(iters[i])));
      }
    }
  }
  const uint64_t pixels = (row_end - row_begin) * size;
  return {checksum, static_cast<double>(total), 4 * pixels, 8 * total};
}

KernelOutput montecarlo_pi(const TaskInput& in) {
  const auto n = static_cast<uint64_t>(in.size);
  alignas(32) std::array<uint32_t, kChunk> xs, ys;
  uint64_t hits = 0;
  for (uint64_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, n - begin));
    fill_random_u32(in.seed, in.index, kStreamX, begin, len, xs.data());
    fill_random_u32(in.seed, in.index, kStreamY, begin, len, ys.data());
    hits += count_hits(xs.data(), ys.data(), len);
  }
  const double pi = n == 0 ? 0.0 : 4.0 * static_cast<double>(hits) / static_cast<double>(n);
  return {element_hash(0, hits), pi, 0, 4 * n};
}

KernelOutput sort(const TaskInput& in) {
  thread_local ScratchBuffer<uint32_t> keys_buffer, tmp_buffer;
  ScratchLease<uint32_t> keys_lease(keys_buffer), tmp_lease(tmp_buffer);

  const bool generated = in.payload.empty();
  const size_t n = generated ? static_cast<size_t>(in.size) : in.payload.size() / 4;
  uint32_t* keys = keys_lease.get(n);
  if (generated) {
    fill_random_u32(in.seed, in.index, kStreamX, 0, n, keys);
  } else if (n > 0) {
    std::memcpy(keys, in.payload.data(), 4 * n);
  }
  const uint32_t* sorted = radix_sort(keys, tmp_lease.get(n), n);

  uint64_t checksum = 0;
  for (size_t i = 0; i < n; ++i) checksum += element_hash(i, sorted[i]);
  const double median = n == 0 ? 0.0 : static_cast<double>(sorted[n / 2]);
  return {checksum, median, 8 * uint64_t{n}, 0};
}

}  // namespace taskfarm::kernels::cpu
