// Lease table, credits, re-issue and retry limits of the ventilator, driven by a manual clock.
#include "ventilator/dispatcher.h"

#include <gtest/gtest.h>

#include <set>

#include "common/text.h"

namespace taskfarm::ventilator {
namespace {

v1::WorkerInfo info(const std::string& id) {
  v1::WorkerInfo w;
  w.set_id(id);
  return w;
}

size_t count_tasks(const std::vector<Assignment>& as) {
  size_t n = 0;
  for (const auto& a : as) n += a.tasks.size();
  return n;
}

v1::Ack ack_of(uint64_t job, const std::vector<Issue>& tasks) {
  v1::Ack ack;
  ack.set_job_id(job);
  for (const auto& t : tasks) ack.add_done(t.task_id);
  return ack;
}

TEST(Dispatcher, SendsNothingWithoutCreditAndNoMoreThanCredit) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(7, 100);
  EXPECT_TRUE(d.assign().empty());  // no workers: no slow-joiner grab either
  (void)d.on_hello("w1", info("w1"), 3);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].tasks.size(), 3u);
  EXPECT_TRUE(d.assign().empty());  // credit used up
  EXPECT_TRUE(d.on_credit("w1", 2));
  EXPECT_EQ(count_tasks(d.assign()), 2u);
}

TEST(Dispatcher, WorkersWithTheSameIdGetDistinctNamesWhileRegistered) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  (void)d.on_hello("r1", info("gpu"), 1);
  (void)d.on_hello("r2", info("gpu"), 1);
  (void)d.on_hello("r3", info("gpu"), 1);
  EXPECT_EQ(d.worker_name("r1"), "gpu");
  EXPECT_EQ(d.worker_name("r2"), "gpu~2");
  EXPECT_EQ(d.worker_name("r3"), "gpu~3");
  // Registering again (after a partition), with the name it was given or its own: unchanged.
  (void)d.on_hello("r2", info("gpu~2"), 1);
  EXPECT_EQ(d.worker_name("r2"), "gpu~2");
  (void)d.on_hello("r1", info("gpu"), 1);
  EXPECT_EQ(d.worker_name("r1"), "gpu");
  // Once the first has gone, its id is free again.
  (void)d.on_unreachable("r1");
  (void)d.on_hello("r4", info("gpu"), 1);
  EXPECT_EQ(d.worker_name("r4"), "gpu");
  EXPECT_EQ(d.worker_name("nobody"), "");
  // Ids stay within the bound, whole UTF-8 characters only.
  const std::string long_id = std::string(kMaxWorkerIdBytes - 3, 'x') + "\u00e9";  // 2-byte é
  (void)d.on_hello("r5", info(long_id), 1);
  (void)d.on_hello("r6", info(long_id), 1);
  EXPECT_EQ(d.worker_name("r6"), std::string(kMaxWorkerIdBytes - 3, 'x') + "~2");
}

TEST(Dispatcher, SplitsWorkByCreditSoLateJoinersGetWorkAtOnce) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 1000);
  (void)d.on_hello("a", info("a"), 4);
  EXPECT_EQ(count_tasks(d.assign()), 4u);
  (void)d.on_hello("b", info("b"), 4);  // joins mid-batch
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].worker, "b");
  EXPECT_EQ(as[0].tasks.size(), 4u);
}

TEST(Dispatcher, AckedTasksCompleteTheJobExactlyOnce) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 5);
  (void)d.on_hello("a", info("a"), 10);
  auto as = d.assign();
  ASSERT_EQ(count_tasks(as), 5u);
  d.on_ack(ack_of(1, as[0].tasks));
  d.on_ack(ack_of(1, as[0].tasks));  // duplicate acks are harmless
  EXPECT_TRUE(d.job_done(1));
  EXPECT_EQ(d.job_acked(1), 5u);
  EXPECT_EQ(d.unresolved(), 0u);
}

