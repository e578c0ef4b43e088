// Black-Scholes prices of European options: the inputs, the closed form and the task's result,
// shared by the CPU (blackscholes.cpp) and CUDA (blackscholes.cu) implementations so that both
// compute the same formula on the same inputs. Double precision throughout (see README.md).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "taskfarm/plugin.h"

#ifdef __CUDACC__
#define BS_HOST_DEVICE __host__ __device__
#else
#define BS_HOST_DEVICE
#endif

namespace blackscholes {

// One option of a payload: five little-endian IEEE doubles, 40 bytes.
struct Option {
  double spot;    // S: price of the underlying
  double strike;  // K
  double years;   // T: time to expiry
  double rate;    // r: risk-free rate, continuously compounded
  double vol;     // sigma: annualised volatility
};
static_assert(sizeof(Option) == 40, "option records are 5 doubles");

// What a task writes per option, in order: 16 bytes.
struct Price {
  double call;
  double put;
};
static_assert(sizeof(Price) == 16, "prices are 2 doubles");

// 2^22 options: 64 MiB of prices, the worker's default output limit (--max-output-mb 64).
constexpr int64_t kMaxOptions = int64_t{1} << 22;
// The arithmetic of price() counted by hand, each sqrt, log, exp and erfc as one operation.
constexpr uint64_t kFlopsPerOption = 34;

BS_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform double in [0, 1) for field `field` of option `i` of the task (seed, index): integer
// arithmetic and one exact conversion, so the same bits on any device.
BS_HOST_DEVICE inline double uniform(uint64_t seed, uint64_t index, uint64_t i, unsigned field) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ index) ^ (i * 5 + field));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// Option `i` of a task without a payload. fma() is correctly rounded on the CPU and the GPU
// alike, so the inputs are bit-identical on both (a*b+c could be fused on one and not the other).
BS_HOST_DEVICE inline Option generate(uint64_t seed, uint64_t index, uint64_t i) {
  Option o;
  o.spot = fma(190.0, uniform(seed, index, i, 0), 10.0);              // 10 .. 200
  o.strike = fma(o.spot, uniform(seed, index, i, 1), 0.5 * o.spot);   // 0.5 S .. 1.5 S
  o.years = fma(2.95, uniform(seed, index, i, 2), 0.05);              // 0.05 .. 3 years
  o.rate = 0.1 * uniform(seed, index, i, 3);                          // 0 .. 10 %
  o.vol = fma(0.75, uniform(seed, index, i, 4), 0.05);                // 5 .. 80 %
  return o;
}

// The standard normal distribution function.
BS_HOST_DEVICE inline double normal_cdf(double x) {
  return 0.5 * erfc(-x * 0.70710678118654752440);
}

// The Black-Scholes closed form for a European call and put (no dividends).
BS_HOST_DEVICE inline Price price(const Option& o) {
  const double vol_sqrt_t = o.vol * sqrt(o.years);
  const double d1 =
      (log(o.spot / o.strike) + (o.rate + 0.5 * o.vol * o.vol) * o.years) / vol_sqrt_t;
  const double d2 = d1 - vol_sqrt_t;
  const double discounted_strike = o.strike * exp(-o.rate * o.years);
  Price p;
  // Far out of the money the two terms cancel: a price is never below zero.
  p.call = fmax(0.0, o.spot * normal_cdf(d1) - discounted_strike * normal_cdf(d2));
  p.put = fmax(0.0, discounted_strike * normal_cdf(-d2) - o.spot * normal_cdf(-d1));
  return p;
}

// Host side, shared by both implementations (blackscholes.cpp).

// Returns: the number of options of a task (payload records, or `size` generated ones).
size_t option_count(const tf_task& task);
// Checks the payload's option records. Returns: TF_OK, or TF_FAILED with the first bad record
// named in result->error.
int check_options(const tf_task& task, tf_result* result);
// Writes the prices to the task's output and fills in the result. Returns: TF_OK, or TF_FAILED
// when the output is refused (larger than the worker's --max-output-mb).
int finish(const tf_task& task, const Price* prices, size_t n, tf_output* output,
           tf_result* result);

#if defined(TASKFARM_PLUGIN_CUDA) && TASKFARM_PLUGIN_CUDA
// The CUDA implementation (blackscholes.cu).
int run_cuda(const tf_task* task, tf_cuda* cuda, tf_output* output, tf_result* result);
#endif

}  // namespace blackscholes
