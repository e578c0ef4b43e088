// Kernel plugins with real processes: a worker loads a plugin written in C, advertises its
// kernels, and the ventilator routes their tasks only to workers that have them; a job whose
// kernel nobody offers waits with the reason; bad plugin files are one-line errors; a plugin
// that crashes its worker is a poison task, not a lost batch.
#include "common/digest.h"
#include "common/job_state.h"
#include "farm.h"
#include "service.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

std::string plugin(const std::string& name) {
  return std::string(TASKFARM_TEST_PLUGIN_DIR) + "/lib" + name + ".so";
}

// The reference of test.square: sum over i < size of (seed + index + i)^2, mod 2^64.
uint64_t square_checksum(uint64_t seed, uint64_t index, int64_t size) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < size; ++i) {
    const uint64_t v = seed + index + static_cast<uint64_t>(i);
    sum += v * v;
  }
  return sum;
}

TEST(Plugin, WorkerRunsAPluginKernelAndTheDigestMatchesAnIndependentReference) {
  const std::string job = R"({"name": "sq", "tasks": [{"kernel": "test.square", "count": 50,
                                                       "size": 1000, "seed": 7}]})";
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("p", {"--plugin", plugin("test_plugin"), "--threads", "2"});
  auto vent = farm.ventilator({"--job", farm.write("job.json", job)});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 50u);
  ASSERT_EQ(rep.kernels_size(), 1);
  EXPECT_EQ(rep.kernels(0).kernel(), "test.square");
  EXPECT_GT(rep.kernels(0).gflop_per_s(), 0.0);
  // The sink's digest of the checksums the reference gives.
  ResultDigest expected;
  for (uint64_t i = 0; i < 50; ++i) expected.add(i, true, square_checksum(7, i, 1000));
  EXPECT_EQ(rep.result_digest(), expected.hex());
}

TEST(Plugin, TasksGoOnlyToWorkersThatOfferTheirKernel) {
  Farm farm;
  auto sink = farm.sink();
  auto plain = farm.worker("plain", {"--threads", "2"});
  // --prefetch 1: the window it would learn on the fast square tasks must not grab the sleeps.
  auto with = farm.worker("with", {"--threads", "1", "--prefetch", "1", "--plugin", plugin("test_plugin")});
  const std::string job = R"({"name": "mixed", "tasks": [
      {"kernel": "test.square", "count": 100, "size": 20000},
      {"kernel": "sleep", "count": 100, "size": 20000}]})";
  auto vent = farm.ventilator({"--job", farm.write("job.json", job)});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto rep = farm.report();
  // A plugin task on the plain worker would fail with "unknown kernel": none did.
  EXPECT_EQ(rep.tasks_failed(), 0u) << (rep.failures_size() ? rep.failures(0).error() : "");
  EXPECT_EQ(rep.tasks_ok(), 200u);
  uint32_t plain_tasks = 0, with_tasks = 0;
  for (const auto& w : rep.workers()) (w.id() == "plain" ? plain_tasks : with_tasks) += w.tasks();
  EXPECT_GT(plain_tasks, 0u);
  EXPECT_LE(plain_tasks, 100u) << "the plain worker can only have run the sleep tasks";
  EXPECT_GE(with_tasks, 100u);
}

TEST(Plugin, AJobWhoseKernelNoWorkerOffersWaitsWithTheReasonThenRuns) {
  Farm farm;
  Service svc(farm, 1);
  const std::string id = svc.submit(farm.write(
      "job.json", R"({"name": "needs-plugin", "tasks": [{"kernel": "test.square", "count": 10,
                                                         "size": 10}]})"));
  std::string reason;  // "waiting for the sink" first, until the sink accepts the job
  for (int i = 0; i < 100 && reason.find("offers") == std::string::npos; ++i) {
    const auto st = svc.status(id);
    if (st.jobs_size() == 1) reason = st.jobs(0).reason();
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(reason.find("no connected worker offers kernel 'test.square'"), std::string::npos)
      << reason;
  const auto st = svc.status(id);
  ASSERT_EQ(st.jobs_size(), 1);
  EXPECT_EQ(st.jobs(0).done(), 0u);
  EXPECT_FALSE(job_state_final(st.jobs(0).state()));
  auto w = farm.worker("late", {"--plugin", plugin("test_plugin")});
  auto wait = svc.client({"wait", id, "-q"});
  EXPECT_EQ(wait.wait_for(0s), std::optional<int>(0)) << wait.err();
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 10s);
}

