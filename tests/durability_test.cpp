// A head node that survives crashes (issue 14), with the real binaries: the ventilator, the sink
// or both killed with SIGKILL mid-job and started again with the same --state; what happens
// without --state (a clear error or a re-run, never a hang); a sink that is gone; a state
// folder that is full or read-only at start, and one that fills up mid-job.
#include <sched.h>
#include <sys/mount.h>

#include "durable.h"

namespace taskfarm::testing {
namespace {

// About 1.5 s of work for 2 workers x 2 threads: long enough to crash a role mid-job.
constexpr const char* kJob = R"({ "name": "durable", "tasks": [
  { "kernel": "sleep", "count": 300, "size": 15000, "seed": 3 },
  { "kernel": "saxpy", "count": 100, "size": 20000, "seed": 4 } ] })";
constexpr uint64_t kJobTasks = 400;

void expect_clean(const v1::Report& r, const std::string& digest) {
  EXPECT_EQ(r.tasks_ok() + r.tasks_failed(), r.tasks_total());
  EXPECT_EQ(r.tasks_total(), kJobTasks);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_EQ(r.result_digest(), digest);
  EXPECT_EQ(r.state(), "done");
}

// Runs a job on a job service, crashes what `crash` says when it is about half done, waits
// `down` before starting it again, and checks that `taskfarm wait`, started before the crash,
// gets the clean run's report.
void crash_mid_job(bool vent, bool sink, std::chrono::milliseconds down) {
  const std::string digest = clean_digest_cached(kJob);
  Farm farm;
  Head head(farm, {});
  head.start_sink();
  head.start_vent();
  head.add_worker();
  head.add_worker();
  const std::string id = head.submit(kJob, "job");
  auto waiter = head.client_async({"wait", id, "--report", farm.path("waited.json"), "-q"}, "wait");
  ASSERT_TRUE(head.wait_progress(id, kJobTasks / 4)) << head.vent().err();
  if (vent) head.crash_vent();
  if (sink) head.crash_sink();
  std::this_thread::sleep_for(down);
  if (sink) head.start_sink();
  if (vent) head.start_vent();
  EXPECT_EXIT_CODE(waiter, 0, 90s);
  expect_clean(head.job_report(id), digest);
  v1::Report waited;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("waited.json")),
                                                          &waited).ok());
  expect_clean(waited, digest);
  auto st = head.status(id);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->state(), v1::JOB_DONE);
  head.stop();
}

TEST(Durability, VentilatorKilledMidJobContinuesAndWaitRidesOverTheRestart) {
  // Down for longer than the client's --timeout 1: `taskfarm wait` sees no answer, goes on.
  crash_mid_job(/*vent=*/true, /*sink=*/false, 2500ms);
}

TEST(Durability, SinkKilledMidJobLosesNoResult) {
  crash_mid_job(/*vent=*/false, /*sink=*/true, 1500ms);
}

TEST(Durability, BothKilledAtOnceThenBothBack) {
  crash_mid_job(/*vent=*/true, /*sink=*/true, 1500ms);
}

TEST(Durability, OneShotBatchWithStateContinuesAfterEachRoleRestarts) {
  const std::string digest = clean_digest_cached(kJob);
  Farm farm;
  Head head(farm, {.serve = false});
  const std::string job = farm.write("job.json", kJob);
  head.start_sink();
  head.add_worker();
  head.add_worker();
  head.start_vent({"--job", job});
  std::this_thread::sleep_for(700ms);
  head.crash_vent();
  head.start_vent({"--job", job});  // the same command line again: the batch continues
  std::this_thread::sleep_for(500ms);
  head.crash_sink();
  std::this_thread::sleep_for(500ms);
  head.start_sink();
  EXPECT_EXIT_CODE(head.vent(), 0, 60s);
  EXPECT_EXIT_CODE(head.sink(), 0, 10s);
  expect_clean(farm.report(), digest);
  for (auto& w : head.workers()) EXPECT_EXIT_CODE(w, 0, 10s);  // the batch's end stops them
}

TEST(Durability, OneShotFolderWithAnotherUnfinishedBatchIsRefused) {
  Farm farm;
  Head head(farm, {.serve = false, .sink_state = false});
  head.start_sink();
  head.start_vent({"--kernel", "sleep", "--tasks", "50", "--size", "100000"});
  ASSERT_TRUE(head.vent().wait_for_log("tasks on", 10s)) << head.vent().err();
  std::this_thread::sleep_for(300ms);
  head.crash_vent();
  auto other = head.start_vent({"--kernel", "noop", "--tasks", "5"}).wait_for(20s);
  EXPECT_EQ(other, std::optional<int>(1)) << head.vent().err();
  EXPECT_NE(head.vent().err().find("holds the unfinished batch"), std::string::npos)
      << head.vent().err();
}