TEST(Dispatcher, ReissuesTasksOfSilentWorkerWithNextAttempt) {
  ManualClock clock;
  DispatchPolicy p;
  p.worker_timeout_ms = 3000;
  Dispatcher d(p, clock);
  d.add_job(1, 4);
  (void)d.on_hello("dead", info("dead"), 4);
  ASSERT_EQ(count_tasks(d.assign()), 4u);
  (void)d.on_hello("alive", info("alive"), 10);
  clock.advance_ms(2000);
  EXPECT_TRUE(d.on_heartbeat("alive"));
  EXPECT_TRUE(d.expire().empty());
  EXPECT_EQ(d.workers(), 2u);
  clock.advance_ms(1500);  // "dead" silent for 3.5 s, "alive" for 1.5 s
  EXPECT_TRUE(d.expire().empty());
  EXPECT_EQ(d.workers(), 1u);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].worker, "alive");
  ASSERT_EQ(as[0].tasks.size(), 4u);
  for (const auto& t : as[0].tasks) EXPECT_EQ(t.attempt, 2u);
  EXPECT_EQ(d.reissued(), 4u);
  EXPECT_FALSE(d.on_credit("dead", 1));  // must register again
}

TEST(Dispatcher, GivesUpAfterMaxAttempts) {
  ManualClock clock;
  DispatchPolicy p;
  p.max_attempts = 2;
  p.worker_timeout_ms = 1000;
  Dispatcher d(p, clock);
  d.add_job(1, 1);
  std::vector<GiveUp> give_ups;
  for (int round = 0; round < 2; ++round) {
    const std::string w = "w" + std::to_string(round);
    (void)d.on_hello(w, info(w), 1);
    auto as = d.assign();
    ASSERT_EQ(count_tasks(as), 1u) << "round " << round;
    EXPECT_EQ(as[0].tasks[0].attempt, static_cast<uint32_t>(round + 1));
    clock.advance_ms(1500);
    give_ups = d.expire();
  }
  ASSERT_EQ(give_ups.size(), 1u);
  EXPECT_EQ(give_ups[0].task.task_id, 0u);
  EXPECT_EQ(give_ups[0].task.attempt, 2u);
  EXPECT_NE(give_ups[0].error.find("giving up"), std::string::npos);
  (void)d.on_hello("w9", info("w9"), 5);
  EXPECT_TRUE(d.assign().empty());  // a given-up task is never issued again
  v1::Ack ack;
  ack.set_job_id(1);
  ack.add_done(0);
  ack.add_failed(0);
  d.on_ack(ack);
  EXPECT_TRUE(d.job_done(1));
  EXPECT_EQ(d.job_failed(1), 1u);
}

TEST(Dispatcher, RetryAckReissuesOnlyAssignedTasks) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 2);
  (void)d.on_hello("a", info("a"), 2);
  ASSERT_EQ(count_tasks(d.assign()), 2u);
  v1::Ack ack;
  ack.set_job_id(1);
  ack.add_retry(1);
  d.on_ack(ack);
  d.on_ack(ack);  // a repeated retry does not issue the task twice
  EXPECT_TRUE(d.on_credit("a", 5));
  auto as = d.assign();
  ASSERT_EQ(count_tasks(as), 1u);
  EXPECT_EQ(as[0].tasks[0].task_id, 1u);
  EXPECT_EQ(as[0].tasks[0].attempt, 2u);
}

TEST(Dispatcher, GoodbyeReturnsUnstartedTasksWithoutAnAttempt) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 3);
  (void)d.on_hello("a", info("a"), 3);
  auto as = d.assign();
  ASSERT_EQ(count_tasks(as), 3u);
  v1::Goodbye bye;
  for (uint64_t id : {1u, 2u}) {
    auto* r = bye.add_returned();
    r->set_job_id(1);
    r->set_task_id(id);
  }
  d.on_goodbye("a", bye);
  EXPECT_FALSE(d.on_credit("b", 1));
  EXPECT_TRUE(d.on_credit("a", 10));  // a leaving worker gets nothing more
  EXPECT_TRUE(d.assign().empty());
  (void)d.on_hello("b", info("b"), 10);
  as = d.assign();
  ASSERT_EQ(count_tasks(as), 2u);
  for (const auto& t : as[0].tasks) EXPECT_EQ(t.attempt, 1u);
}

