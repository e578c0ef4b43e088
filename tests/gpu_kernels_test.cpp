// CUDA kernels against their CPU twins (KernelRegistry::run_cpu). Tests that need a device skip
// with "no CUDA device: <reason>" when there is none (or the build has no CUDA).
//
// Generated inputs are exact by construction: checksum, value, bytes and flops must be EQUAL.
// Inline float payloads: the GPU adds in another order (and cuBLAS blocks and fuses differently),
// so `value` agrees within these bounds (u = 2^-53 for double sums, 2^-24 for float products):
//   saxpy  checksum EQUAL (both round a*x and +y separately); value = Σ y_out:
//          |gpu - cpu| <= 2 n u Σ|y_out|                      (two orders of a double sum)
//   reduce value = Σ x: |gpu - cpu| <= 2 n u Σ|x|
//   sgemm  value = Σ C: |gpu - cpu| <= (2 γ_N + 4 N² u) S, S = Σ_ij Σ_k |A_ik B_kj|,
//          γ_N = N 2^-24 / (1 - N 2^-24)                      (each C_ij within γ_N of exact)
//   sort   integers: checksum and value EQUAL
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/gpu.h"
#include "kernels/kernel.h"

namespace {

namespace gpu = taskfarm::kernels::gpu;
using taskfarm::kernels::KernelError;
using taskfarm::kernels::KernelOutput;
using taskfarm::kernels::KernelRegistry;
using taskfarm::kernels::TaskInput;

constexpr uint64_t kSeed = 0x5EED'1234'ABCDull;

// Returns: why there is no usable device, or "" when there is one (asked once per process).
const std::string& no_device_reason() {
  static const std::string reason = [] {
    std::string why;
    if (!gpu::list_devices(&why).empty()) return std::string();
    return why.empty() ? std::string("unknown reason") : why;
  }();
  return reason;
}

int first_device() {
  const auto devices = gpu::list_devices();
  return devices.empty() ? 0 : devices.front().index;
}

// Says once per run why the device tests skip, so each skip needs no more than a short note.
class GpuEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!no_device_reason().empty()) {
      std::printf("[  NOTE    ] no CUDA device (%s): the tests that need one skip\n",
                  no_device_reason().c_str());
    }
  }
};
[[maybe_unused]] ::testing::Environment* const kGpuEnvironment =
    ::testing::AddGlobalTestEnvironment(new GpuEnvironment);

#define SKIP_WITHOUT_CUDA_DEVICE() \
  if (!no_device_reason().empty()) GTEST_SKIP() << "no CUDA device"

// Names for size-parameterised tests ("n4097"), so test names say what they run.
std::string size_name(const ::testing::TestParamInfo<int64_t>& info) {
  return "n" + std::to_string(info.param);
}

KernelOutput cpu(std::string_view kernel, const TaskInput& in) {
  return KernelRegistry::instance().run_cpu(kernel, in);
}

void expect_same(const KernelOutput& gpu_out, const KernelOutput& cpu_out) {
  EXPECT_EQ(gpu_out.checksum, cpu_out.checksum);
  EXPECT_DOUBLE_EQ(gpu_out.value, cpu_out.value);
  EXPECT_EQ(gpu_out.bytes, cpu_out.bytes);
  EXPECT_EQ(gpu_out.flops, cpu_out.flops);
}

template <typename T>
void append(std::string& bytes, const std::vector<T>& values) {
  const size_t at = bytes.size();
  bytes.resize(at + values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(bytes.data() + at, values.data(), values.size() * sizeof(T));
}

std::vector<float> random_floats(size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_CUDA_DEVICE();
    runner_ = gpu::StreamRunner::create(first_device());
  }
  std::unique_ptr<gpu::StreamRunner> runner_;
};

// ---- Generated inputs: bit-identical to the CPU ------------------------------------------

struct Case {
  const char* kernel;
  int64_t size;
  uint64_t count = 1;
  uint64_t index = 3;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(c.kernel) + "_" + std::to_string(c.size) +
         (c.count > 1 ? "_band" + std::to_string(c.index) + "of" + std::to_string(c.count)
                      : "_index" + std::to_string(c.index));
}