TEST(Durability, OneShotVentilatorRestartedWithoutStateGetsAOneLineError) {
  Farm farm;
  Head head(farm, {.serve = false, .sink_state = false, .vent_state = false});
  head.start_sink();
  head.add_worker();
  head.start_vent({"--job", farm.write("job.json", kJob)});
  std::this_thread::sleep_for(500ms);
  head.crash_vent();
  // A new ventilator knows nothing of the old batch: the busy one-shot sink refuses its batch.
  Process& v = head.start_vent({"--job", farm.path("job.json")});
  EXPECT_EXIT_CODE(v, 1, 20s);
  const std::string err = v.err();
  EXPECT_NE(err.find("taskfarm-ventilator: error: refused by the sink: this one-shot sink is busy"),
            std::string::npos)
      << err;
  head.sink().signal(SIGTERM);
  EXPECT_EXIT_CODE(head.sink(), 130, 10s);  // its batch ends interrupted
}

TEST(Durability, SinkRestartedWithoutStateMakesTheJobRunAgainFromTheStart) {
  const std::string digest = clean_digest_cached(kJob);
  Farm farm;
  Head head(farm, {.sink_state = false});
  head.start_sink();
  head.start_vent();
  head.add_worker();
  head.add_worker();
  const std::string id = head.submit(kJob, "job");
  ASSERT_TRUE(head.wait_progress(id, kJobTasks / 4));
  head.crash_sink();
  head.start_sink();
  auto waiter = head.client({"wait", id, "-q"}, "wait", 5);
  EXPECT_EQ(waiter.wait_for(0s), std::optional<int>(0)) << waiter.err();
  const v1::Report r = head.job_report(id);
  expect_clean(r, digest);
  EXPECT_NE(head.vent().err().find("running the job again from the start"), std::string::npos)
      << head.vent().err();
  head.stop();
}

TEST(Durability, MissingSinkIsNamedAndWorkersLeaveAtOnce) {
  Farm farm;
  Head head(farm, {.sink_state = false, .vent_state = false});
  head.start_sink();
  head.start_vent();
  Process& w = head.add_worker({"--threads", "2"});
  const std::string id = head.submit(
      R"({"name": "long", "tasks": [{"kernel": "sleep", "count": 2000, "size": 20000}]})", "job");
  ASSERT_TRUE(head.wait_progress(id, 10));
  head.crash_sink();
  std::string reason;
  for (int i = 0; i < 100 && reason.find("no sink at") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    if (auto st = head.status(id)) reason = st->reason();
  }
  EXPECT_NE(reason.find("no sink at " + head.control() + " (last heard"), std::string::npos)
      << reason;
  // The worker holds results it cannot deliver: it leaves at once all the same.
  const auto t0 = std::chrono::steady_clock::now();
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(w.err().find("the sink is unreachable"), std::string::npos) << w.err();
  head.vent().signal(SIGTERM);
  EXPECT_EXIT_CODE(head.vent(), 0, 10s);
}

// ------------------------------------------------------------------ full and read-only disks

// Runs the test in a mount namespace of its own, where it may mount a small tmpfs. Returns:
// why it cannot ("" when it can).
std::string private_mounts() {
  if (geteuid() != 0) return "needs root to mount a small file system";
  if (unshare(CLONE_NEWNS) != 0) return std::string("unshare(CLONE_NEWNS): ") + strerror(errno);
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return std::string("mount --make-rprivate /: ") + strerror(errno);
  }
  return "";
}

// A small tmpfs, unmounted before the Farm removes its folder.
struct Tmpfs {
  std::string dir;
  Tmpfs(std::string d, const std::string& options) : dir(std::move(d)) {
    std::filesystem::create_directories(dir);
    mounted = mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
    EXPECT_TRUE(mounted) << strerror(errno);
  }
  ~Tmpfs() {
    if (mounted) umount2(dir.c_str(), MNT_DETACH);
  }
  bool mounted = false;
};