TEST(Dispatcher, LeavingWorkerThatDisconnectsGetsTimeForItsLastAcks) {
  ManualClock clock;
  DispatchPolicy p;
  p.worker_timeout_ms = 1000;
  Dispatcher d(p, clock);
  d.add_job(1, 2);
  (void)d.on_hello("a", info("a"), 2);
  auto as = d.assign();
  ASSERT_EQ(count_tasks(as), 2u);
  d.on_goodbye("a", v1::Goodbye{});  // both tasks running; it will finish them
  EXPECT_TRUE(d.on_unreachable("a").empty());
  d.on_ack(ack_of(1, {as[0].tasks[0]}));  // one ack arrives in time
  clock.advance_ms(1500);
  EXPECT_TRUE(d.expire().empty());
  EXPECT_EQ(d.reissued(), 1u);  // only the unacknowledged one is issued again
  (void)d.on_hello("b", info("b"), 5);
  auto again = d.assign();
  ASSERT_EQ(count_tasks(again), 1u);
  EXPECT_EQ(again[0].tasks[0].task_id, as[0].tasks[1].task_id);
}

TEST(Dispatcher, UnsendPutsTasksBackWithCredit) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 3);
  (void)d.on_hello("a", info("a"), 3);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  d.unsend(as[0]);
  auto again = d.assign();
  ASSERT_EQ(count_tasks(again), 3u);
  EXPECT_EQ(again[0].tasks[0].task_id, as[0].tasks[0].task_id);
  EXPECT_EQ(again[0].tasks[0].attempt, 1u);
}

TEST(Dispatcher, WindowBoundsUnresolvedTasks) {
  ManualClock clock;
  DispatchPolicy p;
  p.window = 10;
  Dispatcher d(p, clock);
  d.add_job(1, 1'000'000);
  (void)d.on_hello("a", info("a"), 1000);
  auto as = d.assign();
  EXPECT_EQ(count_tasks(as), 10u);
  EXPECT_EQ(d.unresolved(), 10u);
  d.on_ack(ack_of(1, as[0].tasks));
  EXPECT_EQ(count_tasks(d.assign()), 10u);
  EXPECT_EQ(d.unresolved(), 10u);
}

TEST(Dispatcher, TaskTimeoutReissuesHungTasks) {
  ManualClock clock;
  DispatchPolicy p;
  p.task_timeout_ms = 5000;
  p.worker_timeout_ms = 100000;
  Dispatcher d(p, clock);
  d.add_job(1, 1);
  (void)d.on_hello("a", info("a"), 1);
  ASSERT_EQ(count_tasks(d.assign()), 1u);
  clock.advance_ms(6000);
  EXPECT_TRUE(d.expire().empty());
  EXPECT_TRUE(d.on_credit("a", 1));
  auto as = d.assign();
  ASSERT_EQ(count_tasks(as), 1u);
  EXPECT_EQ(as[0].tasks[0].attempt, 2u);
}

TEST(Dispatcher, HigherPriorityJobGoesFirstAndEqualJobsShare) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 100, 0);
  d.add_job(2, 100, 5);
  (void)d.on_hello("a", info("a"), 10);
  auto as = d.assign();
  for (const auto& t : as[0].tasks) EXPECT_EQ(t.job_id, 2u);
  Dispatcher e(DispatchPolicy{}, clock);
  e.add_job(1, 100);
  e.add_job(2, 100);
  (void)e.on_hello("a", info("a"), 10);
  std::map<uint64_t, int> per_job;
  const auto shared = e.assign();
  ASSERT_EQ(shared.size(), 1u);
  for (const auto& t : shared[0].tasks) ++per_job[t.job_id];
  EXPECT_EQ(per_job[1], 5);
  EXPECT_EQ(per_job[2], 5);
}

