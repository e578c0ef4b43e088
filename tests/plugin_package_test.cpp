// The plugin SDK end to end, as a user meets it: the ctest fixture plugin_package
// (tests/plugin_package/setup.cmake) installs this build into a temporary prefix and builds the
// installed examples/plugins/blackscholes against it with find_package(taskfarm); these tests
// check what was installed, then run farms of the INSTALLED programs with the built plugin and
// check every price against an independent double-precision Black-Scholes written here.
#include <dlfcn.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "common/digest.h"
#include "farm.h"
#include "kernels/cuda/gpu_plugin.h"
#include "taskfarm/plugin.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kWork = TASKFARM_PLUGIN_PACKAGE_DIR;
const std::string kPrefix = kWork + "/prefix";

// The tolerance the example's README states: |price - reference| <= 1e-9 * (spot + strike).
constexpr double kTolerance = 1e-9;

std::string installed(const std::string& program) { return kPrefix + "/bin/" + program; }
std::string plugin_of(const std::string& variant) {
  return kWork + "/build-" + variant + "/libblackscholes.so";
}
bool built(const std::string& variant) { return fs::exists(plugin_of(variant)); }

// Fails the test when the fixture has not run (the binary started outside ctest).
#define REQUIRE_FIXTURE()                                                                      \
  ASSERT_TRUE(fs::exists(kWork + "/setup.done"))                                               \
      << "run through ctest (ctest -R plugin_package): the fixture plugin_package.setup "      \
         "installs taskfarm and builds the example first; see its logs in " << kWork

// ----------------------------------------------------------- an independent reference

struct Option {
  double spot, strike, years, rate, vol;
};

// The generator the example's README specifies, written again from that text.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double field(uint64_t seed, uint64_t index, uint64_t i, unsigned f) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ index) ^ (i * 5 + f));
  return static_cast<double>(h >> 11) / 9007199254740992.0;  // 2^53
}
Option generated(uint64_t seed, uint64_t index, uint64_t i) {
  Option o;
  o.spot = std::fma(190.0, field(seed, index, i, 0), 10.0);
  o.strike = std::fma(o.spot, field(seed, index, i, 1), 0.5 * o.spot);
  o.years = std::fma(2.95, field(seed, index, i, 2), 0.05);
  o.rate = 0.1 * field(seed, index, i, 3);
  o.vol = std::fma(0.75, field(seed, index, i, 4), 0.05);
  return o;
}

// Black-Scholes the textbook way: the call from the closed form, the put from put-call parity.
std::pair<double, double> reference(const Option& o) {
  auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  const double s = o.vol * std::sqrt(o.years);
  const double d1 = (std::log(o.spot / o.strike) + o.rate * o.years) / s + s / 2;
  const double pv_strike = o.strike / std::exp(o.rate * o.years);
  const double call = o.spot * cdf(d1) - pv_strike * cdf(d1 - s);
  return {call, call - o.spot + pv_strike};
}

