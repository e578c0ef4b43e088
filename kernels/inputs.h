// Counter-based input generation and exact output hashing, shared bit for bit by the CPU
// (.cpp) and CUDA (.cu) kernels. A task's inputs are a pure function of (seed, index, stream,
// element), so any worker on any device computes the same task.
//
// Generated values are chosen so that every kernel's result is exact in float arithmetic,
// whatever the summation order or FMA contraction (see each generator's comment); that is what
// makes the sink's result_digest identical on CPU and GPU workers.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TF_HD __host__ __device__ __forceinline__
#else
#define TF_HD inline
#endif

namespace taskfarm::kernels {

// Generator streams: independent sequences for the different inputs of one task.
enum : uint32_t { kStreamX = 1, kStreamY = 2, kStreamScalar = 3 };

struct Philox4x32 {
  uint32_t v[4];
};

// Philox4x32-10 (Salmon et al., SC'11; the generator behind cuRAND's Philox and Random123).
TF_HD Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{kM0} * ctr.v[0];
    const uint64_t p1 = uint64_t{kM1} * ctr.v[2];
    ctr = Philox4x32{{static_cast<uint32_t>(p1 >> 32) ^ ctr.v[1] ^ k0, static_cast<uint32_t>(p1),
                      static_cast<uint32_t>(p0 >> 32) ^ ctr.v[3] ^ k1, static_cast<uint32_t>(p0)}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The four 32-bit words of block `block` (elements 4*block .. 4*block+3) of a task's stream.
TF_HD Philox4x32 random_block(uint64_t seed, uint64_t index, uint32_t stream, uint64_t block) {
  const Philox4x32 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                        static_cast<uint32_t>(index),
                        (static_cast<uint32_t>(index >> 32) & 0xFFFFu) | (stream << 16)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Word `i` of a task's stream.
TF_HD uint32_t random_u32(uint64_t seed, uint64_t index, uint32_t stream, uint64_t i) {
  return random_block(seed, index, stream, i >> 2).v[i & 3];
}

// A float in [-1, 1) with 16 significant bits: k * 2^-15, |k| <= 2^15 (saxpy inputs).
TF_HD float dyadic16(uint32_t u) {
  return static_cast<float>(static_cast<int32_t>(u >> 16) - 32768) * (1.0f / 32768.0f);
}

// A float in [-1, 1) with 24 significant bits: k * 2^-23 (reduce inputs). Any sum of up to
// 2^29 of them is exact in double, so a double accumulator gives one answer in any order.
TF_HD float dyadic24(uint32_t u) {
  return static_cast<float>(static_cast<int32_t>(u >> 8) - 8388608) * (1.0f / 8388608.0f);
}

// An integer-valued float in [-8, 7] (sgemm inputs): every partial sum of an N x N product is an
// integer below 2^24 for N < 2^18, hence exact in float whatever the blocking or FMA use.
TF_HD float small_int(uint32_t u) { return static_cast<float>(static_cast<int32_t>(u >> 28) - 8); }

// saxpy's scalar: m/4 with m in 1..16. With dyadic16 x and y, a*x+y is exact in float.
TF_HD float saxpy_scalar(uint64_t seed, uint64_t index) {
  return 0.25f * static_cast<float>(1 + (random_u32(seed, index, kStreamScalar, 0) & 15u));
}

// SplitMix64 finaliser: a well-mixed 64-bit hash.
TF_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Hash of one output element; a kernel's checksum is the wrapping sum of these over its
// elements, which is independent of the order in which a GPU reduction adds them.
TF_HD uint64_t element_hash(uint64_t i, uint64_t value_bits) {
  return mix64(i * 0x9E3779B97F4A7C15ull ^ mix64(value_bits + 0x632BE59BD9B4E019ull));
}

TF_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
TF_HD uint64_t double_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

// Mandelbrot geometry: an image of size x size pixels over [-2.5, 1] x [-1.25, 1.25], split into
// `count` bands of whole rows; band `index` holds rows [band_begin(index), band_begin(index+1)).
constexpr int kMandelbrotMaxIter = 256;
TF_HD uint64_t band_begin(uint64_t size, uint64_t count, uint64_t index) {
  return count == 0 ? 0 : size * index / count;
}

}  // namespace taskfarm::kernels