TEST(Dispatcher, LastAttemptsRunAloneSoAPoisonTaskTakesNoInnocentTaskWithIt) {
  ManualClock clock;
  DispatchPolicy p;
  p.max_attempts = 2;
  p.worker_timeout_ms = 1000;
  Dispatcher d(p, clock);
  d.add_job(1, 3);
  (void)d.on_hello("a", info("a"), 3);
  ASSERT_EQ(count_tasks(d.assign()), 3u);
  clock.advance_ms(1500);
  (void)d.on_hello("b", info("b"), 10);
  EXPECT_TRUE(d.expire().empty());  // "a" lost: its 3 tasks go to their last attempt
  std::set<uint64_t> seen;
  for (int i = 0; i < 3; ++i) {
    auto as = d.assign();
    ASSERT_EQ(count_tasks(as), 1u) << "one last attempt at a time";
    EXPECT_EQ(as[0].tasks[0].attempt, 2u);
    EXPECT_TRUE(d.assign().empty()) << "nothing else while it runs";
    seen.insert(as[0].tasks[0].task_id);
    d.on_ack(ack_of(1, as[0].tasks));
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(d.job_done(1));
}

TEST(Dispatcher, LastAttemptGoesAloneThenNormalBatchesResume) {
  ManualClock clock;
  DispatchPolicy p;
  p.max_attempts = 2;
  p.worker_timeout_ms = 1000;
  Dispatcher d(p, clock);
  d.add_job(1, 1000);
  (void)d.on_hello("a", info("a"), 1);
  ASSERT_EQ(count_tasks(d.assign()), 1u);  // task 0 on "a"
  clock.advance_ms(1500);
  (void)d.on_hello("b", info("b"), 4);
  EXPECT_TRUE(d.expire().empty());  // "a" lost: task 0 to its last attempt
  auto first = d.assign();          // "b" is idle: it gets task 0 alone
  ASSERT_EQ(count_tasks(first), 1u);
  EXPECT_EQ(first[0].tasks[0].task_id, 0u);
  EXPECT_TRUE(d.on_credit("b", 4));
  EXPECT_TRUE(d.assign().empty());
  d.on_ack(ack_of(1, first[0].tasks));
  EXPECT_GT(count_tasks(d.assign()), 1u);  // back to normal batches
}

}  // namespace
}  // namespace taskfarm::ventilator

namespace taskfarm::ventilator {
namespace {

TEST(Dispatcher, BigPayloadsAreBatchedByBytes) {
  ManualClock clock;
  DispatchPolicy p;
  p.max_batch_bytes = 8 << 20;
  Dispatcher d(p, clock);
  d.add_job(1, 100, 0, 0, 3 << 20);  // 3 MiB per task
  (void)d.on_hello("a", v1::WorkerInfo{}, 50);
  auto as = d.assign();
  ASSERT_FALSE(as.empty());
  for (const auto& a : as) EXPECT_LE(a.tasks.size(), 2u);  // 2 x 3 MiB <= 8 MiB < 3 x 3 MiB
  Dispatcher huge(p, clock);
  huge.add_job(1, 3, 0, 0, 100 << 20);  // bigger than a batch: still one per message
  (void)huge.on_hello("a", v1::WorkerInfo{}, 3);
  auto hs = huge.assign();
  ASSERT_FALSE(hs.empty());
  EXPECT_EQ(hs[0].tasks.size(), 1u);
}

}  // namespace
}  // namespace taskfarm::ventilator

namespace taskfarm::ventilator {
namespace {

TEST(Dispatcher, HelloAgainFromTheSameProcessKeepsItsTasks) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 10);
  (void)d.on_hello("a", v1::WorkerInfo{}, 3);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  ASSERT_EQ(as[0].tasks.size(), 3u);
  // After a partition: a burst of Hellos from the same routing id must not re-issue anything.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(d.on_hello("a", v1::WorkerInfo{}, 2).empty());
  EXPECT_EQ(d.reissued(), 0u);
  auto more = d.assign();
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].tasks.size(), 2u);  // credit restarts from the last Hello
  EXPECT_EQ(more[0].tasks[0].task_id, 3u);
}

}  // namespace
}  // namespace taskfarm::ventilator

namespace taskfarm::ventilator {
namespace {

v1::WorkerInfo offering(const std::string& id, std::initializer_list<const char*> kernels) {
  v1::WorkerInfo w;
  w.set_id(id);
  for (const char* k : kernels) w.add_kernels(k);
  return w;
}

TEST(Dispatcher, TasksGoOnlyToWorkersOfferingTheirKernel) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(JobShape{1, 0, 0, {{"gpu.fft", 5, 0}, {"noop", 5, 0}}});
  (void)d.on_hello("cpu", offering("cpu", {"noop", "sleep"}), 100);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  ASSERT_EQ(as[0].tasks.size(), 5u);
  for (const auto& t : as[0].tasks) EXPECT_GE(t.task_id, 5u) << "a gpu.fft task on the cpu";
  EXPECT_EQ(d.waiting_reason(1), "no connected worker offers kernel 'gpu.fft'");
  EXPECT_FALSE(d.offered("gpu.fft"));
  (void)d.on_hello("gpu", offering("gpu", {"gpu.fft", "noop"}), 100);
  EXPECT_TRUE(d.offered("gpu.fft"));
  auto more = d.assign();
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].worker, "gpu");
  EXPECT_EQ(more[0].tasks.size(), 5u);
  for (const auto& t : more[0].tasks) EXPECT_LT(t.task_id, 5u);
  EXPECT_EQ(d.waiting_reason(1), "");
}