bool within_tolerance(double price, double expected, const Option& o) {
  return std::fabs(price - expected) <= kTolerance * (o.spot + o.strike);
}

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string base64(const std::string& in) {
  static const char* kDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += kDigits[v >> 18];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < in.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

std::string records(const std::vector<Option>& options) {
  std::string bytes(options.size() * sizeof(Option), '\0');
  std::memcpy(bytes.data(), options.data(), bytes.size());
  return bytes;
}

// Options a payload carries: textbook cases, and the corners of the formula.
const std::vector<Option> kPayloadOptions = {
    {100, 100, 1, 0.05, 0.2},     // at the money (Hull: call 10.4506, put 5.5735)
    {42, 40, 0.5, 0.1, 0.2},      // Hull's example 15.6: call 4.76, put 0.81
    {100, 40, 2, 0.03, 0.25},     // deep in the money call, worthless put
    {40, 100, 0.25, 0.03, 0.25},  // the other way round
    {100, 100, 0.001, 0.05, 0.2}, // a day before expiry
    {100, 120, 5, 0, 1.5},        // no interest, wild volatility
    {80, 75, 1.5, -0.01, 0.3},    // negative rates
};
constexpr int kGeneratedTasks = 12, kOptionsPerTask = 25000, kPayloadTasks = 2;
constexpr uint64_t kSeed = 42;

std::string job_json() {
  json job;
  job["name"] = "blackscholes";
  job["tasks"] = json::array({json{{"kernel", "blackscholes"}, {"count", kGeneratedTasks},
                                   {"size", kOptionsPerTask}, {"seed", kSeed}},
                              json{{"kernel", "blackscholes"}, {"count", kPayloadTasks},
                                   {"payload", base64(records(kPayloadOptions))}}});
  return job.dump();
}

// ----------------------------------------------------------- a farm of installed programs

struct Batch {
  v1::Report report;
  std::vector<json> index;                    // results/<job>/index.jsonl, by task id
  std::map<uint64_t, std::string> outputs;    // task id -> the output's bytes
};

// Runs `job` on the installed sink, ventilator and one worker per entry of `workers` (their
// flags; `worker_env` in their environment). Returns: the report, the outputs index and the
// outputs.
Batch run_batch(Farm& farm, const std::string& job, int exit_code,
                const std::vector<std::vector<std::string>>& workers,
                const std::vector<std::string>& worker_env = {}) {
  const std::string tasks = "ipc://" + farm.path("t"), results = "ipc://" + farm.path("r"),
                    control = "ipc://" + farm.path("c");
  Process sink({installed("taskfarm-sink"), "--bind", results, "--control", control, "--report",
                farm.path("report.json"), "--results-dir", farm.path("results")},
               farm.path("sink"));
  std::vector<Process> ws;
  for (size_t i = 0; i < workers.size(); ++i) {
    std::vector<std::string> args = {installed("taskfarm-worker"), "--ventilator", tasks,
                                     "--sink-results", results, "--sink-control", control,
                                     "--id", "w" + std::to_string(i)};
    args.insert(args.end(), workers[i].begin(), workers[i].end());
    ws.emplace_back(args, farm.path("worker" + std::to_string(i)), worker_env);
  }
  Process vent({installed("taskfarm-ventilator"), "--bind", tasks, "--sink-results", results,
                "--sink-control", control, "--job", farm.write("job.json", job)},
               farm.path("ventilator"));
  EXPECT_EXIT_CODE(vent, exit_code, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, exit_code, 10s);
  Batch b;
  b.report = farm.report();
  const std::string dir = farm.path("results") + "/" + b.report.job_id();  // 16 hex digits
  std::ifstream in(dir + "/index.jsonl");
  std::string line;
  while (std::getline(in, line)) b.index.push_back(json::parse(line));
  std::sort(b.index.begin(), b.index.end(),
            [](const json& a, const json& c) { return a["task_id"] < c["task_id"]; });
  for (const auto& l : b.index) {
    if (l.contains("output")) {
      b.outputs[l["task_id"].get<uint64_t>()] = read_file(dir + "/" + l["output"].get<std::string>());
    }
  }
  return b;
}

// The options of a task of job_json(), from its index line.
std::vector<Option> options_of(const json& line) {
  if (line["entry"] == 1) return kPayloadOptions;
  std::vector<Option> out;
  for (int i = 0; i < kOptionsPerTask; ++i) out.push_back(generated(kSeed, line["index"], i));
  return out;
}

struct Price {
  double call, put;
  bool operator==(const Price&) const = default;
};

std::vector<Price> prices_of(const std::string& bytes) {
  std::vector<Price> p(bytes.size() / sizeof(Price));
  std::memcpy(p.data(), bytes.data(), p.size() * sizeof(Price));
  return p;
}

// Checks a batch of job_json(): every task ok, every price within the tolerance of the
// reference, checksums and values as the README defines them, and the report's digest made of
// those checksums. Returns: the number of prices checked.
size_t check_batch(const Batch& b) {
  EXPECT_EQ(b.report.tasks_ok(), static_cast<uint64_t>(kGeneratedTasks + kPayloadTasks))
      << (b.report.failures_size() ? b.report.failures(0).error() : "");
  EXPECT_EQ(b.index.size(), static_cast<size_t>(kGeneratedTasks + kPayloadTasks));
  ResultDigest digest;
  size_t checked = 0;
  double worst = 0;  // the largest |price - reference| / (S + K)
  for (const auto& line : b.index) {
    const uint64_t task = line["task_id"];
    EXPECT_EQ(line["status"], "ok") << line.dump();
    EXPECT_EQ(line["kernel"], "blackscholes");
    const auto it = b.outputs.find(task);
    if (it == b.outputs.end()) {
      ADD_FAILURE() << "no output for task " << task << ": " << line.dump();
      continue;
    }
    const std::vector<Option> options = options_of(line);
    const auto prices = prices_of(it->second);
    EXPECT_EQ(it->second.size(), options.size() * 16) << "16 bytes per option, task " << task;
    EXPECT_EQ(line["bytes"], it->second.size());
    double total = 0;
    int bad = 0;
    for (size_t i = 0; i < std::min(options.size(), prices.size()); ++i) {
      const auto [call, put] = reference(options[i]);
      const auto [got_call, got_put] = prices[i];  // Price
      total += got_call + got_put;
      const double scale = options[i].spot + options[i].strike;
      worst = std::max({worst, std::fabs(got_call - call) / scale, std::fabs(got_put - put) / scale});
      if ((!within_tolerance(got_call, call, options[i]) ||
           !within_tolerance(got_put, put, options[i])) &&
          ++bad <= 3) {
        ADD_FAILURE() << "task " << task << " option " << i << " (S " << options[i].spot << " K "
                      << options[i].strike << " T " << options[i].years << " r "
                      << options[i].rate << " vol " << options[i].vol << "): call " << got_call
                      << " put " << got_put << ", reference " << call << " " << put;
      }
      ++checked;
    }
    EXPECT_EQ(bad, 0) << "task " << task;
    EXPECT_EQ(line["checksum"], fmt::format("{:016x}", fnv1a(it->second))) << "FNV-1a of the output";
    EXPECT_DOUBLE_EQ(line["value"].get<double>(), total) << "the sum of the prices";
    digest.add(task, true, fnv1a(it->second));
  }
  EXPECT_EQ(b.report.result_digest(), digest.hex()) << "the digest of the outputs' checksums";
  std::cout << checked << " prices, largest |price - reference| / (S + K) = " << worst
            << " (tolerance " << kTolerance << ")\n";
  return checked;
}

// ----------------------------------------------------------- the tests

TEST(PluginPackage, InstallsTheHeaderAndTheCMakePackage) {
  REQUIRE_FIXTURE();
  // The one public header, as it is in the source tree.
  std::vector<std::string> headers;
  for (const auto& e : fs::recursive_directory_iterator(kPrefix + "/include")) {
    if (e.is_regular_file()) headers.push_back(fs::relative(e.path(), kPrefix).string());
  }
  EXPECT_EQ(headers, std::vector<std::string>{"include/taskfarm/plugin.h"});
  EXPECT_EQ(read_file(kPrefix + "/include/taskfarm/plugin.h"),
            read_file(std::string(TASKFARM_SOURCE_DIR) + "/include/taskfarm/plugin.h"));
  for (const char* f : {"taskfarmConfig.cmake", "taskfarmConfigVersion.cmake",
                        "taskfarmTargets.cmake", "TaskfarmAddPlugin.cmake"}) {
    EXPECT_TRUE(fs::exists(kPrefix + "/lib/cmake/taskfarm/" + f)) << f;
  }
  // The GPU plugin where the worker looks for it in an install (CUDA builds only).
  EXPECT_FALSE(fs::exists(kPrefix + "/lib/libtaskfarm_gpu.so"));
  EXPECT_EQ(fs::exists(kPrefix + "/lib/taskfarm/libtaskfarm_gpu.so"),
            fs::exists(std::string(TASKFARM_BIN_DIR) + "/libtaskfarm_gpu.so"));
}

TEST(PluginPackage, TheExampleIsAPluginThatExportsOnlyItsEntry) {
  REQUIRE_FIXTURE();
  std::vector<std::string> variants = {"cpu"};
  if (built("cuda")) variants.push_back("cuda");
  for (const auto& v : variants) {
    SCOPED_TRACE(v);
    const std::string lib = plugin_of(v);
    ASSERT_TRUE(fs::exists(lib));
    // Hidden visibility and the version script: one dynamic symbol, the entry.
    FILE* nm = popen((std::string(TASKFARM_NM) + " -D --defined-only " + lib + " 2>&1").c_str(), "r");
    ASSERT_NE(nm, nullptr);
    std::string symbols;
    char buf[512];
    while (fgets(buf, sizeof buf, nm)) symbols += buf;
    EXPECT_EQ(pclose(nm), 0) << symbols;
    std::set<std::string> names;
    std::istringstream lines(symbols);
    for (std::string line; std::getline(lines, line);) names.insert(line.substr(line.rfind(' ') + 1));
    EXPECT_EQ(names, std::set<std::string>{TF_PLUGIN_ENTRY_SYMBOL}) << symbols;
    // What the worker will see: ABI 1, one kernel, a CUDA side only where CUDA was built.
    void* handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle, nullptr) << dlerror();
    auto entry = reinterpret_cast<tf_plugin_entry>(dlsym(handle, TF_PLUGIN_ENTRY_SYMBOL));
    ASSERT_NE(entry, nullptr);
    const tf_plugin* p = entry();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->abi_version, static_cast<uint32_t>(TF_PLUGIN_ABI_VERSION));
    EXPECT_EQ(p->kernel_size, sizeof(tf_kernel));
    ASSERT_EQ(p->n_kernels, 1u);
    EXPECT_STREQ(p->kernels[0].name, "blackscholes");
    EXPECT_STREQ(p->kernels[0].size_meaning, "options");
    EXPECT_NE(p->kernels[0].run_cpu, nullptr);
    EXPECT_EQ(p->kernels[0].run_cuda != nullptr, v == "cuda");
    // Not dlclose'd: the static CUDA runtime registers its kernels with atexit handlers.
  }
}

