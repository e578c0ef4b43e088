// End-to-end tests of the core pipeline: real ventilator, worker and sink processes on ipc://
// endpoints, checked through the sink's JSON report and the processes' exit codes.
#include <zmq.hpp>

#include <map>
#include <random>

#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAllKernelsJob = R"({ "name": "all-kernels", "tasks": [
  { "kernel": "noop", "count": 50 },
  { "kernel": "sleep", "count": 10, "size": 2000 },
  { "kernel": "saxpy", "count": 20, "size": 100003, "seed": 7 },
  { "kernel": "sgemm", "count": 6, "size": 129, "seed": 8 },
  { "kernel": "reduce", "count": 20, "size": 65537, "seed": 9 },
  { "kernel": "mandelbrot", "count": 16, "size": 256, "seed": 1 },
  { "kernel": "montecarlo_pi", "count": 10, "size": 100000, "seed": 3 },
  { "kernel": "sort", "count": 10, "size": 50001, "seed": 4 } ] })";

struct BatchOutcome {
  v1::Report report;
  int sink_rc = -1, vent_rc = -1;
};

// Runs one batch from a job file over `workers` CPU workers of `threads` threads each.
BatchOutcome run_batch(Farm& farm, const std::string& job_json, int workers, int threads = 1) {
  auto sink = farm.sink();
  std::vector<Process> ws;
  for (int i = 0; i < workers; ++i) {
    ws.push_back(farm.worker("w" + std::to_string(i), {"--threads", std::to_string(threads)}));
  }
  auto vent = farm.ventilator({"--job", farm.write("job.json", job_json)});
  BatchOutcome out;
  out.vent_rc = vent.wait_for(kBatchTimeout).value_or(-1);
  out.sink_rc = sink.wait_for(10s).value_or(-1);
  for (auto& w : ws) {
    EXPECT_EQ(w.wait_for(10s), std::optional<int>(0)) << "worker did not exit on kill:\n" << w.err();
  }
  EXPECT_EQ(out.vent_rc, 0) << vent.err();
  EXPECT_EQ(out.sink_rc, 0) << sink.err();
  out.report = farm.report();
  return out;
}

TEST(Farm, RunsEveryKernelAndReportsJson2Workers) {
  Farm farm;
  const auto out = run_batch(farm, kAllKernelsJob, 2, 2);
  const auto& r = out.report;
  EXPECT_EQ(r.job(), "all-kernels");
  EXPECT_EQ(r.tasks_total(), 142u);
  EXPECT_EQ(r.tasks_ok(), 142u);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_EQ(r.duplicates_dropped(), 0u);
  EXPECT_EQ(r.result_digest().size(), 16u);
  EXPECT_GT(r.elapsed_s(), 0);
  EXPECT_GT(r.tasks_per_s(), 0);
  EXPECT_GT(r.mb_per_s(), 0);
  EXPECT_GT(r.gflop_per_s(), 0);
  EXPECT_GT(r.latency_us().p50(), 0);
  EXPECT_LE(r.latency_us().p50(), r.latency_us().p99());
  EXPECT_LE(r.latency_us().p99(), r.latency_us().max());
  std::map<std::string, uint32_t> per_kernel;
  for (const auto& k : r.kernels()) per_kernel[k.kernel()] = k.tasks();
  EXPECT_EQ(per_kernel.size(), 8u);
  EXPECT_EQ(per_kernel["sgemm"], 6u);
  uint32_t by_workers = 0;
  for (const auto& w : r.workers()) {
    EXPECT_EQ(w.device(), "cpu");
    EXPECT_FALSE(w.host().empty());
    by_workers += w.tasks();
  }
  EXPECT_EQ(by_workers, 142u);
}

TEST(Farm, DigestIsTheSameWithOneOrThreeWorkers) {
  std::string digest1, digest3;
  {
    Farm farm;
    digest1 = run_batch(farm, kAllKernelsJob, 1).report.result_digest();
  }
  {
    Farm farm;
    const auto out = run_batch(farm, kAllKernelsJob, 3);
    digest3 = out.report.result_digest();
    EXPECT_EQ(out.report.tasks_ok(), 142u);
  }
  EXPECT_EQ(digest1, digest3);
  // and a different seed gives a different digest
  Farm farm;
  std::string other = kAllKernelsJob;
  other.replace(other.find("\"seed\": 7"), 9, "\"seed\": 70");
  EXPECT_NE(run_batch(farm, other, 1).report.result_digest(), digest1);
}

TEST(Farm, FlagsBatchSpreadsOverAllWorkersWithoutSlowJoiner) {
  Farm farm;
  // Start the ventilator and sink first: tasks must wait for workers, then be shared.
  auto sink = farm.sink();
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "60", "--size", "20000"});
  std::this_thread::sleep_for(300ms);
  std::vector<Process> ws;
  for (int i = 0; i < 3; ++i) ws.push_back(farm.worker("w" + std::to_string(i), {"--threads", "1"}));
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  for (auto& w : ws) EXPECT_EXIT_CODE(w, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 60u);
  ASSERT_EQ(r.workers_size(), 3);
  for (const auto& w : r.workers()) {
    EXPECT_GE(w.tasks(), 10u) << w.id();  // ideal 20 each; no worker takes everything
    EXPECT_GT(w.busy_s(), 0.15) << w.id();
  }
}