TEST(Dispatcher, LostTasksAreReissuedOnlyToCapableWorkers) {
  ManualClock clock;
  DispatchPolicy p;
  p.worker_timeout_ms = 1000;
  Dispatcher d(p, clock);
  d.add_job(JobShape{1, 0, 0, {{"plug.k", 3, 0}}});
  (void)d.on_hello("a", offering("a", {"plug.k"}), 3);
  ASSERT_EQ(count_tasks(d.assign()), 3u);
  clock.advance_ms(1500);
  (void)d.on_hello("b", offering("b", {"noop"}), 10);
  EXPECT_TRUE(d.expire().empty());  // "a" lost
  EXPECT_TRUE(d.assign().empty()) << "b cannot run plug.k";
  EXPECT_EQ(d.waiting_reason(1), "no connected worker offers kernel 'plug.k'");
  (void)d.on_hello("c", offering("c", {"plug.k"}), 10);
  auto as = d.assign();
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].worker, "c");
  EXPECT_EQ(as[0].tasks.size(), 3u);
  for (const auto& t : as[0].tasks) EXPECT_EQ(t.attempt, 2u);
}

TEST(Dispatcher, WaitingReasonsSayWhyAJobDoesNotMove) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 10);
  EXPECT_EQ(d.waiting_reason(1), "no worker connected");
  d.add_job(2, 10, /*priority=*/5);
  (void)d.on_hello("a", offering("a", {"noop"}), 4);
  (void)d.assign();  // all four to the priority-5 job
  EXPECT_EQ(d.waiting_reason(1), "workers busy with higher-priority jobs");
  EXPECT_EQ(d.waiting_reason(2), "");
}

}  // namespace
}  // namespace taskfarm::ventilator

namespace taskfarm::ventilator {
namespace {

// Restarts (issue 14): a job handed over with the tasks acknowledged before.
TEST(DispatcherRestart, FreshTasksSkipTheDoneSetAndAcksOfTasksNeverIssuedCount) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  JobShape shape;
  shape.id = 1;
  shape.entries = {{"", 30, 0, 0}};
  shape.done.insert_range(0, 10);
  shape.done.insert_range(15, 20);
  d.add_job(shape);
  EXPECT_EQ(d.job_acked(1), 15u);
  (void)d.on_hello("w", info("w"), 100);
  std::set<uint64_t> issued;
  for (const auto& a : d.assign()) {
    for (const auto& t : a.tasks) issued.insert(t.task_id);
  }
  std::set<uint64_t> expected;
  for (uint64_t t = 10; t < 15; ++t) expected.insert(t);
  for (uint64_t t = 20; t < 30; ++t) expected.insert(t);
  EXPECT_EQ(issued, expected);
  // A worker of the ventilator's previous life finished task 29 too: counted once.
  v1::Ack ack;
  ack.set_job_id(1);
  for (uint64_t t : expected) ack.add_done(t);
  ack.add_done(29);
  (void)d.on_ack(ack);
  EXPECT_TRUE(d.job_done(1));
  EXPECT_EQ(d.job_acked(1), 30u);
}

TEST(DispatcherRestart, AckOfATaskNotIssuedYetKeepsItFromBeingIssued) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 10);
  v1::Ack ack;
  ack.set_job_id(1);
  ack.add_done(0);
  ack.add_done(1);
  ack.add_done(5);
  (void)d.on_ack(ack);
  (void)d.on_hello("w", info("w"), 100);
  std::set<uint64_t> issued;
  for (const auto& a : d.assign()) {
    for (const auto& t : a.tasks) issued.insert(t.task_id);
  }
  EXPECT_EQ(issued, (std::set<uint64_t>{2, 3, 4, 6, 7, 8, 9}));
}