TEST(PluginPackage, CpuWorkersPriceEveryOptionAsTheReferenceDoes) {
  REQUIRE_FIXTURE();
  // The reference itself, against textbook values (Hull, Options, Futures and Other Derivatives).
  EXPECT_NEAR(reference(kPayloadOptions[0]).first, 10.4506, 1e-4);
  EXPECT_NEAR(reference(kPayloadOptions[0]).second, 5.5735, 1e-4);
  EXPECT_NEAR(reference(kPayloadOptions[1]).first, 4.7594, 1e-4);
  EXPECT_NEAR(reference(kPayloadOptions[1]).second, 0.8086, 1e-4);

  Batch first;
  {
    Farm farm;
    first = run_batch(farm, job_json(), 0, {{"--plugin", plugin_of("cpu"), "--device", "cpu",
                                              "--threads", "2"}});
    EXPECT_EQ(check_batch(first),
              static_cast<size_t>(kGeneratedTasks * kOptionsPerTask) +
                  kPayloadTasks * kPayloadOptions.size());
  }
  // The same batch on two other workers, with the CUDA build of the plugin where there is one
  // (it loads on a node without a CUDA driver and runs its CPU side), one loading it with
  // --plugin-dir: the same bytes, the same digest.
  Farm farm;
  const std::string other = built("cuda") ? plugin_of("cuda") : plugin_of("cpu");
  const Batch second = run_batch(
      farm, job_json(), 0,
      {{"--plugin", other, "--device", "cpu", "--threads", "1", "--prefetch", "1"},
       {"--plugin-dir", fs::path(other).parent_path().string(), "--device", "cpu", "--threads",
        "3", "--prefetch", "1"}});
  check_batch(second);
  EXPECT_EQ(second.report.result_digest(), first.report.result_digest());
  EXPECT_EQ(second.outputs, first.outputs);
  ASSERT_EQ(second.report.kernels_size(), 1);
  EXPECT_GT(second.report.kernels(0).gflop_per_s(), 0) << "flops declared";
  EXPECT_GT(second.report.kernels(0).mb_per_s(), 0) << "bytes declared";
}

