// sgemm on the CPU: C = A * B for row-major N x N floats, cache-blocked in the Goto/BLIS style.
// B is packed into KC x NC panels (L2/L3), A into MC x KC blocks (L2), and a 6 x 16 register
// tile of C is updated per step. The micro-kernel uses AVX2 + FMA where the CPU has them and a
// portable loop otherwise. With the generated integer-valued inputs every partial sum is an
// exact integer, so any blocking and FMA use give the same C bit for bit.
#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/cpu_kernels.h"
#include "kernels/inputs.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TASKFARM_X86 1
#else
#define TASKFARM_X86 0
#endif

namespace taskfarm::kernels::cpu {
namespace {

constexpr size_t kMR = 6;    // rows of the register tile
constexpr size_t kNR = 16;   // columns of the register tile: two 8-float vectors
constexpr size_t kKC = 256;  // depth of a packed panel: a 16 KiB B micro-panel stays in L1
constexpr size_t kMC = 96;   // rows of a packed A block (96 KiB, in L2); a multiple of kMR
constexpr size_t kNC = 512;  // columns of a packed B panel (512 KiB, in L2/L3); a multiple of kNR

// C[0..mr) x [0..nr) += a_panel * b_panel over depth kc. a_panel holds kMR floats per k,
// b_panel kNR floats per k, both zero-padded past mr / nr.
using MicroKernel = void (*)(size_t kc, const float* a_panel, const float* b_panel, float* c,
                             size_t ldc, size_t mr, size_t nr);

void add_tile(const float (&tile)[kMR][kNR], float* c, size_t ldc, size_t mr, size_t nr) {
  for (size_t i = 0; i < mr; ++i) {
    for (size_t j = 0; j < nr; ++j) c[i * ldc + j] += tile[i][j];
  }
}

// 16-byte vectors (SSE2 on any x86-64, NEON on aarch64), one 8-column half of the tile at a
// time so the 12 accumulators stay in registers.
void micro_kernel_generic(size_t kc, const float* a_panel, const float* b_panel, float* c,
                          size_t ldc, size_t mr, size_t nr) {
  using F32x4 = float __attribute__((vector_size(16)));
  float tile[kMR][kNR];
  for (size_t half = 0; half < kNR; half += 8) {
    F32x4 acc[kMR][2] = {};
    for (size_t k = 0; k < kc; ++k) {
      F32x4 b0, b1;
      std::memcpy(&b0, b_panel + k * kNR + half, sizeof b0);
      std::memcpy(&b1, b_panel + k * kNR + half + 4, sizeof b1);
#pragma GCC unroll 6
      for (size_t i = 0; i < kMR; ++i) {
        const float a = a_panel[k * kMR + i];
        acc[i][0] += a * b0;
        acc[i][1] += a * b1;
      }
    }
#pragma GCC unroll 6
    for (size_t i = 0; i < kMR; ++i) std::memcpy(&tile[i][half], acc[i], sizeof acc[i]);
  }
  add_tile(tile, c, ldc, mr, nr);
}

#if TASKFARM_X86
__attribute__((target("avx2,fma"))) void micro_kernel_avx2(size_t kc, const float* a_panel,
                                                           const float* b_panel, float* c,
                                                           size_t ldc, size_t mr, size_t nr) {
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (size_t i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (size_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b_panel + k * kNR);
    const __m256 b1 = _mm256_loadu_ps(b_panel + k * kNR + 8);
#pragma GCC unroll 6
    for (size_t i = 0; i < kMR; ++i) {
      const __m256 a = _mm256_broadcast_ss(a_panel + k * kMR + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  if (mr == kMR && nr == kNR) {
#pragma GCC unroll 6
    for (size_t i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
      _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), acc[i][0]));
      _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), acc[i][1]));
    }
    return;
  }
  float tile[kMR][kNR];
#pragma GCC unroll 6  // constant indices keep acc in registers in the loop above
  for (size_t i = 0; i < kMR; ++i) {
    _mm256_storeu_ps(tile[i], acc[i][0]);
    _mm256_storeu_ps(tile[i] + 8, acc[i][1]);
  }
  add_tile(tile, c, ldc, mr, nr);
}
#endif

MicroKernel pick_micro_kernel() {
#if TASKFARM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_kernel_avx2;
#endif
  return micro_kernel_generic;
}