TEST(DispatcherRestart, LeasesOfAWorkerAndTasksItNoLongerHas) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  d.add_job(1, 6);
  (void)d.on_hello("a", info("a"), 3);
  (void)d.on_hello("b", info("b"), 3);
  std::map<std::string, std::vector<uint64_t>> by_worker;
  for (const auto& a : d.assign()) {
    for (const auto& t : a.tasks) by_worker[a.worker].push_back(t.task_id);
  }
  EXPECT_EQ(d.leases_of("a").at(1), by_worker["a"]);
  EXPECT_TRUE(d.leases_of("nobody").empty());
  d.not_held("b", 1, by_worker["a"]);  // not b's: nothing happens
  EXPECT_EQ(d.leases_of("a").at(1).size(), 3u);
  d.not_held("a", 1, by_worker["a"]);
  EXPECT_TRUE(d.leases_of("a").empty());
  EXPECT_TRUE(d.on_credit("b", 3));
  auto again = d.assign();
  ASSERT_EQ(again.size(), 1u);
  ASSERT_EQ(again[0].tasks.size(), 3u);
  for (const auto& t : again[0].tasks) EXPECT_EQ(t.attempt, 1u);  // not counted as an attempt
}

v1::WorkerInfo slots_of(const std::string& id, uint32_t slots) {
  v1::WorkerInfo w;
  w.set_id(id);
  w.set_slots(slots);
  w.add_kernels("sleep");
  return w;
}

// What a worker learnt on tiny tasks (a huge credit window) does not let it hoard the long
// tasks of the next job: queued work is bounded by time once the tasks are timed.
TEST(Dispatcher, CreditIsBoundedByTimeNotByTheWindowAWorkerLearnt) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  JobShape job;
  job.id = 1;
  job.entries = {{"sleep", 400, 0, 50000}};
  d.add_job(job);
  (void)d.on_hello("a", slots_of("a", 2), 1000);
  auto first = d.assign();
  ASSERT_EQ(count_tasks(first), 2u) << "unknown on this worker: one task per slot explores";
  clock.advance_ms(50);
  ASSERT_TRUE(d.on_timings("a", {Timing{"sleep", 50000, 2, 100'000'000}}));
  v1::Ack ack = ack_of(1, first[0].tasks);
  (void)d.on_ack(ack);
  // Known now: 50 ms tasks. Two run, and at most about one more waits, whatever the credit.
  const auto more = d.assign();
  EXPECT_LE(count_tasks(more), 3u);
  EXPECT_GE(count_tasks(more), 2u);
}

// A copy of a straggler is its next attempt: a task that crashes every worker stops at
// max_attempts even with copies, and its last attempt never gets one.
TEST(Dispatcher, BackupCopiesCountAsAttemptsAndNeverDuplicateTheLast) {
  ManualClock clock;
  DispatchPolicy p;
  p.max_attempts = 3;
  p.worker_timeout_ms = 100000;  // the holders never time out in this test
  Dispatcher d(p, clock);
  d.add_job(JobShape{1, 0, 0, {{"sleep", 1, 0, 1000}}});
  (void)d.on_hello("a", slots_of("a", 1), 1);
  (void)d.on_hello("b", slots_of("b", 1), 1);
  (void)d.on_hello("c", slots_of("c", 1), 1);
  for (const char* w : {"a", "b", "c"}) ASSERT_TRUE(d.on_timings(w, {Timing{"sleep", 1000, 1, 1'000'000}}));
  auto first = d.assign();
  ASSERT_EQ(count_tasks(first), 1u);
  EXPECT_EQ(first[0].tasks[0].attempt, 1u);
  clock.advance_ms(100);  // overdue: 100 ms for a 1 ms task
  auto copy = d.assign();
  ASSERT_EQ(count_tasks(copy), 1u);
  EXPECT_TRUE(copy[0].tasks[0].backup);
  EXPECT_EQ(copy[0].tasks[0].attempt, 2u);
  clock.advance_ms(100);
  EXPECT_TRUE(d.assign().empty()) << "attempt 3 is the last: it runs alone, never as a copy";
  EXPECT_EQ(d.backups(), 1u);
  // The copy's result arrives first: the other copy is cancelled where it still runs.
  v1::Ack ack;
  ack.set_job_id(1);
  ack.add_done(0);
  (void)d.on_ack(ack);
  const auto cancels = d.take_cancels();
  EXPECT_EQ(cancels.size(), 2u);
  EXPECT_TRUE(d.job_done(1));
}

}  // namespace
}  // namespace taskfarm::ventilator