TEST(PluginPackage, BadTasksFailWithTheirReasonAndAreNotRetried) {
  REQUIRE_FIXTURE();
  const Option negative_vol{100, 100, 1, 0.05, -0.2};
  const std::string one = records({kPayloadOptions[0]});
  auto entry = [](json fields) {
    fields["kernel"] = "blackscholes";
    fields["count"] = 1;
    return fields;
  };
  json spec;
  spec["tasks"] = json::array({
      entry({{"payload", base64(one + "x")}}),
      entry({{"size", 2}, {"payload", base64(one)}}),
      entry(json::object()),
      entry({{"size", (1 << 22) + 1}}),
      entry({{"payload", base64(one + records({negative_vol}))}}),
      entry({{"size", 3}}),
  });
  const std::string job = spec.dump();
  Farm farm;
  const Batch b = run_batch(farm, job, 2, {{"--plugin", plugin_of("cpu"), "--device", "cpu"}});
  EXPECT_EQ(b.report.tasks_ok(), 1u);
  ASSERT_EQ(b.report.failures_size(), 5);
  const std::map<uint64_t, std::string> expected = {
      {0, "payload of 41 bytes is not a whole number of 40-byte option records"},
      {1, "size 2 does not match the payload's 1 options"},
      {2, "needs a size"},
      {3, "size 4194305 exceeds the maximum 4194304 (options)"},
      {4, "option 1: spot 100, strike 100, years 1, rate 0.05, vol -0.2"},
  };
  for (const auto& f : b.report.failures()) {
    SCOPED_TRACE(f.error());
    EXPECT_EQ(f.attempts(), 1u) << "permanent: not retried";
    EXPECT_EQ(f.error().find('\n'), std::string::npos);
    ASSERT_TRUE(expected.count(f.task_id()));
    EXPECT_NE(f.error().find(expected.at(f.task_id())), std::string::npos);
  }
}