// B[pc.., jc..] (kc x nc) into kNR-column strips, each kc x kNR, zero-padded to whole strips.
void pack_b(const float* b, size_t n, size_t pc, size_t kc, size_t jc, size_t nc, float* out) {
  for (size_t js = 0; js < nc; js += kNR) {
    const size_t width = std::min(kNR, nc - js);
    for (size_t k = 0; k < kc; ++k) {
      const float* src = b + (pc + k) * n + jc + js;
      float* dst = out + js * kc + k * kNR;
      std::memcpy(dst, src, width * sizeof(float));
      std::fill(dst + width, dst + kNR, 0.0f);
    }
  }
}

// A[ic.., pc..] (mc x kc) into kMR-row strips, each kc x kMR (k-major), zero-padded.
void pack_a(const float* a, size_t n, size_t ic, size_t mc, size_t pc, size_t kc, float* out) {
  for (size_t is = 0; is < mc; is += kMR) {
    const size_t height = std::min(kMR, mc - is);
    float* strip = out + is * kc;
    for (size_t i = 0; i < kMR; ++i) {
      if (i < height) {
        const float* src = a + (ic + is + i) * n + pc;
        for (size_t k = 0; k < kc; ++k) strip[k * kMR + i] = src[k];
      } else {
        for (size_t k = 0; k < kc; ++k) strip[k * kMR + i] = 0.0f;
      }
    }
  }
}

// c = a * b, all n x n row-major; c need not be initialised.
void gemm(const float* a, const float* b, float* c, size_t n) {
  static const MicroKernel micro = pick_micro_kernel();
  thread_local ScratchBuffer<float> a_pack_buffer, b_pack_buffer;
  float* a_pack = a_pack_buffer.get(kMC * kKC);
  float* b_pack = b_pack_buffer.get(kKC * kNC);

  std::fill(c, c + n * n, 0.0f);
  for (size_t jc = 0; jc < n; jc += kNC) {
    const size_t nc = std::min(kNC, n - jc);
    for (size_t pc = 0; pc < n; pc += kKC) {
      const size_t kc = std::min(kKC, n - pc);
      pack_b(b, n, pc, kc, jc, nc, b_pack);
      for (size_t ic = 0; ic < n; ic += kMC) {
        const size_t mc = std::min(kMC, n - ic);
        pack_a(a, n, ic, mc, pc, kc, a_pack);
        for (size_t js = 0; js < nc; js += kNR) {
          for (size_t is = 0; is < mc; is += kMR) {
            micro(kc, a_pack + is * kc, b_pack + js * kc, c + (ic + is) * n + jc + js, n,
                  std::min(kMR, mc - is), std::min(kNR, nc - js));
          }
        }
      }
    }
  }
}

// Writes the generated matrix of `stream`: small_int of each word, row-major.
void generate_matrix(const TaskInput& in, uint32_t stream, size_t elements, float* out) {
  constexpr size_t kChunk = 4096;
  std::array<uint32_t, kChunk> words;
  for (size_t begin = 0; begin < elements; begin += kChunk) {
    const size_t len = std::min(kChunk, elements - begin);
    fill_random_u32(in.seed, in.index, stream, begin, len, words.data());
    for (size_t i = 0; i < len; ++i) out[begin + i] = small_int(words[i]);
  }
}

}  // namespace

KernelOutput sgemm(const TaskInput& in) {
  thread_local ScratchBuffer<float> a_buffer, b_buffer, c_buffer;
  ScratchLease<float> a_lease(a_buffer), b_lease(b_buffer), c_lease(c_buffer);

  const auto n = static_cast<size_t>(in.size);
  const size_t elements = n * n;
  float* a = a_lease.get(elements);
  float* b = b_lease.get(elements);
  float* c = c_lease.get(elements);
  if (in.payload.empty()) {
    generate_matrix(in, kStreamX, elements, a);
    generate_matrix(in, kStreamY, elements, b);
  } else if (elements > 0) {  // copied: payload bytes need not be aligned for float
    std::memcpy(a, in.payload.data(), elements * sizeof(float));
    std::memcpy(b, in.payload.data() + elements * sizeof(float), elements * sizeof(float));
  }
  gemm(a, b, c, n);

  uint64_t checksum = 0;
  double sum = 0;
  for (size_t i = 0; i < elements; ++i) {
    checksum += element_hash(i, float_bits(c[i]));
    sum += static_cast<double>(c[i]);
  }
  const uint64_t nn = uint64_t{n} * n;
  return {checksum, sum, 12 * nn, 2 * nn * n};
}

}  // namespace taskfarm::kernels::cpu