std::vector<Case> generated_cases() {
  std::vector<Case> cases;
  for (const char* kernel : {"saxpy", "reduce", "sort", "montecarlo_pi"})
    for (int64_t n :
         {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{1000}, int64_t{4097}, (int64_t{1} << 20) + 3})
      cases.push_back({kernel, n, 1, 3});
  // The index's high word reaches the generator's counter too.
  cases.push_back({"saxpy", 4097, 1, (uint64_t{1} << 32) + 5});
  cases.push_back({"sort", 4097, 1, (uint64_t{1} << 40) + 1});
  for (int64_t n : {1, 17, 129, 512}) cases.push_back({"sgemm", n, 1, 3});
  for (int64_t n : {1, 3, 1000}) cases.push_back({"mandelbrot", n, 1, 0});
  for (uint64_t band : {0, 3, 6}) cases.push_back({"mandelbrot", 1001, 7, band});
  cases.push_back({"mandelbrot", 4097, 64, 31});
  for (int64_t n : {0, 1, 4097}) cases.push_back({"noop", n, 1, 9});
  for (int64_t us : {0, 1, 1000}) cases.push_back({"sleep", us, 1, 2});
  return cases;
}

class GeneratedInputs : public GpuTest, public ::testing::WithParamInterface<Case> {};

TEST_P(GeneratedInputs, MatchCpuExactly) {
  const Case& c = GetParam();
  TaskInput in;
  in.size = c.size;
  in.seed = kSeed;
  in.index = c.index;
  in.count = c.count;
  expect_same(runner_->run(c.kernel, in), cpu(c.kernel, in));
}

INSTANTIATE_TEST_SUITE_P(AllKernels, GeneratedInputs, ::testing::ValuesIn(generated_cases()),
                         case_name);

// ---- Inline payloads ----------------------------------------------------------------------

constexpr double kDoubleU = 0x1p-53;

class InlinePayload : public GpuTest, public ::testing::WithParamInterface<int64_t> {};

TEST_P(InlinePayload, SaxpyMatchesCpu) {
  const int64_t n = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(n) + 1);
  const float a = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
  const auto x = random_floats(static_cast<size_t>(n), rng);
  const auto y = random_floats(static_cast<size_t>(n), rng);
  std::string payload(sizeof a, '\0');
  std::memcpy(payload.data(), &a, sizeof a);
  append(payload, x);
  append(payload, y);
  double sum_abs = 0;
  for (int64_t i = 0; i < n; ++i) sum_abs += std::fabs(a * x[i] + y[i]);
  for (int64_t size : {int64_t{0}, n}) {  // size 0: n from the payload's length
    TaskInput in;
    in.size = size;
    in.payload = payload;
    const KernelOutput g = runner_->run("saxpy", in), c = cpu("saxpy", in);
    EXPECT_EQ(g.checksum, c.checksum) << "size field " << size;
    EXPECT_NEAR(g.value, c.value, 2.0 * static_cast<double>(n) * kDoubleU * sum_abs);
    EXPECT_EQ(g.bytes, c.bytes);
    EXPECT_EQ(g.flops, c.flops);
  }
}

TEST_P(InlinePayload, ReduceMatchesCpu) {
  const int64_t n = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(n) + 2);
  const auto x = random_floats(static_cast<size_t>(n), rng);
  std::string payload;
  append(payload, x);
  double sum_abs = 0;
  for (float f : x) sum_abs += std::fabs(f);
  for (int64_t size : {int64_t{0}, n}) {
    TaskInput in;
    in.size = size;
    in.payload = payload;
    const KernelOutput g = runner_->run("reduce", in), c = cpu("reduce", in);
    EXPECT_NEAR(g.value, c.value, 2.0 * static_cast<double>(n) * kDoubleU * sum_abs);
    EXPECT_EQ(g.bytes, c.bytes);
    EXPECT_EQ(g.flops, c.flops);
  }
}

