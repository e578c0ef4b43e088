// Mixed pools with real processes on one CPU: TASKFARM_TEST_SLOWDOWN makes one worker slower
// per kernel and size, so a batch of two task classes has an ideal split that is not "by
// speed". The mixed pool must finish within 1.10x of the ideal split computed from the rates
// measured on each worker alone, and before the fastest worker alone would. And the window a
// worker learns on short tasks must not make it hoard the next job's long ones.
#include <fmt/core.h>

#include "farm.h"
#include "service.h"
#include "ventilator/split.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

// Sleep tasks: they cost no CPU, so two workers on a 2-core CI machine time well.
constexpr int64_t kShortUs = 10000, kLongUs = 30000;
const std::string kSlowdown = "TASKFARM_TEST_SLOWDOWN=sleep:10000=1.5,sleep:30000=6";

std::string job_of(int shorts, int longs) {
  std::string job = R"({"name": "hetero", "tasks": [)";
  if (shorts) job += fmt::format(R"({{"kernel": "sleep", "count": {}, "size": {}}})", shorts, kShortUs);
  if (shorts && longs) job += ",";
  if (longs) job += fmt::format(R"({{"kernel": "sleep", "count": {}, "size": {}}})", longs, kLongUs);
  return job + "]}";
}

// Runs `job` on the given workers (env per worker). Returns: the report.
v1::Report run(const std::string& job, const std::vector<std::vector<std::string>>& envs) {
  Farm farm;
  auto sink = farm.sink();
  std::vector<Process> ws;
  for (size_t i = 0; i < envs.size(); ++i) {
    ws.push_back(farm.worker("w" + std::to_string(i), {"--threads", "1"}, envs[i]));
  }
  auto vent = farm.ventilator({"--job", farm.write("job.json", job), "--min-workers",
                               std::to_string(envs.size())});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  return farm.report();
}

// Returns: one task's time on one slot of a worker, from its busy time in a short run.
double task_ms(const std::string& job, const std::vector<std::string>& env, int tasks) {
  const auto r = run(job, {env});
  EXPECT_EQ(r.workers_size(), 1);
  return r.workers(0).busy_s() * 1e3 / tasks;
}

TEST(Hetero, MixedPoolIsWithinTenPercentOfTheIdealSplitOfMeasuredRates) {
  // Rates measured on each worker alone: the fast one, and the one slowed 1.5x on short tasks
  // and 6x on long ones (its comparative advantage is the short tasks).
  const double fast_short = task_ms(job_of(5, 0), {}, 5);
  const double fast_long = task_ms(job_of(0, 5), {}, 5);
  const double slow_short = task_ms(job_of(5, 0), {kSlowdown}, 5);
  const double slow_long = task_ms(job_of(0, 3), {kSlowdown}, 3);
  ASSERT_GT(slow_long, 4 * fast_long) << "the slowdown hook works";
  // Enough tasks that one task more or less on the slow worker (180 ms) is a few percent: the
  // ideal split is fractional, a real one whole tasks.
  const int shorts = 120, longs = 120;
  const auto ideal = ventilator::plan_split({{fast_short, fast_long}, {slow_short, slow_long}},
                                            {0, 0}, {double(shorts), double(longs)});
  ASSERT_TRUE(ideal.feasible);
  const double fast_alone = shorts * fast_short + longs * fast_long;
  const auto mix = run(job_of(shorts, longs), {{}, {kSlowdown}});
  EXPECT_EQ(mix.tasks_ok(), 240u);
  const double mix_ms = mix.elapsed_s() * 1e3;
  printf("hetero: mix %.0f ms, ideal %.0f ms (%.3fx), fast worker alone %.0f ms (%.3fx)\n", mix_ms,
         ideal.makespan, mix_ms / ideal.makespan, fast_alone, mix_ms / fast_alone);
  // 1.10x, and a few milliseconds for the round trips a real farm has.
  EXPECT_LE(mix_ms, 1.10 * ideal.makespan + 30) << "ideal " << ideal.makespan << " ms";
  EXPECT_LE(mix_ms, fast_alone);
}

// Seen as a new user: after a job of short tasks, a job of 50 ms tasks went all to one worker
// (10 s instead of 5 s), and a priority job of 4 tasks waited 9 s behind it.
TEST(Hetero, AWindowLearntOnShortTasksDoesNotHoardLongOnesNorDelayAPriorityJob) {
  Farm farm;
  Service svc(farm, 2, {}, {}, {"--threads", "2"});
  auto demo = svc.client({"submit", farm.write("short.json", R"({"name": "short",
      "tasks": [{"kernel": "noop", "count": 20000}]})"), "--wait", "-q"}, "short");
  ASSERT_EQ(demo.wait_for(0s), std::optional<int>(0)) << demo.err();
  const std::string long_job = svc.submit(farm.write("long.json", R"({"name": "long",
      "tasks": [{"kernel": "sleep", "count": 80, "size": 50000}]})"));
  std::this_thread::sleep_for(300ms);
  const auto t0 = std::chrono::steady_clock::now();
  auto urgent = svc.client({"submit", farm.write("urgent.json", R"({"name": "urgent",
      "priority": 10, "tasks": [{"kernel": "sleep", "count": 4, "size": 1000}]})"), "--wait", "-q"},
                           "urgent");
  ASSERT_EQ(urgent.wait_for(0s), std::optional<int>(0)) << urgent.err();
  const auto urgent_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(urgent_s, 1.0) << "the priority job waited behind the queued long tasks";
  auto wait = svc.client({"wait", long_job, "-q", "--report", farm.path("long.report.json")}, "long");
  ASSERT_EQ(wait.wait_for(0s), std::optional<int>(0)) << wait.err();
  v1::Report rep;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("long.report.json")), &rep).ok());
  ASSERT_EQ(rep.workers_size(), 2) << "both workers ran the long job";
  for (const auto& w : rep.workers()) EXPECT_GE(w.tasks(), 25u) << w.id() << " got too few";
  // 80 x 50 ms on 4 slots is 1 s.
  EXPECT_LT(rep.elapsed_s(), 1.6);
  printf("long job after short ones: %.2f s (%u + %u tasks); urgent job %.2f s\n", rep.elapsed_s(),
         rep.workers(0).tasks(), rep.workers(1).tasks(), urgent_s);
}

}  // namespace
}  // namespace taskfarm::testing