TEST(PluginPackage, GpuWorkerAgreesWithCpuWorkersWithinTheTolerance) {
  REQUIRE_FIXTURE();
  if (!built("cuda")) {
    GTEST_SKIP() << "the example was built without CUDA: no nvcc when taskfarm was configured";
  }
  if (!fs::exists(kPrefix + "/lib/taskfarm/libtaskfarm_gpu.so")) {
    GTEST_SKIP() << "this taskfarm build has no CUDA kernels (TASKFARM_ENABLE_CUDA=OFF), so its "
                    "workers cannot run a plugin's CUDA side";
  }
  std::string why;
  if (kernels::gpu::plugin::list_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;

  Batch cpu, gpu;
  {
    Farm farm;
    cpu = run_batch(farm, job_json(), 0, {{"--plugin", plugin_of("cuda"), "--device", "cpu"}});
  }
  {
    // The installed GPU plugin needs the node's cuBLAS (the cudalibs add-on is not installed
    // here): the toolkit's, where the loader would not find it by itself.
    std::vector<std::string> env;
    if (std::string(TASKFARM_CUDA_LIBRARY_DIR).size() > 0) {
      const char* old = std::getenv("LD_LIBRARY_PATH");
      env.push_back(std::string("LD_LIBRARY_PATH=") + TASKFARM_CUDA_LIBRARY_DIR +
                    (old ? std::string(":") + old : ""));
    }
    Farm farm;
    gpu = run_batch(farm, job_json(), 0, {{"--plugin", plugin_of("cuda"), "--device", "cuda:0"}},
                    env);
    ASSERT_EQ(gpu.report.workers_size(), 1);
    EXPECT_EQ(gpu.report.workers(0).device().rfind("cuda:", 0), 0u) << gpu.report.workers(0).device();
  }
  EXPECT_GT(check_batch(gpu), 0u);  // every GPU price against the reference
  size_t identical = 0, compared = 0;
  for (const auto& line : gpu.index) {
    const uint64_t task = line["task_id"];
    const std::vector<Option> options = options_of(line);
    const auto g = prices_of(gpu.outputs[task]), c = prices_of(cpu.outputs[task]);
    ASSERT_EQ(g.size(), c.size());
    for (size_t i = 0; i < g.size() && i < options.size(); ++i) {
      EXPECT_TRUE(within_tolerance(g[i].call, c[i].call, options[i]) &&
                  within_tolerance(g[i].put, c[i].put, options[i]))
          << "task " << task << " option " << i;
      identical += g[i] == c[i];
      ++compared;
    }
  }
  std::cout << "GPU and CPU prices: " << identical << " of " << compared
            << " options bit-identical, all within the tolerance\n";
}

}  // namespace
}  // namespace taskfarm::testing