TEST(Plugin, OneShotBatchOfAKernelNobodyOffersFailsClearly) {
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("w");
  auto vent = farm.ventilator({"--kernel", "fft", "--tasks", "3", "--kernel-wait", "1"});
  EXPECT_EXIT_CODE(vent, 1, 15s);
  const std::string err = vent.err();
  EXPECT_NE(err.find("no connected worker offers kernel 'fft'"), std::string::npos) << err;
  EXPECT_NE(err.find("--plugin"), std::string::npos) << err;
  EXPECT_EXIT_CODE(sink, 130, 10s);  // the batch was ended for the whole farm
}

TEST(Plugin, BadPluginFilesAreOneLineErrors) {
  Farm farm;
  const std::string text = farm.write("not-a-library.so", "hello");
  const std::pair<std::string, std::string> cases[] = {
      {farm.path("missing.so"), "no such file"},
      {text, "cannot load"},
      {plugin("bad_plugin_1"), "ABI version 99"},
      {plugin("bad_plugin_2"), "kernel 'saxpy' is already defined by builtin"},
      {plugin("bad_plugin_3"), "no taskfarm_plugin_v1()"},
      {plugin("bad_plugin_4"), "bad name 'bad name'"},
      {plugin("bad_plugin_5"), "neither a CPU nor a CUDA implementation"},
  };
  for (const auto& [path, expect] : cases) {
    Process p({bin("taskfarm-worker"), "--plugin", path, "--device", "cpu"}, farm.path("w"));
    EXPECT_EQ(p.wait_for(5s), std::optional<int>(1)) << path;
    const std::string err = p.err();
    EXPECT_NE(err.find(expect), std::string::npos) << path << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  // The same plugin twice is a clash too.
  Process twice({bin("taskfarm-worker"), "--plugin", plugin("test_plugin"), "--plugin",
                 plugin("test_plugin"), "--device", "cpu"},
                farm.path("twice"));
  EXPECT_EQ(twice.wait_for(5s), std::optional<int>(1));
  EXPECT_NE(twice.err().find("already defined"), std::string::npos) << twice.err();
}

TEST(Plugin, APluginThatCrashesItsWorkerIsAPoisonTaskNotALostBatch) {
  Farm farm;
  auto sink = farm.sink();
  std::vector<Process> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(farm.worker("w" + std::to_string(i), {"--plugin", plugin("test_plugin"),
                                                            "--threads", "1"}));
  }
  auto vent = farm.ventilator({"--job", farm.write("job.json", R"({"name": "crashy",
      "max_attempts": 2, "tasks": [{"kernel": "test.crash", "count": 20}]})"),
                               "--worker-timeout", "1"});
  EXPECT_EXIT_CODE(vent, 2, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 2, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 19u);
  EXPECT_EQ(rep.tasks_failed(), 1u);
  ASSERT_EQ(rep.failures_size(), 1);
  EXPECT_EQ(rep.failures(0).task_id(), 0u);
  EXPECT_NE(rep.failures(0).error().find("lost"), std::string::npos) << rep.failures(0).error();
}

TEST(Plugin, PermanentAndRetryableFailuresAndCpuOnlyAdvertising) {
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("w", {"--plugin", plugin("test_plugin")});
  auto vent = farm.ventilator({"--job", farm.write("job.json", R"({"tasks": [
      {"kernel": "test.fails", "count": 2, "size": 3},
      {"kernel": "test.fails", "count": 2, "size": 4},
      {"kernel": "test.square", "count": 1, "size": 1, "payload": "AAAA"}]})")});
  EXPECT_EXIT_CODE(vent, 2, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 2, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 2u);
  EXPECT_EQ(rep.tasks_failed(), 3u);
  for (const auto& f : rep.failures()) {
    EXPECT_EQ(f.attempts(), 1u) << "permanent failures are not retried: " << f.error();
    EXPECT_EQ(f.error().find('\n'), std::string::npos) << "one line: " << f.error();
    if (f.kernel() == "test.fails") {
      EXPECT_NE(f.error().find("size 3 is odd"), std::string::npos) << f.error();
    } else {
      EXPECT_NE(f.error().find("takes no payload"), std::string::npos) << f.error();
    }
  }
  // A CPU worker does not offer the CUDA-only kernel: its job waits, then the batch gives up.
  Farm gpu;
  auto sink2 = gpu.sink();
  auto w2 = gpu.worker("w", {"--plugin", plugin("test_plugin")});
  auto vent2 = gpu.ventilator({"--kernel", "test.gpuonly", "--tasks", "1", "--kernel-wait", "1"});
  EXPECT_EXIT_CODE(vent2, 1, 15s);
  EXPECT_NE(vent2.err().find("test.gpuonly"), std::string::npos) << vent2.err();
}

}  // namespace
}  // namespace taskfarm::testing
