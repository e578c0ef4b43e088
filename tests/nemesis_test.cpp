// The crash test of issue 14: a seeded nemesis kills the ventilator, the sink, both, or a
// worker with SIGKILL at random moments and starts them again (same --state), while several
// jobs run at once and one is cancelled. Afterwards every job's report is whole (ok + failed =
// total) with the digest of a clean run, the cancelled one is cancelled, and no process is left.
//
// CI runs 24 restarts (about a minute). A soak by hand:
//   TASKFARM_NEMESIS_RESTARTS=300 TASKFARM_NEMESIS_SEED=7 build/bin/nemesis_test
#include <dirent.h>

#include <cstdlib>
#include <random>

#include "common/job_state.h"
#include "durable.h"

namespace taskfarm::testing {
namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Jobs of different shapes; each JSON may be submitted several times (same digest).
const std::vector<std::string> kJobs = {
    R"({ "name": "sleepy", "tasks": [
         { "kernel": "sleep", "count": 400, "size": 20000, "seed": 1 },
         { "kernel": "saxpy", "count": 200, "size": 10000, "seed": 2 } ] })",
    R"({ "name": "mixed", "priority": 1, "tasks": [
         { "kernel": "sort", "count": 150, "size": 5000, "seed": 3 },
         { "kernel": "montecarlo_pi", "count": 150, "size": 20000, "seed": 4 },
         { "kernel": "sleep", "count": 200, "size": 10000, "seed": 5 } ] })",
    R"({ "name": "many-small", "tasks": [
         { "kernel": "noop", "count": 20000 },
         { "kernel": "mandelbrot", "count": 64, "size": 256, "seed": 6 } ] })",
};
// The one to cancel: long enough to be running when it is.
const std::string kCancelled =
    R"({ "name": "to-cancel", "tasks": [ { "kernel": "sleep", "count": 5000, "size": 20000 } ] })";

// Returns: processes whose command line mentions `dir` (what a test started there).
int processes_mentioning(const std::string& dir) {
  int n = 0;
  DIR* proc = opendir("/proc");
  if (!proc) return 0;
  while (dirent* e = readdir(proc)) {
    const std::string name = e->d_name;
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = read_file("/proc/" + name + "/cmdline");
    if (cmd.find(dir) != std::string::npos && std::to_string(getpid()) != name) ++n;
  }
  closedir(proc);
  return n;
}

