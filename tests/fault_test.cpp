// Fault injection with the real binaries: workers killed, stopped, crashing on a poison task,
// joining late, leaving gracefully, and a heterogeneous pool checked for balance.
#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

// Short timeouts so that lost workers are noticed within about a second.
const std::vector<std::string> kFastLeases = {"--worker-timeout", "1"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

constexpr const char* kMixedJob = R"({ "name": "mixed", "tasks": [
  { "kernel": "sleep", "count": 120, "size": 15000 },
  { "kernel": "saxpy", "count": 120, "size": 20000, "seed": 5 },
  { "kernel": "sort", "count": 60, "size": 5000, "seed": 6 } ] })";

TEST(Faults, KillNineAndSigstopMidBatchLoseNothing4Workers) {
  const std::string expected = clean_digest(kMixedJob);
  Farm farm;
  auto sink = farm.sink();
  std::vector<Process> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(farm.worker("w" + std::to_string(i), {"--threads", "1"}));
  auto vent = farm.ventilator(with({"--job", farm.write("job.json", kMixedJob)}, kFastLeases));
  for (auto& w : ws) ASSERT_TRUE(w.wait_for_log("registered", 10s)) << w.err();
  std::this_thread::sleep_for(300ms);
  ws[0].signal(SIGKILL);
  ws[1].signal(SIGSTOP);
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  ws[1].signal(SIGCONT);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 300u);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_GE(r.retried(), 2u);  // both lost workers held at least a running and a queued task
  EXPECT_EQ(r.result_digest(), expected);
  EXPECT_NE(vent.err().find("lost"), std::string::npos) << vent.err();
}

TEST(Faults, StoppedWorkerThatComesBackHasItsResultsDroppedAsDuplicates) {
  Farm farm;
  auto sink = farm.sink();
  auto a = farm.worker("a", {"--threads", "1", "--prefetch", "1"});
  auto b = farm.worker("b", {"--threads", "1", "--prefetch", "1"});
  auto vent = farm.ventilator(
      with({"--kernel", "sleep", "--tasks", "14", "--size", "400000"}, kFastLeases));
  ASSERT_TRUE(a.wait_for_log("registered", 10s)) << a.err();
  ASSERT_TRUE(b.wait_for_log("registered", 10s)) << b.err();
  std::this_thread::sleep_for(200ms);
  a.signal(SIGSTOP);  // holds a running task and a queued one
  std::this_thread::sleep_for(3s);  // declared lost after ~1 s; "b" runs its tasks again
  a.signal(SIGCONT);  // its stale results now arrive after "b"'s
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 14u);
  EXPECT_GE(r.retried(), 1u);
  EXPECT_GE(r.duplicates_dropped(), 1u);
  EXPECT_EQ(r.result_digest(), clean_digest(R"({"name": "s", "tasks": [
      {"kernel": "sleep", "count": 14, "size": 400000, "seed": 1}]})"));
}

TEST(Faults, PoisonTaskFailsAfterThreeAttemptsAndSparesTheRest5Workers) {
  Farm farm;
  auto sink = farm.sink();
  std::vector<Process> ws;
  for (int i = 0; i < 5; ++i) {
    ws.push_back(farm.worker("w" + std::to_string(i), {"--threads", "1"},
                             {"TASKFARM_TEST_CRASH_TASK=7"}));
  }
  auto vent = farm.ventilator(
      with({"--kernel", "sleep", "--tasks", "60", "--size", "2000"}, kFastLeases));
  EXPECT_EXIT_CODE(vent, 2, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 2, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_failed(), 1u);
  EXPECT_EQ(r.tasks_ok(), 59u) << "tasks that shared a worker with the poison task must survive";
  ASSERT_EQ(r.failures_size(), 1);
  EXPECT_EQ(r.failures(0).task_id(), 7u);
  EXPECT_EQ(r.failures(0).attempts(), 3u);
  EXPECT_NE(r.failures(0).error().find("lost"), std::string::npos) << r.failures(0).error();
  int crashed = 0;
  for (auto& w : ws) crashed += w.wait_for(10s) == std::optional<int>(128 + SIGKILL);
  EXPECT_EQ(crashed, 3);
}

TEST(Faults, LateJoinerGetsWorkAtOnce) {
  Farm farm;
  auto sink = farm.sink();
  auto early = farm.worker("early", {"--threads", "1"});
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "80", "--size", "20000"});
  std::this_thread::sleep_for(500ms);
  auto late = farm.worker("late", {"--threads", "1"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 80u);
  for (const auto& w : r.workers()) {
    // "early" ran ~25 alone in 0.5 s; the remaining ~55 are shared.
    if (w.id() == "late") {
      EXPECT_GE(w.tasks(), 20u);
    }
  }
  EXPECT_EQ(r.workers_size(), 2);
}

TEST(Faults, SigtermedWorkerHandsBackItsTasksAndNothingIsRetried) {
  Farm farm;
  auto sink = farm.sink();
  auto stays = farm.worker("stays", {"--threads", "2"});
  auto leaves = farm.worker("leaves", {"--threads", "2", "--prefetch", "8"});
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "100", "--size", "20000"});
  std::this_thread::sleep_for(400ms);
  leaves.signal(SIGTERM);
  EXPECT_EXIT_CODE(leaves, 0, 10s);
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 100u);
  EXPECT_EQ(r.retried(), 0u);
  EXPECT_EQ(r.duplicates_dropped(), 0u);
  EXPECT_NE(leaves.err().find("returned"), std::string::npos) << leaves.err();
}

TEST(Faults, HeterogeneousPoolSharesWorkBySpeed4And1Slots) {
  Farm farm;
  auto sink = farm.sink();
  auto fast = farm.worker("fast", {"--threads", "4"});
  auto slow = farm.worker("slow", {"--threads", "1"});
  std::this_thread::sleep_for(300ms);  // both connected before the batch starts
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "250", "--size", "10000"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 250u);
  double fast_share = 0;
  for (const auto& w : r.workers()) {
    if (w.id() == "fast") fast_share = w.tasks() / 250.0;
  }
  EXPECT_NEAR(fast_share, 0.8, 0.08);  // ideal split: 4 of 5 slots
}

}  // namespace
}  // namespace taskfarm::testing

namespace taskfarm::testing {
namespace {

TEST(Faults, ShortWorkerTimeoutCausesNoFalseLosses) {
  // The worker's own flags would have it beat every 5 s (--peer-timeout 30); the ventilator's
  // Welcome makes it beat often enough for a 0.6 s timeout, even while every slot runs a task
  // for 1 s and it sends nothing else (a loaded machine may stall it a few hundred ms).
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("w", {"--threads", "2", "--peer-timeout", "30"});
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "4", "--size", "1000000",
                               "--worker-timeout", "0.6"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, std::chrono::seconds(10));
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 4u);
  EXPECT_EQ(r.retried(), 0u);
  EXPECT_EQ(vent.err().find("lost"), std::string::npos) << vent.err();
}

}  // namespace
}  // namespace taskfarm::testing
