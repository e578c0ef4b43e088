// CPU kernels and KernelRegistry against independent references written here from
// kernels/README.md: naive loops in double or long double, std::sort, direct counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu_kernels.h"
#include "kernels/inputs.h"
#include "kernels/kernel.h"

// Counts heap allocations, to check that validate() allocates nothing.
namespace {
std::atomic<uint64_t> g_allocations{0};
std::atomic<uint64_t> g_allocated_bytes{0};
}  // namespace

void* operator new(std::size_t bytes) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_allocated_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
// Not inlined: GCC 12 would otherwise flag free() on memory from (our) operator new.
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }

namespace {

using namespace taskfarm::kernels;

constexpr uint64_t kSeed = 0xC0FFEE12'3456789Bull;  // both 32-bit halves non-zero
constexpr uint64_t kIndex = 0x00000005'00000003ull;  // uses the index's upper half too

const KernelRegistry& registry() { return KernelRegistry::instance(); }

TaskInput task(int64_t size, uint64_t seed = kSeed, uint64_t index = kIndex) {
  TaskInput in;
  in.size = size;
  in.seed = seed;
  in.index = index;
  return in;
}

TaskInput payload_task(int64_t size, std::string_view payload) {
  TaskInput in = task(size);
  in.payload = payload;
  return in;
}

KernelOutput run(std::string_view kernel, const TaskInput& in) {
  return registry().run_cpu(kernel, in);
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// Rounds to float: the compiler cannot fuse a multiply and an add across it.
float rn(float v) {
  volatile float r = v;
  return r;
}

// Non-zero floats of both signs spread over 2^-10 .. 2^10 (all bits of the mantissa used).
std::vector<float> general_floats(std::mt19937_64& rng, size_t n) {
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-10, 10);
  std::vector<float> out(n);
  for (float& f : out) {
    f = std::ldexp(mantissa(rng), exponent(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
  }
  return out;
}

std::string error_of(std::string_view kernel, const TaskInput& in) {
  const auto why = registry().validate(kernel, in);
  return why ? *why : std::string("<valid>");
}

// ---- Philox ---------------------------------------------------------------------------------

TEST(Philox, MatchesRandom123KnownAnswers) {
  struct Case {
    Philox4x32 ctr;
    uint32_t k0, k1;
    Philox4x32 expected;
  };
  const Case cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u, {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Case& c : cases) {
    const Philox4x32 got = philox4x32_10(c.ctr, c.k0, c.k1);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(got.v[w], c.expected.v[w]) << "word " << w;
  }
}

TEST(Philox, BatchedFillMatchesRandomU32AtAnyOffset) {
  // Offsets around the vector path's 64-word groups and across the 2^32-block carry.
  const uint64_t firsts[] = {0, 1, 3, 4, 63, 64, 65, 1000, (uint64_t{1} << 34) - 130};
  const size_t lengths[] = {0, 1, 5, 64, 65, 200, 1031};
  std::vector<uint32_t> out;
  for (uint64_t first : firsts) {
    for (size_t n : lengths) {
      out.assign(n, 0);
      cpu::fill_random_u32(kSeed, kIndex, kStreamY, first, n, out.data());
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(out[i], random_u32(kSeed, kIndex, kStreamY, first + i))
            << "first " << first << " n " << n << " i " << i;
      }
    }
  }
}

// ---- registry and validation ----------------------------------------------------------------

TEST(Registry, ListsTheEightKernels) {
  EXPECT_EQ(registry().names(), "noop, sleep, saxpy, sgemm, reduce, mandelbrot, montecarlo_pi, sort");
  ASSERT_EQ(registry().all().size(), 8u);
  for (const KernelDef& def : registry().all()) {
    EXPECT_EQ(registry().find(def.name), &def);
    EXPECT_NE(def.cpu, nullptr) << def.name;
    EXPECT_FALSE(def.size_meaning.empty()) << def.name;
  }
  EXPECT_EQ(registry().find("fft"), nullptr);
  EXPECT_EQ(registry().find(""), nullptr);
  EXPECT_EQ(registry().find("SORT"), nullptr);
}

TEST(Registry, MaxSizesAndPayloadRulesFollowTheSpec) {
  struct Expected {
    const char* name;
    int64_t max_size;
    bool accepts_payload;
  };
  const Expected expected[] = {
      {"noop", int64_t{1} << 40, true},        {"sleep", 60'000'000, false},
      {"saxpy", int64_t{1} << 28, true},       {"sgemm", 16384, true},
      {"reduce", int64_t{1} << 28, true},      {"mandelbrot", 32768, false},
      {"montecarlo_pi", int64_t{1} << 34, false}, {"sort", int64_t{1} << 28, true},
  };
  for (const Expected& e : expected) {
    const KernelDef* def = registry().find(e.name);
    ASSERT_NE(def, nullptr) << e.name;
    EXPECT_EQ(def->max_size, e.max_size) << e.name;
    EXPECT_EQ(def->accepts_payload, e.accepts_payload) << e.name;
  }
}

TEST(Validate, AcceptsValidTasksWithoutAllocating) {
  TaskInput band = task(4096);
  band.index = 3;
  band.count = 4;
  const std::string saxpy_payload(4 + 8 * 3, '\0');
  const std::string sgemm_payload(8 * 5 * 5, '\0');
  const std::string keys(4 * 7, '\0');
  const std::pair<std::string_view, TaskInput> valid[] = {
      {"noop", task(int64_t{1} << 40)},
      {"noop", payload_task(0, "anything")},
      {"sleep", task(0)},
      {"sleep", task(60'000'000)},
      {"saxpy", task(int64_t{1} << 28)},
      {"saxpy", payload_task(0, saxpy_payload)},
      {"saxpy", payload_task(3, saxpy_payload)},
      {"sgemm", task(16384)},
      {"sgemm", payload_task(5, sgemm_payload)},
      {"reduce", payload_task(7, keys)},
      {"mandelbrot", band},
      {"montecarlo_pi", task(int64_t{1} << 34)},
      {"sort", payload_task(0, keys)},
  };
  (void)registry();  // built once on first use; that allocation is not validate()'s
  for (const auto& [kernel, in] : valid) {
    const uint64_t before = g_allocations.load();
    const auto why = registry().validate(kernel, in);
    const uint64_t allocations = g_allocations.load() - before;
    EXPECT_FALSE(why.has_value()) << kernel << ": " << *why;
    EXPECT_EQ(allocations, 0u) << kernel << " size " << in.size;
  }
}

TEST(Validate, RejectsUnknownKernelListingTheKnownOnes) {
  EXPECT_EQ(error_of("fft", task(1)),
            "unknown kernel 'fft' (known: noop, sleep, saxpy, sgemm, reduce, mandelbrot, "
            "montecarlo_pi, sort)");
  const std::string odd = error_of(std::string_view("a\nb\0c", 5), task(1));
  EXPECT_EQ(odd.find('\n'), std::string::npos) << odd;
  EXPECT_NE(odd.find("unknown kernel 'a\\x0ab\\x00c'"), std::string::npos) << odd;
  const std::string long_name = error_of(std::string(10000, 'x'), task(1));
  EXPECT_LT(long_name.size(), 300u);
}

TEST(Validate, RejectsNegativeSizeNamingKernelAndValue) {
  for (const KernelDef& def : registry().all()) {
    const std::string why = error_of(def.name, task(-5));
    EXPECT_NE(why.find(def.name), std::string::npos) << why;
    EXPECT_NE(why.find("-5"), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  }
}

TEST(Validate, RejectsSizeAboveMaximumNamingKernelAndValue) {
  for (const KernelDef& def : registry().all()) {
    const std::string too_big = std::to_string(def.max_size + 1);
    const std::string why = error_of(def.name, task(def.max_size + 1));
    EXPECT_NE(why.find(def.name), std::string::npos) << why;
    EXPECT_NE(why.find(too_big), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  }
}

TEST(Validate, RejectsAbsurdSizeFastWithoutAllocatingIt) {
  (void)registry();  // built once on first use; that allocation is not validate()'s
  const int64_t sizes[] = {int64_t{1} << 40, std::numeric_limits<int64_t>::max()};
  const auto start = std::chrono::steady_clock::now();
  for (const char* kernel : {"saxpy", "sgemm", "reduce", "sort", "mandelbrot", "sleep"}) {
    for (int64_t size : sizes) {
      const uint64_t bytes_before = g_allocated_bytes.load();
      EXPECT_TRUE(registry().validate(kernel, task(size)).has_value()) << kernel;
      EXPECT_LT(g_allocated_bytes.load() - bytes_before, 4096u) << kernel;  // the message only
      EXPECT_THROW(run(kernel, task(size)), KernelError) << kernel;
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
}

TEST(Validate, RejectsPayloadForKernelsThatTakeNone) {
  for (const char* kernel : {"sleep", "mandelbrot", "montecarlo_pi"}) {
    const std::string why = error_of(kernel, payload_task(1, "abcd"));
    EXPECT_NE(why.find(kernel), std::string::npos) << why;
    EXPECT_NE(why.find("4 bytes"), std::string::npos) << why;
  }
}

TEST(Validate, RejectsPayloadLengthNotMatchingTheFormat) {
  struct Case {
    const char* kernel;
    int64_t size;
    size_t bytes;
    const char* mentions;  // the offending value
  };
  const Case cases[] = {
      {"saxpy", 0, 3, "3 bytes"},        // shorter than the scalar a
      {"saxpy", 0, 4 + 8 * 2 + 1, "21 bytes"},
      {"saxpy", 3, 4 + 8 * 2, "size 3"},  // payload holds 2 elements
      {"reduce", 0, 7, "7 bytes"},
      {"reduce", 1, 8, "size 1"},
      {"sort", 0, 5, "5 bytes"},
      {"sort", 9, 4 * 8, "size 9"},
      {"sgemm", 3, 8 * 9 - 4, "68 bytes"},
      {"sgemm", 3, 8 * 16, "128 bytes"},
      {"sgemm", 0, 8 * 9, "72 bytes"},  // the payload needs size N
  };
  for (const Case& c : cases) {
    const std::string payload(c.bytes, '\x01');
    const std::string why = error_of(c.kernel, payload_task(c.size, payload));
    EXPECT_NE(why.find(c.kernel), std::string::npos) << why;
    EXPECT_NE(why.find(c.mentions), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  }
}

TEST(Validate, RejectsMandelbrotBandOutsideItsCount) {
  TaskInput in = task(64);
  in.index = 4;
  in.count = 4;
  EXPECT_NE(error_of("mandelbrot", in).find("index 4"), std::string::npos);
  in.index = 0;
  in.count = 0;
  EXPECT_NE(error_of("mandelbrot", in).find("count 0"), std::string::npos);
}

TEST(RunCpu, ThrowsPermanentKernelErrorWithTheValidateMessage) {
  const TaskInput in = task(-1);
  try {
    run("sort", in);
    FAIL() << "no exception";
  } catch (const KernelError& e) {
    EXPECT_FALSE(e.retryable());
    EXPECT_EQ(e.what(), error_of("sort", in));
  }
  EXPECT_THROW(run("nope", task(1)), KernelError);
}

// ---- noop and sleep -------------------------------------------------------------------------

TEST(Noop, HashesThePayloadLength) {
  const std::string payload(1000, '\xff');
  const KernelOutput with = run("noop", payload_task(12345, payload));
  EXPECT_EQ(with.checksum, element_hash(kIndex, 1000));
  EXPECT_EQ(with.bytes, 1000u);
  EXPECT_EQ(with.flops, 0u);
  EXPECT_EQ(with.value, 0.0);
  EXPECT_EQ(run("noop", task(7)).checksum, element_hash(kIndex, 0));
}

TEST(Sleep, SleepsTheRequestedMicroseconds) {
  constexpr int64_t kMicros = 20'000;
  const auto start = std::chrono::steady_clock::now();
  const KernelOutput out = run("sleep", task(kMicros));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, std::chrono::microseconds(kMicros));
  EXPECT_LT(elapsed, std::chrono::microseconds(kMicros + 15'000));  // scheduler slack on CI
  EXPECT_EQ(out.checksum, element_hash(kIndex, kMicros));
  EXPECT_EQ(out.value, static_cast<double>(kMicros));
  EXPECT_EQ(run("sleep", task(0)).checksum, element_hash(kIndex, 0));
}

// ---- saxpy ----------------------------------------------------------------------------------

TEST(Saxpy, MatchesDoubleReferenceOnGeneratedInputs) {
  // 2048 is the kernel's chunk; 64 words are one vector step of the generator.
  for (int64_t n : {0, 1, 3, 17, 63, 64, 65, 1000, 2047, 2048, 2049, 5003}) {
    const float a = saxpy_scalar(kSeed, kIndex);
    uint64_t checksum = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double x = dyadic16(random_u32(kSeed, kIndex, kStreamX, i));
      const double y = dyadic16(random_u32(kSeed, kIndex, kStreamY, i));
      const double out = static_cast<double>(a) * x + y;
      ASSERT_EQ(static_cast<double>(static_cast<float>(out)), out) << "inexact at " << i;
      checksum += element_hash(i, float_bits(static_cast<float>(out)));
      sum += out;
    }
    const KernelOutput got = run("saxpy", task(n));
    EXPECT_EQ(got.checksum, checksum) << "n " << n;
    EXPECT_EQ(got.value, sum) << "n " << n;  // exact sums: any order gives the same double
    EXPECT_EQ(got.bytes, 12u * n);
    EXPECT_EQ(got.flops, 2u * n);
  }
}

TEST(Saxpy, MatchesDoubleReferenceOnRandomPayload) {
  std::mt19937_64 rng(1);
  for (size_t n : {1, 3, 17, 1000, 4099}) {
    const std::vector<float> a = general_floats(rng, 1);
    const std::vector<float> x = general_floats(rng, n);
    const std::vector<float> y = general_floats(rng, n);
    const std::string payload = bytes_of(a) + bytes_of(x) + bytes_of(y);
    double reference = 0, magnitude = 0;
    uint64_t checksum = 0;
    for (size_t i = 0; i < n; ++i) {
      reference += static_cast<double>(a[0]) * x[i] + y[i];
      magnitude += std::abs(static_cast<double>(a[0]) * x[i]) + std::abs(y[i]);
      checksum += element_hash(i, float_bits(rn(rn(a[0] * x[i]) + y[i])));
    }
    // Each element rounds twice (2^-24 each); the double sum adds at most n * 2^-53.
    const double bound = magnitude * (std::ldexp(1.0, -23) + n * std::ldexp(1.0, -52));
    for (int64_t size : {int64_t{0}, static_cast<int64_t>(n)}) {
      const KernelOutput got = run("saxpy", payload_task(size, payload));
      EXPECT_NEAR(got.value, reference, bound) << "n " << n;
      EXPECT_EQ(got.checksum, checksum) << "n " << n;  // float a*x then +y, no fused multiply-add
      EXPECT_EQ(got.bytes, 12u * n);
    }
  }
}

// ---- reduce ---------------------------------------------------------------------------------

TEST(Reduce, MatchesLongDoubleAccumulateOnGeneratedInputs) {
  for (int64_t n : {0, 1, 3, 17, 1000, 2048, 2049, 100'003}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = dyadic24(random_u32(kSeed, kIndex, kStreamX, i));
    const long double reference = std::accumulate(x.begin(), x.end(), 0.0L);
    const KernelOutput got = run("reduce", task(n));
    EXPECT_EQ(got.value, static_cast<double>(reference)) << "n " << n;  // exact by design
    EXPECT_EQ(got.checksum, element_hash(0, double_bits(static_cast<double>(reference))));
    EXPECT_EQ(got.bytes, 4u * n);
    EXPECT_EQ(got.flops, static_cast<uint64_t>(n));
  }
}

TEST(Reduce, MatchesLongDoubleAccumulateOnRandomPayload) {
  std::mt19937_64 rng(2);
  for (size_t n : {1, 3, 17, 1000, 65'537}) {
    const std::vector<float> x = general_floats(rng, n);
    const long double reference = std::accumulate(x.begin(), x.end(), 0.0L);
    double magnitude = 0;
    for (float v : x) magnitude += std::abs(v);
    const KernelOutput got = run("reduce", payload_task(0, bytes_of(x)));
    // Double accumulation in any order: at most n * 2^-53 of the sum of magnitudes.
    EXPECT_NEAR(got.value, static_cast<double>(reference), magnitude * n * std::ldexp(1.0, -53))
        << "n " << n;
    EXPECT_EQ(got.checksum, element_hash(0, double_bits(got.value)));
    EXPECT_EQ(got.bytes, 4u * n);
  }
}

// ---- sgemm ----------------------------------------------------------------------------------

struct GemmReference {
  uint64_t checksum = 0;
  double sum = 0;
  bool exact = true;  // every C[i] representable as a float
};

// Naive triple loop in double over row-major n x n matrices.
GemmReference naive_gemm(const std::vector<float>& a, const std::vector<float>& b, size_t n) {
  GemmReference ref;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      double c = 0;
      for (size_t k = 0; k < n; ++k) c += static_cast<double>(a[i * n + k]) * b[k * n + j];
      ref.exact = ref.exact && static_cast<double>(static_cast<float>(c)) == c;
      ref.checksum += element_hash(i * n + j, float_bits(static_cast<float>(c)));
      ref.sum += c;
    }
  }
  return ref;
}

TEST(Sgemm, MatchesNaiveDoubleTripleLoopOnGeneratedInputs) {
  // Edges of the 6 x 16 register tile, the 96-row, 256-deep and 512-column blocks.
  for (size_t n : {0, 1, 2, 3, 5, 6, 7, 16, 17, 31, 97, 255, 257, 300, 513}) {
    std::vector<float> a(n * n), b(n * n);
    for (size_t i = 0; i < n * n; ++i) {
      a[i] = small_int(random_u32(kSeed, kIndex, kStreamX, i));
      b[i] = small_int(random_u32(kSeed, kIndex, kStreamY, i));
    }
    const GemmReference ref = naive_gemm(a, b, n);
    ASSERT_TRUE(ref.exact);
    const KernelOutput got = run("sgemm", task(static_cast<int64_t>(n)));
    EXPECT_EQ(got.checksum, ref.checksum) << "N " << n;
    EXPECT_EQ(got.value, ref.sum) << "N " << n;
    EXPECT_EQ(got.bytes, 12u * n * n);
    EXPECT_EQ(got.flops, 2u * n * n * n);
  }
}

TEST(Sgemm, IntegerPayloadIsExactAndRowMajorAThenB) {
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> value(-100, 100);
  for (size_t n : {1, 4, 19, 70}) {
    std::vector<float> a(n * n), b(n * n);
    for (float& v : a) v = static_cast<float>(value(rng));
    for (float& v : b) v = static_cast<float>(value(rng));
    const GemmReference ref = naive_gemm(a, b, n);
    ASSERT_TRUE(ref.exact);
    const KernelOutput got =
        run("sgemm", payload_task(static_cast<int64_t>(n), bytes_of(a) + bytes_of(b)));
    EXPECT_EQ(got.checksum, ref.checksum) << "N " << n;
    EXPECT_EQ(got.value, ref.sum) << "N " << n;
  }
}

TEST(Sgemm, RandomFloatPayloadWithinRoundingBound) {
  std::mt19937_64 rng(4);
  for (size_t n : {1, 7, 33, 70}) {
    const std::vector<float> a = general_floats(rng, n * n);
    const std::vector<float> b = general_floats(rng, n * n);
    const GemmReference ref = naive_gemm(a, b, n);
    double magnitude = 0;  // sum over i, j, k of |a_ik b_kj|
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < n; ++k) {
        for (size_t j = 0; j < n; ++j) magnitude += std::abs(double{a[i * n + k]} * b[k * n + j]);
      }
    }
    const KernelOutput got =
        run("sgemm", payload_task(static_cast<int64_t>(n), bytes_of(a) + bytes_of(b)));
    // A float dot product of length n errs by at most about n * 2^-24 of its magnitude.
    EXPECT_NEAR(got.value, ref.sum, magnitude * (n + 1) * std::ldexp(1.0, -24)) << "N " << n;
  }
}

// ---- mandelbrot -----------------------------------------------------------------------------

// The README's per-pixel loop, every operation rounded to float on its own.
uint32_t mandelbrot_iterations(uint64_t r, uint64_t c, uint64_t size) {
  const float cx = rn(-2.5f + rn(static_cast<float>(c) * rn(3.5f / static_cast<float>(size))));
  const float cy = rn(-1.25f + rn(static_cast<float>(r) * rn(2.5f / static_cast<float>(size))));
  float x = 0, y = 0;
  uint32_t iters = 0;
  while (iters < kMandelbrotMaxIter) {
    const float x2 = rn(x * x), y2 = rn(y * y);
    if (rn(x2 + y2) > 4.0f) break;
    y = rn(rn(rn(2.0f * x) * y) + cy);
    x = rn(rn(x2 - y2) + cx);
    ++iters;
  }
  return iters;
}

TEST(Mandelbrot, MatchesPerPixelLoop) {
  // At size 14 and 28 one pixel (c = -2) reaches x^2 + y^2 == 4 exactly and must go on.
  for (uint64_t size : {0, 1, 2, 3, 14, 17, 28, 64, 100, 255}) {
    uint64_t checksum = 0, total = 0;
    for (uint64_t r = 0; r < size; ++r) {
      for (uint64_t c = 0; c < size; ++c) {
        const uint32_t iters = mandelbrot_iterations(r, c, size);
        checksum += element_hash(r * size + c, iters);
        total += iters;
      }
    }
    TaskInput in = task(static_cast<int64_t>(size));
    in.index = 0;
    const KernelOutput got = run("mandelbrot", in);
    EXPECT_EQ(got.checksum, checksum) << "size " << size;
    EXPECT_EQ(got.value, static_cast<double>(total)) << "size " << size;
    EXPECT_EQ(got.flops, 8 * total);
    EXPECT_EQ(got.bytes, 4 * size * size);
  }
}

TEST(Mandelbrot, BandsComposeToTheWholeImage) {
  const std::pair<int64_t, uint64_t> splits[] = {{100, 4}, {37, 5}, {37, 50}, {255, 7}};
  for (const auto& [size, count] : splits) {
    TaskInput whole = task(size);
    whole.index = 0;
    const KernelOutput expected = run("mandelbrot", whole);
    uint64_t checksum = 0, bytes = 0;
    double value = 0;
    for (uint64_t index = 0; index < count; ++index) {
      TaskInput band = task(size);
      band.index = index;
      band.count = count;
      const KernelOutput got = run("mandelbrot", band);
      checksum += got.checksum;  // wrapping sum over global pixel indices
      value += got.value;
      bytes += got.bytes;
    }
    EXPECT_EQ(checksum, expected.checksum) << size << " in " << count << " bands";
    EXPECT_EQ(value, expected.value);
    EXPECT_EQ(bytes, expected.bytes);
  }
}

// ---- montecarlo_pi --------------------------------------------------------------------------

TEST(MonteCarloPi, MatchesDirectCount) {
  for (int64_t n : {0, 1, 3, 4, 5, 63, 64, 65, 1000, 2049, 100'000}) {
    uint64_t hits = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t x = random_u32(kSeed, kIndex, kStreamX, i) >> 1;
      const uint64_t y = random_u32(kSeed, kIndex, kStreamY, i) >> 1;
      if (x * x + y * y < (uint64_t{1} << 62)) ++hits;
    }
    const KernelOutput got = run("montecarlo_pi", task(n));
    EXPECT_EQ(got.checksum, element_hash(0, hits)) << "n " << n;
    EXPECT_EQ(got.value, n == 0 ? 0.0 : 4.0 * hits / n) << "n " << n;
    EXPECT_EQ(got.flops, 4u * n);
    EXPECT_EQ(got.bytes, 0u);
  }
}

TEST(MonteCarloPi, EstimatesPi) {
  constexpr int64_t kSamples = int64_t{1} << 22;  // standard error about 0.0008
  EXPECT_NEAR(run("montecarlo_pi", task(kSamples)).value, std::numbers::pi, 0.005);
}

// ---- sort -----------------------------------------------------------------------------------

void expect_sorted_like_std_sort(std::vector<uint32_t> keys, const KernelOutput& got) {
  std::sort(keys.begin(), keys.end());
  uint64_t checksum = 0;
  for (size_t i = 0; i < keys.size(); ++i) checksum += element_hash(i, keys[i]);
  EXPECT_EQ(got.checksum, checksum) << "n " << keys.size();
  EXPECT_EQ(got.value, keys.empty() ? 0.0 : static_cast<double>(keys[keys.size() / 2]));
  EXPECT_EQ(got.bytes, 8u * keys.size());
  EXPECT_EQ(got.flops, 0u);
}

TEST(Sort, GeneratedKeysMatchStdSort) {
  // 2^17 keys is where the kernel splits by top byte first.
  for (size_t n : {0, 1, 2, 3, 17, 63, 64, 65, 1000, 131'072, 131'073, 300'000}) {
    std::vector<uint32_t> keys(n);
    for (size_t i = 0; i < n; ++i) keys[i] = random_u32(kSeed, kIndex, kStreamX, i);
    expect_sorted_like_std_sort(keys, run("sort", task(static_cast<int64_t>(n))));
  }
}

TEST(Sort, RandomPayloadsMatchStdSort) {
  std::mt19937_64 rng(5);
  std::vector<std::vector<uint32_t>> cases;
  for (size_t n : {1, 5, 1000, 200'000}) {
    std::vector<uint32_t> keys(n);
    for (uint32_t& k : keys) k = static_cast<uint32_t>(rng());
    cases.push_back(keys);
    for (uint32_t& k : keys) k = (rng() % 3 == 0) ? 0xFFFFFFFFu : static_cast<uint32_t>(rng() % 5);
    cases.push_back(keys);  // duplicates and extremes
  }
  cases.emplace_back(1000, 42u);                     // all equal: every pass is skipped
  cases.emplace_back(200'000, 0x12345678u);          // all equal, large
  std::vector<uint32_t> descending(150'000);
  std::iota(descending.rbegin(), descending.rend(), 0u);  // all share the top byte
  cases.push_back(descending);
  for (const auto& keys : cases) {
    expect_sorted_like_std_sort(keys, run("sort", payload_task(0, bytes_of(keys))));
  }
}

// ---- properties shared by the kernels -------------------------------------------------------

TEST(Determinism, SameSeedAndIndexGiveTheSameChecksum) {
  const std::pair<const char*, int64_t> tasks[] = {{"saxpy", 10'000}, {"reduce", 10'000},
                                                   {"sgemm", 40},       {"montecarlo_pi", 1 << 20},
                                                   {"sort", 10'000},    {"noop", 0}};
  for (const auto& [kernel, size] : tasks) {
    const KernelOutput first = run(kernel, task(size));
    const KernelOutput second = run(kernel, task(size));
    EXPECT_EQ(first.checksum, second.checksum) << kernel;
    EXPECT_EQ(first.value, second.value) << kernel;
  }
}

TEST(Determinism, DifferentIndexOrSeedGiveDifferentChecksums) {
  const std::pair<const char*, int64_t> tasks[] = {
      {"saxpy", 10'000}, {"reduce", 10'000}, {"sgemm", 40}, {"montecarlo_pi", 1 << 20},
      {"sort", 10'000},  {"noop", 0},        {"sleep", 1}};
  for (const auto& [kernel, size] : tasks) {
    const uint64_t base = run(kernel, task(size)).checksum;
    EXPECT_NE(run(kernel, task(size, kSeed, kIndex + 1)).checksum, base) << kernel;
    EXPECT_NE(run(kernel, task(size, kSeed, kIndex ^ (uint64_t{1} << 40))).checksum, base)
        << kernel;
    if (std::string_view(kernel) != "noop" && std::string_view(kernel) != "sleep") {
      EXPECT_NE(run(kernel, task(size, kSeed + 1, kIndex)).checksum, base) << kernel;
      EXPECT_NE(run(kernel, task(size, kSeed ^ (uint64_t{1} << 63), kIndex)).checksum, base)
          << kernel;
    }
  }
}

TEST(Concurrency, TwoThreadsGetTheSameResultsAsOne) {
  const std::pair<const char*, int64_t> tasks[] = {
      {"sort", 300'000}, {"sgemm", 130}, {"saxpy", 50'000}, {"mandelbrot", 200}};
  std::vector<uint64_t> expected;
  for (const auto& [kernel, size] : tasks) {
    TaskInput in = task(size);
    in.index = 0;
    expected.push_back(run(kernel, in).checksum);
  }
  std::vector<uint64_t> got[2];
  auto work = [&](int t) {
    for (int rep = 0; rep < 3; ++rep) {
      for (const auto& [kernel, size] : tasks) {
        TaskInput in = task(size);
        in.index = 0;
        got[t].push_back(run(kernel, in).checksum);
      }
    }
  };
  std::thread other(work, 1);
  work(0);
  other.join();
  for (int t = 0; t < 2; ++t) {
    ASSERT_EQ(got[t].size(), 3 * expected.size());
    for (size_t i = 0; i < got[t].size(); ++i) {
      EXPECT_EQ(got[t][i], expected[i % expected.size()]) << "thread " << t << " task " << i;
    }
  }
}

TEST(ScratchBuffer, ReusesSmallBuffersAndFreesHugeOnes) {
  cpu::ScratchBuffer<uint32_t> buffer;
  uint32_t* small = buffer.get(1000);
  buffer.release();
  EXPECT_EQ(buffer.get(500), small);  // kept and reused
  const size_t huge = cpu::ScratchBuffer<uint32_t>::kKeepBytes / sizeof(uint32_t) + 1;
  ASSERT_NE(buffer.get(huge), nullptr);
  buffer.release();
  const uint64_t before = g_allocations.load();
  buffer.get(10);
  EXPECT_EQ(g_allocations.load() - before, 1u);  // the huge one was freed
}

}  // namespace

namespace taskfarm::kernels {
namespace {

TEST(Mandelbrot, BandArtifactsComposeIntoTheWholeImage) {
  const auto& reg = KernelRegistry::instance();
  std::string whole, bands;
  TaskInput in;
  in.size = 61;
  in.count = 1;
  in.keep_output = true;
  in.output = &whole;
  reg.run_cpu("mandelbrot", in);
  ASSERT_EQ(whole.size(), 61u * 61u);
  in.count = 5;
  in.output = &bands;
  for (uint64_t i = 0; i < 5; ++i) {
    in.index = i;
    reg.run_cpu("mandelbrot", in);
  }
  EXPECT_EQ(bands, whole);
  EXPECT_NE(whole.find('\0'), std::string::npos);                    // points inside the set
  EXPECT_NE(whole.find_first_not_of('\0'), std::string::npos);       // and outside
}

}  // namespace
}  // namespace taskfarm::kernels