TEST(Nemesis, JobsSurviveRandomCrashesOfEveryRole) {
  const uint64_t seed = env_or("TASKFARM_NEMESIS_SEED", 14);
  const uint64_t wanted = env_or("TASKFARM_NEMESIS_RESTARTS", 24);
  std::mt19937_64 rng(seed);
  auto between = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::map<std::string, std::string> digests;
  for (const auto& j : kJobs) digests[j] = clean_digest_cached(j);

  Farm farm;
  Head head(farm, {});
  head.start_sink();
  head.start_vent();
  for (int i = 0; i < 3; ++i) head.add_worker();

  std::map<std::string, std::string> jobs;  // id -> its JSON
  auto submit = [&](const std::string& json) {
    for (int tries = 0; tries < 20; ++tries) {  // the service may be down this moment
      auto p = head.client({"submit", farm.write("job.json", json)}, "submit");
      if (p.wait_for(0s) == std::optional<int>(0)) {
        std::string id = p.out();
        while (!id.empty() && id.back() == '\n') id.pop_back();
        return id;
      }
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "could not submit";
    return std::string();
  };
  for (size_t i = 0; i < kJobs.size(); ++i) jobs[submit(kJobs[i])] = kJobs[i];
  const std::string cancelled = submit(kCancelled);
  bool cancel_done = false;

  int vent_crashes = 0, sink_crashes = 0, both = 0, worker_crashes = 0;
  uint64_t restarts = 0;
  while (restarts < wanted) {
    std::this_thread::sleep_for(std::chrono::milliseconds(between(150, 900)));
    const int action = between(0, 9);
    const auto down = std::chrono::milliseconds(between(0, 800));
    if (action < 3) {  // the ventilator
      head.crash_vent();
      std::this_thread::sleep_for(down);
      head.start_vent();
      ++vent_crashes;
    } else if (action < 6) {  // the sink
      head.crash_sink();
      std::this_thread::sleep_for(down);
      head.start_sink();
      ++sink_crashes;
    } else if (action < 8) {  // both at once
      head.crash_vent();
      head.crash_sink();
      std::this_thread::sleep_for(down);
      if (between(0, 1)) {
        head.start_sink();
        head.start_vent();
      } else {
        head.start_vent();
        head.start_sink();
      }
      ++both;
    } else {  // a worker, replaced by a new one
      auto& ws = head.workers();
      std::vector<Process*> alive;
      for (auto& w : ws) {
        if (w.running()) alive.push_back(&w);
      }
      if (!alive.empty()) Head::crash(*alive[static_cast<size_t>(between(0, static_cast<int>(alive.size()) - 1))]);
      head.add_worker();
      ++worker_crashes;
    }
    ++restarts;
    // More concurrent jobs along the way, and the cancel once some crashes happened.
    if (restarts % 6 == 0) {
      const std::string& json = kJobs[restarts / 6 % kJobs.size()];
      jobs[submit(json)] = json;
    }
    if (!cancel_done && restarts >= wanted / 3) {
      auto p = head.client({"cancel", cancelled}, "cancel");
      cancel_done = p.wait_for(0s) == std::optional<int>(0);
    }
  }
  while (!cancel_done) {
    auto p = head.client({"cancel", cancelled}, "cancel");
    cancel_done = p.wait_for(0s) == std::optional<int>(0);
    if (!cancel_done) {
      // Finished before the cancel came: fine, it is checked like the others.
      auto st = head.status(cancelled);
      if (st && job_state_final(st->state())) break;
      std::this_thread::sleep_for(200ms);
    }
  }

  // Every job ends, with its whole report.
  for (const auto& [id, json] : jobs) {
    auto waiter = head.client({"wait", id, "-q"}, "wait", 5);
    EXPECT_EQ(waiter.wait_for(0s), std::optional<int>(0)) << id << ": " << waiter.err();
    auto st = head.status(id);
    ASSERT_TRUE(st.has_value()) << id;
    EXPECT_EQ(st->state(), v1::JOB_DONE) << id;
    ASSERT_TRUE(st->has_report()) << id;
    const v1::Report& r = st->report();
    EXPECT_EQ(r.tasks_ok() + r.tasks_failed(), r.tasks_total()) << id;
    EXPECT_EQ(r.tasks_failed(), 0u) << id;
    EXPECT_EQ(r.result_digest(), digests[json]) << id << " (" << r.job() << ")";
    const v1::Report written = head.job_report(id);
    EXPECT_EQ(written.result_digest(), digests[json]) << id;
    EXPECT_EQ(written.tasks_ok(), r.tasks_ok()) << id;
  }
  for (int i = 0; i < 600; ++i) {
    auto st = head.status(cancelled);
    if (st && job_state_final(st->state()) && st->has_report()) break;
    std::this_thread::sleep_for(100ms);
  }
  auto st = head.status(cancelled);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->state() == v1::JOB_CANCELLED || st->state() == v1::JOB_DONE)
      << job_state_name(st->state());
  EXPECT_TRUE(st->has_report()) << "the cancelled job's partial report";

  head.stop();
  for (int i = 0; i < 50 && processes_mentioning(farm.path("")) > 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(processes_mentioning(farm.path("")), 0) << "processes left behind";
  std::cout << "nemesis seed " << seed << ": survived " << restarts << " crashes (" << vent_crashes
            << " ventilator, " << sink_crashes << " sink, " << both << " both, "
            << worker_crashes << " worker) over " << jobs.size() + 1 << " jobs" << std::endl;
  RecordProperty("crashes_survived", static_cast<int>(restarts));
}

}  // namespace
}  // namespace taskfarm::testing