TEST(Durability, FullOrReadOnlyStateFolderIsAOneLineErrorAtStart) {
  if (auto why = private_mounts(); !why.empty()) GTEST_SKIP() << why;
  Farm farm;
  const std::string full = farm.path("full"), ro = farm.path("ro");
  Tmpfs full_fs(full, "size=64k"), ro_fs(ro, "size=1m");
  ASSERT_TRUE(full_fs.mounted && ro_fs.mounted);
  {
    std::ofstream filler(full + "/filler", std::ios::binary);
    filler << std::string(64 << 10, 'x');  // as much as fits
  }
  ASSERT_EQ(mount("none", ro.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << strerror(errno);
  struct Case {
    std::string name, dir, reason;
  };
  for (const Case& c : {Case{"sink-full", full, "No space left on device"},
                        Case{"sink-ro", ro, "Read-only file system"}}) {
    Process p({bin("taskfarm-sink"), "--serve", "--bind", "ipc://" + farm.path(c.name),
               "--control", "ipc://" + farm.path(c.name + "-ctl"), "--results-service", "off",
               "--results-dir", farm.path("jobs"), "--state", c.dir + "/sink"},
              farm.path(c.name));
    EXPECT_EXIT_CODE(p, 1, 10s);
    const std::string err = p.err();
    EXPECT_NE(err.find("taskfarm-sink: error: --state " + c.dir + "/sink"), std::string::npos)
        << err;
    EXPECT_NE(err.find(c.reason), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  Process v({bin("taskfarm-ventilator"), "--serve", "--submit", "ipc://" + farm.path("sub"),
             "--bind", "ipc://" + farm.path("t"), "--http", "off", "--state", ro + "/vent"},
            farm.path("vent-ro"));
  EXPECT_EXIT_CODE(v, 1, 10s);
  const std::string verr = v.err();
  EXPECT_NE(verr.find("Read-only file system"), std::string::npos) << verr;
  EXPECT_EQ(std::count(verr.begin(), verr.end(), '\n'), 1) << verr;
}

TEST(Durability, FullDiskMidJobPausesTheJobUntilWritesWorkAgain) {
  if (auto why = private_mounts(); !why.empty()) GTEST_SKIP() << why;
  const std::string digest = clean_digest_cached(kJob);
  Farm farm;
  Tmpfs sink_fs(farm.path("sink-state"), "size=8m"), vent_fs(farm.path("vent-state"), "size=8m");
  ASSERT_TRUE(sink_fs.mounted && vent_fs.mounted);
  Head head(farm, {});
  head.start_sink();
  head.start_vent();
  head.add_worker();
  head.add_worker();
  std::string id = head.submit(kJob, "job");
  ASSERT_TRUE(head.wait_progress(id, kJobTasks / 4));
  // Fills a disk; returns the filler file.
  auto fill = [&](const std::string& dir) {
    const std::string filler = dir + "/filler";
    std::ofstream f(filler, std::ios::binary);
    const std::string block(1 << 16, 'x');
    for (int i = 0; i < 200 && f; ++i) f << block;
    return filler;
  };
  auto wait_reason = [&](const std::string& text) {
    std::string reason;
    for (int i = 0; i < 100 && reason.find(text) == std::string::npos; ++i) {
      std::this_thread::sleep_for(100ms);
      if (auto st = head.status(id)) reason = st->reason();
    }
    return reason;
  };
  // The sink's disk fills: its commits fail, its acks wait, the job pauses.
  std::string filler = fill(farm.path("sink-state"));
  std::string reason = wait_reason("paused");
  EXPECT_NE(reason.find("paused: the sink cannot write its state"), std::string::npos) << reason;
  auto paused = head.status(id);
  ASSERT_TRUE(paused.has_value());
  EXPECT_EQ(paused->state(), v1::JOB_RUNNING);  // not dropped
  std::this_thread::sleep_for(1s);
  auto still = head.status(id);
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->done(), paused->done());  // nothing is acknowledged while it cannot write
  EXPECT_NE(head.sink().err().find("cannot write the journal"), std::string::npos);
  std::filesystem::remove(filler);
  auto waiter = head.client({"wait", id, "-q"}, "wait", 5);
  EXPECT_EQ(waiter.wait_for(0s), std::optional<int>(0)) << waiter.err();
  expect_clean(head.job_report(id), digest);
  // Then the ventilator's disk, during another job: it stops handing out tasks until it can
  // record them.
  id = head.submit(kJob, "job2");
  ASSERT_TRUE(head.wait_progress(id, kJobTasks / 8));
  filler = fill(farm.path("vent-state"));
  reason = wait_reason("paused");
  EXPECT_NE(reason.find("paused: the ventilator cannot write its state"), std::string::npos)
      << reason;
  EXPECT_NE(head.vent().err().find("dispatching pauses"), std::string::npos);
  std::filesystem::remove(filler);
  auto waiter2 = head.client({"wait", id, "-q"}, "wait", 5);
  EXPECT_EQ(waiter2.wait_for(0s), std::optional<int>(0)) << waiter2.err();
  expect_clean(head.job_report(id), digest);
  EXPECT_NE(head.sink().err().find("can be written again"), std::string::npos);
  head.stop();
}

}  // namespace
}  // namespace taskfarm::testing