TEST_P(InlinePayload, SortMatchesCpuExactly) {
  const int64_t n = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(n) + 3);
  std::vector<uint32_t> keys(static_cast<size_t>(n));
  for (uint32_t& k : keys) k = static_cast<uint32_t>(rng() % 5000);  // duplicates too
  std::string payload;
  append(payload, keys);
  for (int64_t size : {int64_t{0}, n}) {
    TaskInput in;
    in.size = size;
    in.payload = payload;
    expect_same(runner_->run("sort", in), cpu("sort", in));
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, InlinePayload,
                         ::testing::Values(int64_t{1}, int64_t{3}, int64_t{1000}, int64_t{4097},
                                           (int64_t{1} << 20) + 3),
                         size_name);

class InlineSgemm : public GpuTest, public ::testing::WithParamInterface<int64_t> {};

TEST_P(InlineSgemm, MatchesCpuWithinFloatBound) {
  const int64_t n = GetParam();
  const auto nn = static_cast<size_t>(n * n);
  std::mt19937_64 rng(static_cast<uint64_t>(n) + 4);
  const auto a = random_floats(nn, rng), b = random_floats(nn, rng);
  std::string payload;
  append(payload, a);
  append(payload, b);
  // S = Σ_ij Σ_k |A_ik||B_kj| = Σ_k (Σ_i |A_ik|) (Σ_j |B_kj|)
  double s = 0;
  for (int64_t k = 0; k < n; ++k) {
    double col = 0, row = 0;
    for (int64_t i = 0; i < n; ++i) col += std::fabs(a[static_cast<size_t>(i * n + k)]);
    for (int64_t j = 0; j < n; ++j) row += std::fabs(b[static_cast<size_t>(k * n + j)]);
    s += col * row;
  }
  const double nu = static_cast<double>(n) * 0x1p-24, gamma = nu / (1 - nu);
  const double tolerance = (2 * gamma + 4.0 * static_cast<double>(n * n) * kDoubleU) * s;
  TaskInput in;
  in.size = n;
  in.payload = payload;
  const KernelOutput g = runner_->run("sgemm", in), c = cpu("sgemm", in);
  EXPECT_NEAR(g.value, c.value, tolerance);
  EXPECT_EQ(g.bytes, c.bytes);
  EXPECT_EQ(g.flops, c.flops);
}

INSTANTIATE_TEST_SUITE_P(Sizes, InlineSgemm,
                         ::testing::Values(int64_t{1}, int64_t{17}, int64_t{129}, int64_t{300}),
                         size_name);

TEST_F(GpuTest, NoopHashesPayloadSize) {
  TaskInput in;
  in.index = 11;
  in.payload = "twelve bytes";
  expect_same(runner_->run("noop", in), cpu("noop", in));
}

// ---- Runner behaviour ---------------------------------------------------------------------

TEST_F(GpuTest, InvalidTasksThrowPermanentKernelError) {
  const auto expect_permanent = [&](std::string_view kernel, const TaskInput& in) {
    try {
      runner_->run(kernel, in);
      ADD_FAILURE() << kernel << " size " << in.size << ": no KernelError";
    } catch (const KernelError& e) {
      EXPECT_FALSE(e.retryable()) << e.what();
    }
  };
  TaskInput in;
  in.size = 16;
  expect_permanent("no_such_kernel", in);
  in.size = -1;
  expect_permanent("saxpy", in);
  in.size = (int64_t{1} << 28) + 1;
  expect_permanent("reduce", in);
  in.size = 16385;
  expect_permanent("sgemm", in);
  in.size = 0;
  in.payload = "1234567";  // 7 bytes: not whole floats
  expect_permanent("reduce", in);
  in.size = 3;
  expect_permanent("sgemm", in);  // needs 2 * 9 floats
  in.size = 10;
  expect_permanent("sleep", in);  // takes no payload
  expect_permanent("mandelbrot", in);

  // The runner is still usable after rejecting tasks.
  TaskInput ok;
  ok.size = 4097;
  ok.seed = kSeed;
  expect_same(runner_->run("saxpy", ok), cpu("saxpy", ok));
}