TEST(Farm, KeepWorkersLeavesWorkersForTheNextBatch) {
  Farm farm;
  auto w = farm.worker("stay", {"--threads", "2"});
  for (int batch = 0; batch < 2; ++batch) {
    auto sink = farm.sink({"--keep-workers"});
    auto vent = farm.ventilator({"--kernel", "noop", "--tasks", "100"});
    EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
    EXPECT_EXIT_CODE(sink, 0, 10s);
    EXPECT_EQ(farm.report().tasks_ok(), 100u);
    EXPECT_TRUE(w.running()) << w.err();
  }
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 10s);
}

TEST(Farm, FailingTaskIsReportedAndBatchCompletesWithExitCode2) {
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("w", {"--threads", "2"}, {"TASKFARM_TEST_FAIL_TASK=5"});
  auto vent = farm.ventilator({"--kernel", "noop", "--tasks", "20"});
  EXPECT_EXIT_CODE(vent, 2, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 2, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 19u);
  EXPECT_EQ(r.tasks_failed(), 1u);
  ASSERT_EQ(r.failures_size(), 1);
  EXPECT_EQ(r.failures(0).task_id(), 5u);
  EXPECT_NE(r.failures(0).error().find("injected"), std::string::npos);
  EXPECT_NE(sink.out().find("failed task 5"), std::string::npos) << sink.out();
}

TEST(Farm, TcpOnEphemeralPortsWithHostFlags) {
  // The --sink HOST / --ventilator HOST:PORT forms, on ports the kernel picks for us.
  auto free_port = [] {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pull);
    s.bind("tcp://127.0.0.1:*");
    const std::string ep = s.get(zmq::sockopt::last_endpoint);
    return ep.substr(ep.rfind(':') + 1);
  };
  Farm farm;
  const std::string tp = free_port(), rp = free_port(), cp = free_port();
  Process sink({bin("taskfarm-sink"), "--bind", "127.0.0.1:" + rp, "--control", "127.0.0.1:" + cp,
                "--report", farm.path("report.json")},
               farm.path("sink"));
  Process w({bin("taskfarm-worker"), "--ventilator", "127.0.0.1:" + tp, "--sink-results",
             "127.0.0.1:" + rp, "--sink-control", "127.0.0.1:" + cp, "--device", "cpu"},
            farm.path("w"));
  Process vent({bin("taskfarm-ventilator"), "--bind", "127.0.0.1:" + tp, "--sink-results",
                "127.0.0.1:" + rp, "--sink-control", "127.0.0.1:" + cp, "--kernel", "reduce",
                "--tasks", "30", "--size", "1000"},
               farm.path("vent"));
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  EXPECT_EQ(farm.report().tasks_ok(), 30u);
}

TEST(Farm, EveryProcessExitsCleanlyOnSigintAndSigterm) {
  for (int sig : {SIGINT, SIGTERM}) {
    Farm farm;
    auto sink = farm.sink();
    auto w = farm.worker("w");
    auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "1000", "--size", "100000"});
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(vent.running() && sink.running() && w.running());
    w.signal(sig);
    EXPECT_EXIT_CODE(w, 0, 5s);  // hands back its queued tasks, finishes the running one
    vent.signal(sig);
    EXPECT_EXIT_CODE(vent, 130, 5s);
    sink.signal(sig);
    EXPECT_EXIT_CODE(sink, 130, 5s);
  }
}

// Interrupting any role of a one-shot farm ends the batch for all of them: the sink writes a
// partial report with state "interrupted", the ventilator and sink exit 130, workers exit 0.
TEST(Farm, InterruptingTheVentilatorOrTheSinkEndsTheBatchEverywhere) {
  for (const std::string role : {"ventilator", "sink"}) {
    SCOPED_TRACE(role);
    Farm farm;
    auto sink = farm.sink();
    auto w = farm.worker("w", {"--threads", "2"});
    auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "400", "--size", "20000"});
    std::this_thread::sleep_for(700ms);
    ASSERT_TRUE(vent.running() && sink.running() && w.running());
    (role == "sink" ? sink : vent).signal(SIGINT);
    EXPECT_EXIT_CODE(vent, 130, 5s);
    EXPECT_EXIT_CODE(sink, 130, 5s);
    EXPECT_EXIT_CODE(w, 0, 5s);
    const auto rep = farm.report();
    EXPECT_EQ(rep.state(), "interrupted");
    EXPECT_EQ(rep.tasks_total(), 400u);
    EXPECT_GT(rep.tasks_ok(), 0u);
    EXPECT_LT(rep.tasks_ok(), 400u);
  }
}

TEST(Farm, VentilatorWithoutWorkersSaysWhereTheyConnectAndGoesOnWhenOneDoes) {
  Farm farm;
  auto sink = farm.sink();
  auto vent = farm.ventilator({"--kernel", "noop", "--tasks", "20"});
  EXPECT_TRUE(vent.wait_for_log("waits: no worker connected", 10s)) << vent.err();
  EXPECT_NE(vent.err().find("workers connect to " + farm.tasks_endpoint()), std::string::npos)
      << vent.err();
  auto w = farm.worker("late");
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EQ(farm.report().tasks_ok(), 20u);
}

}  // namespace
}  // namespace taskfarm::testing