TEST_F(GpuTest, PoolMemoryIsReusedAcrossTasks) {
  TaskInput in;
  in.size = int64_t{1} << 22;
  in.seed = kSeed;
  runner_->run("saxpy", in);
  const uint64_t after_first = runner_->device_bytes_in_use();
  EXPECT_GE(after_first, uint64_t{2} * 4 * (uint64_t{1} << 22));  // x and y stay cached
  for (int i = 0; i < 5; ++i) runner_->run("saxpy", in);
  EXPECT_EQ(runner_->device_bytes_in_use(), after_first);
}

TEST(StreamRunner, ConcurrentRunnersMatchCpu4threads) {
  SKIP_WITHOUT_CUDA_DEVICE();
  struct Task {
    const char* kernel;
    TaskInput in;
    KernelOutput expected;
  };
  std::vector<Task> tasks;
  std::mt19937_64 rng(7);
  const std::string sort_payload = [&] {
    std::vector<uint32_t> keys(100003);
    for (uint32_t& k : keys) k = static_cast<uint32_t>(rng());
    std::string p;
    append(p, keys);
    return p;
  }();
  for (uint64_t index = 0; index < 4; ++index) {
    for (const auto& [kernel, size] :
         std::vector<std::pair<const char*, int64_t>>{{"saxpy", (1 << 20) + 3},
                                                      {"reduce", 1 << 20},
                                                      {"sort", 100003},
                                                      {"sgemm", 129},
                                                      {"montecarlo_pi", 1 << 20},
                                                      {"noop", 0},
                                                      {"sleep", 100}}) {
      TaskInput in;
      in.size = size;
      in.seed = kSeed + index;
      in.index = index;
      tasks.push_back({kernel, in, {}});
    }
    TaskInput band;
    band.size = 777;
    band.count = 4;
    band.index = index;
    tasks.push_back({"mandelbrot", band, {}});
    TaskInput sort_inline;
    sort_inline.payload = sort_payload;
    tasks.push_back({"sort", sort_inline, {}});
  }
  for (Task& t : tasks) t.expected = cpu(t.kernel, t.in);

  constexpr int kThreads = 4;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto runner = gpu::StreamRunner::create(first_device());
        for (int round = 0; round < 3; ++round) {
          for (size_t k = 0; k < tasks.size(); ++k) {
            const Task& task = tasks[(k + static_cast<size_t>(t) * 5) % tasks.size()];
            const KernelOutput out = runner->run(task.kernel, task.in);
            if (out.checksum != task.expected.checksum || out.value != task.expected.value)
              failures[t] += std::string(task.kernel) + " index " + std::to_string(task.in.index) +
                             " differs; ";
          }
        }
      } catch (const std::exception& e) {
        failures[t] += std::string("exception: ") + e.what();
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

// ---- API without a device -----------------------------------------------------------------

TEST(GpuApi, ListDevicesExplainsAnEmptyList) {
  std::string why;
  const auto devices = gpu::list_devices(&why);
  if (devices.empty()) {
    EXPECT_FALSE(why.empty());
  } else {
    for (const auto& d : devices) {
      EXPECT_FALSE(d.name.empty());
      EXPECT_GT(d.total_mem, 0u);
      EXPECT_GT(d.sm_count, 0);
    }
  }
}

TEST(GpuApi, HasKernelForEveryRegisteredKernelWhenBuiltWithCuda) {
  for (const auto& def : KernelRegistry::instance().all())
    EXPECT_EQ(gpu::has_kernel(def.name), gpu::built_with_cuda()) << def.name;
  EXPECT_FALSE(gpu::has_kernel("no_such_kernel"));
}

TEST(GpuApi, CreateRejectsAMissingDevice) {
  EXPECT_THROW(gpu::StreamRunner::create(-1), std::runtime_error);
  EXPECT_THROW(gpu::StreamRunner::create(1 << 20), std::runtime_error);
}

}  // namespace
