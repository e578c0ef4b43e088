// The --state journals (issue 14): SQLite files of the sink and the ventilator, driven through
// the classes that own them (SinkCore, JobTable, VentilatorCore) with a manual clock, and the
// pieces under them (task ranges, aggregator snapshots, state folders, atomic files, the
// worker's result cache). Crashes are simulated by copying a journal while it is open.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/errors.h"
#include "common/state_dir.h"
#include "common/task_ranges.h"
#include "sink/aggregator.h"
#include "sink/journal.h"
#include "sink/sink_core.h"
#include "ventilator/job_table.h"
#include "ventilator/ventilator_core.h"
#include "worker/result_cache.h"

namespace taskfarm {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            fmt::format("taskfarm-journal-{}-{}-{}", info->name(), getpid(), counter()++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path path_;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Copies a journal's files as they are on disk now, as a crash at this moment leaves them.
void copy_as_crashed(const std::string& from_dir, const std::string& to_dir, const char* name) {
  fs::create_directories(to_dir);
  for (const char* suffix : {"", "-wal"}) {
    const fs::path src = fs::path(from_dir) / (std::string(name) + suffix);
    if (fs::exists(src)) {
      fs::copy_file(src, fs::path(to_dir) / (std::string(name) + suffix),
                    fs::copy_options::overwrite_existing);
    }
  }
}

// ------------------------------------------------------------------ task ranges

TEST(TaskRanges, RoundTripKeepsEveryIdInFewBytes) {
  RangeSet set;
  for (uint64_t id = 0; id < 100000; ++id) set.insert(id);
  for (uint64_t id : {200000u, 200001u, 200005u, 4000000000u}) set.insert(id);
  const v1::TaskRanges ranges = to_task_ranges(set);
  EXPECT_LT(ranges.ByteSizeLong(), 40u);  // four ranges, whatever the number of ids
  RangeSet back;
  ASSERT_TRUE(from_task_ranges(ranges, back));
  EXPECT_EQ(back.size(), set.size());
  EXPECT_EQ(back.range_map(), set.range_map());
}

TEST(TaskRanges, MalformedRangesAreRefused) {
  RangeSet back;
  v1::TaskRanges odd;
  odd.add_gap_length(3);
  EXPECT_FALSE(from_task_ranges(odd, back));
  v1::TaskRanges past;
  past.add_gap_length(5);
  past.add_gap_length(10);
  EXPECT_FALSE(from_task_ranges(past, back, /*limit=*/12));  // ids up to 15 in a 12-task job
  v1::TaskRanges overflow;
  overflow.add_gap_length(UINT64_MAX);
  overflow.add_gap_length(UINT64_MAX);
  EXPECT_FALSE(from_task_ranges(overflow, back));
}

// ------------------------------------------------------------------ aggregator snapshots

v1::BatchStart batch_start(uint64_t id, uint64_t total, const std::string& kernel = "noop") {
  v1::BatchStart s;
  s.set_job_id(id);
  s.set_name("j");
  s.set_total(total);
  s.set_max_attempts(3);
  auto* t = s.mutable_spec()->add_tasks();
  t->set_kernel(kernel);
  t->set_count(total);
  s.mutable_spec()->set_max_attempts(3);
  return s;
}

v1::Result result(uint64_t job, uint64_t task, bool ok = true, uint32_t attempt = 1) {
  v1::Result r;
  r.set_job_id(job);
  r.set_task_id(task);
  r.set_attempt(attempt);
  r.set_kernel("noop");
  r.set_status(ok ? v1::STATUS_OK : v1::STATUS_FAILED);
  if (!ok) r.set_error("boom");
  r.set_checksum(task * 7919);
  r.set_sent_ns(1'000'000 + static_cast<int64_t>(task));
  r.set_started_ns(2'000'000);
  r.set_finished_ns(2'000'000 + static_cast<int64_t>(task) * 10);
  r.set_bytes(64);
  return r;
}

v1::WorkerInfo worker(const std::string& id) {
  v1::WorkerInfo w;
  w.set_id(id);
  w.set_host("h");
  w.set_device("cpu");
  w.add_kernels("noop");
  return w;
}

TEST(AggregatorSnapshot, RestoredAggregatorReportsAndCountsOnAsTheOriginal) {
  const auto start = batch_start(9, 50);
  sink::JobAggregator a(start);
  for (uint64_t t = 0; t < 30; t += (t % 7 == 3 ? 2 : 1)) {
    (void)a.add(result(9, t, t % 11 != 5), worker(t % 2 ? "w1" : "w2"), 5'000'000 + t * 100);
  }
  (void)a.add(result(9, 3), worker("w1"), 6'000'000);  // a duplicate
  sink::JobAggregator b(start);
  ASSERT_TRUE(b.restore(a.snapshot()));
  EXPECT_EQ(b.report().SerializeAsString(), a.report().SerializeAsString());
  EXPECT_EQ(b.final_tasks().range_map(), a.final_tasks().range_map());
  // Both go on alike: a task counted before the snapshot is a duplicate after it.
  EXPECT_EQ(b.add(result(9, 3), worker("w1"), 7'000'000), sink::Outcome::kDuplicate);
  EXPECT_EQ(a.add(result(9, 3), worker("w1"), 7'000'000), sink::Outcome::kDuplicate);
  for (uint64_t t = 0; t < 50; ++t) {
    EXPECT_EQ(a.add(result(9, t), worker("w3"), 8'000'000), b.add(result(9, t), worker("w3"), 8'000'000));
  }
  EXPECT_TRUE(b.complete());
  EXPECT_EQ(b.report().SerializeAsString(), a.report().SerializeAsString());
}

TEST(AggregatorSnapshot, SnapshotOfAnotherJobSizeIsRefused) {
  sink::JobAggregator big(batch_start(1, 100));
  for (uint64_t t = 90; t < 100; ++t) (void)big.add(result(1, t), worker("w"), 1);
  sink::JobAggregator small(batch_start(1, 50));
  EXPECT_FALSE(small.restore(big.snapshot()));  // ids past the job's total
  auto lying = big.snapshot();
  lying.set_ok(lying.ok() + 1);  // counts that disagree with the final ids
  sink::JobAggregator same(batch_start(1, 100));
  EXPECT_FALSE(same.restore(lying));
  EXPECT_EQ(same.done(), 0u);
}

// ------------------------------------------------------------------ files and state folders

TEST(StateDir, SecondProcessOnTheSameFolderIsRefused) {
  TempDir dir;
  StateDir first(dir.path(), "sink");
  try {
    StateDir second(dir.path(), "sink");
    FAIL() << "a second sink took the folder";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("another taskfarm-sink uses this folder"),
              std::string::npos)
        << e.what();
  }
  StateDir other_role(dir.path(), "ventilator");  // the two roles may share a folder
}

TEST(StateDir, StrayTemporariesAreRemovedAtStart) {
  TempDir dir;
  std::ofstream(dir / "report.json.tmp") << "{\"half\":";
  std::ofstream(dir / "keep.json") << "{}";
  StateDir state(dir.path(), "sink");
  EXPECT_FALSE(fs::exists(dir / "report.json.tmp"));
  EXPECT_TRUE(fs::exists(dir / "keep.json"));
}

TEST(StateDir, FolderThatCannotBeCreatedIsAOneLineError) {
  TempDir dir;
  std::ofstream(dir / "file") << "x";
  try {
    StateDir state(fs::path(dir / "file") / "state", "sink");
    FAIL();
  } catch (const SetupError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot create the folder"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos);
  }
}

TEST(AtomicFile, ReplacesWholeAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path path = fs::path(dir / "sub") / "report.json";
  EXPECT_EQ(write_file_atomically(path, "first\n"), "");
  EXPECT_EQ(write_file_atomically(path, "second\n"), "");
  EXPECT_EQ(slurp(path), "second\n");
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  // A folder in the way is an error, and the old file stays.
  fs::create_directories(path.string() + ".tmp");
  EXPECT_NE(write_file_atomically(path, "third\n"), "");
  EXPECT_EQ(slurp(path), "second\n");
}

// ------------------------------------------------------------------ sink journal

TEST(SinkJournal, RoundTripOfStartsProgressAndEnds) {
  TempDir dir;
  sink::JobAggregator agg(batch_start(5, 10));
  for (uint64_t t = 0; t < 4; ++t) (void)agg.add(result(5, t), worker("w"), 1);
  {
    sink::SinkJournal j(dir / "sink.db");
    j.write([&](sink::SinkJournal::Batch& b) {
      b.start(batch_start(5, 10));
      b.start(batch_start(6, 3));
    });
    j.write([&](sink::SinkJournal::Batch& b) { b.progress(5, agg.snapshot(), 2, 123); });
    v1::Envelope end;
    end.mutable_batch_end()->set_job_id(6);
    end.mutable_batch_end()->set_tasks_ok(3);
    j.write([&](sink::SinkJournal::Batch& b) { b.end(6, end); });
    EXPECT_EQ(j.commits(), 3u);
  }
  sink::SinkJournal j(dir / "sink.db");
  const auto loaded = j.load();
  EXPECT_TRUE(loaded.problems.empty());
  ASSERT_EQ(loaded.active.size(), 1u);
  EXPECT_EQ(loaded.active[0].start.job_id(), 5u);
  ASSERT_TRUE(loaded.active[0].has_snapshot);
  EXPECT_EQ(loaded.active[0].snapshot.ok(), 4u);
  EXPECT_EQ(loaded.active[0].rejected, 2u);
  EXPECT_EQ(loaded.active[0].index_bytes, 123u);
  ASSERT_EQ(loaded.ended.size(), 1u);
  EXPECT_EQ(loaded.ended[0].batch_end().tasks_ok(), 3u);
}

TEST(SinkJournal, KeepsOnlyTheLastEndedJobs) {
  TempDir dir;
  sink::SinkJournal j(dir / "sink.db");
  const int64_t n = sink::SinkJournal::kKeepEnded + 20;
  j.write([&](sink::SinkJournal::Batch& b) {
    for (int64_t i = 1; i <= n; ++i) {
      b.start(batch_start(static_cast<uint64_t>(i), 1));
      v1::Envelope end;
      end.mutable_batch_end()->set_job_id(static_cast<uint64_t>(i));
      b.end(static_cast<uint64_t>(i), end);
    }
  });
  const auto loaded = j.load();
  ASSERT_EQ(static_cast<int64_t>(loaded.ended.size()), sink::SinkJournal::kKeepEnded);
  EXPECT_EQ(loaded.ended.front().batch_end().job_id(), 21u);  // oldest kept, in order
  EXPECT_EQ(loaded.ended.back().batch_end().job_id(), static_cast<uint64_t>(n));
}

TEST(SinkJournal, TornLastCommitIsDroppedAndEarlierOnesKept) {
  TempDir dir;
  const std::string live = dir / "live", crashed = dir / "crashed";
  fs::create_directories(live);
  sink::SinkJournal j(live + "/sink.db");
  sink::JobAggregator agg(batch_start(5, 100));
  j.write([&](sink::SinkJournal::Batch& b) { b.start(batch_start(5, 100)); });
  for (uint64_t t = 0; t < 10; ++t) (void)agg.add(result(5, t), worker("w"), 1);
  j.write([&](sink::SinkJournal::Batch& b) { b.progress(5, agg.snapshot(), 0, 0); });
  const uint64_t wal_before = fs::file_size(live + "/sink.db-wal");
  for (uint64_t t = 10; t < 60; ++t) (void)agg.add(result(5, t), worker("w"), 1);
  j.write([&](sink::SinkJournal::Batch& b) { b.progress(5, agg.snapshot(), 0, 0); });
  // The process dies while the last commit is half on disk: its tail is torn.
  copy_as_crashed(live, crashed, "sink.db");
  const uint64_t wal_after = fs::file_size(crashed + "/sink.db-wal");
  ASSERT_GT(wal_after, wal_before);
  fs::resize_file(crashed + "/sink.db-wal", wal_after - 100);
  sink::SinkJournal reopened(crashed + "/sink.db");
  const auto loaded = reopened.load();
  ASSERT_EQ(loaded.active.size(), 1u);
  ASSERT_TRUE(loaded.active[0].has_snapshot);
  EXPECT_EQ(loaded.active[0].snapshot.ok(), 10u);  // the commit before, whole
}

TEST(SinkJournal, DamagedFileIsRefusedNotReadAsValid) {
  TempDir dir;
  {
    sink::SinkJournal j(dir / "sink.db");
    j.write([&](sink::SinkJournal::Batch& b) { b.start(batch_start(5, 10)); });
  }
  {
    std::fstream f(dir / "sink.db", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f << "this is not a database header";
  }
  try {
    sink::SinkJournal j(dir / "sink.db");
    FAIL() << "a damaged journal was opened";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "sink.db"), std::string::npos) << e.what();
  }
}

TEST(SinkJournal, UnreadableRowsAreSkippedWithTheReason) {
  TempDir dir;
  {
    sink::SinkJournal j(dir / "sink.db");
    j.write([&](sink::SinkJournal::Batch& b) {
      b.start(batch_start(5, 10));
      b.start(batch_start(6, 10));
    });
  }
  {
    sqlite::Database db(dir / "sink.db");
    db.exec("UPDATE jobs SET start = x'ffffffff' WHERE id = 6");
  }
  sink::SinkJournal j(dir / "sink.db");
  const auto loaded = j.load();
  ASSERT_EQ(loaded.active.size(), 1u);
  EXPECT_EQ(loaded.active[0].start.job_id(), 5u);
  ASSERT_EQ(loaded.problems.size(), 1u);
  EXPECT_NE(loaded.problems[0].find("0000000000000006"), std::string::npos);
}

// ------------------------------------------------------------------ SinkCore with --state

struct Published {
  std::vector<v1::Envelope> acks, ctl;
  sink::SinkCore::Publish fn() {
    return [this](std::string_view topic, v1::Envelope& env) {
      (topic == kTopicAck ? acks : ctl).push_back(env);
    };
  }
  uint64_t acked_tasks() const {
    uint64_t n = 0;
    for (const auto& e : acks) n += e.has_ack() ? e.ack().done_size() : 0;
    return n;
  }
  const v1::JobAccepted* accepted(uint64_t job) const {
    for (auto it = acks.rbegin(); it != acks.rend(); ++it) {
      if (it->has_job_accepted() && it->job_accepted().job_id() == job) return &it->job_accepted();
    }
    return nullptr;
  }
};

void feed(sink::SinkCore& core, v1::Envelope env) {
  env.set_version(kProtocolVersion);
  const std::string bytes = env.SerializeAsString();
  core.on_frame(bytes.data(), bytes.size(), false);
}

void feed_start(sink::SinkCore& core, const v1::BatchStart& start) {
  v1::Envelope env;
  *env.mutable_batch_start() = start;
  feed(core, env);
}

void feed_results(sink::SinkCore& core, uint64_t job, uint64_t from, uint64_t to) {
  v1::Envelope env;
  *env.mutable_results()->mutable_worker() = worker("w1");
  for (uint64_t t = from; t < to; ++t) *env.mutable_results()->add_results() = result(job, t);
  feed(core, env);
}

sink::SinkOptions serving(const std::string& state) {
  sink::SinkOptions o;
  o.serve = true;
  o.quiet = true;
  o.state_dir = state;
  return o;
}

TEST(SinkCoreState, AcksComeAfterTheCommitAndARestartContinuesTheJob) {
  TempDir dir;
  ManualClock clock;
  const auto start = batch_start(42, 100);
  std::string digest;
  {
    Published out;
    sink::SinkCore core(serving(dir / "state"), clock, out.fn());
    feed_start(core, start);
    ASSERT_NE(out.accepted(42), nullptr);
    EXPECT_EQ(out.accepted(42)->final_tasks(), 0u);
    EXPECT_EQ(out.accepted(42)->sink_epoch(), core.epoch());
    const uint64_t commits = core.journal_commits();
    feed_results(core, 42, 0, 60);
    EXPECT_EQ(out.acked_tasks(), 0u);  // nothing acknowledged before the journal has it
    core.flush_acks();
    EXPECT_EQ(core.journal_commits(), commits + 1);  // one transaction for the drain
    EXPECT_EQ(out.acked_tasks(), 60u);
    ASSERT_TRUE(out.acks.back().has_ack());
    EXPECT_EQ(out.acks.back().ack().sink_epoch(), core.epoch());
    feed_results(core, 42, 60, 70);  // counted, never committed: lost with the process
  }
  Published out;
  sink::SinkCore core(serving(dir / "state"), clock, out.fn());
  EXPECT_EQ(core.active_jobs(), 1u);
  feed_start(core, start);  // the ventilator announces it again
  ASSERT_NE(out.accepted(42), nullptr);
  EXPECT_EQ(out.accepted(42)->final_tasks(), 60u);
  feed_results(core, 42, 50, 100);  // resent ones and the rest
  core.flush_acks();
  EXPECT_EQ(out.acked_tasks(), 50u);  // the duplicates are acknowledged again
  (void)core.finish_complete_jobs();
  ASSERT_EQ(out.ctl.size() >= 1, true);
  const v1::Envelope& end = out.ctl.back();
  ASSERT_TRUE(end.has_batch_end());
  EXPECT_EQ(end.batch_end().tasks_ok(), 100u);
  EXPECT_EQ(end.batch_end().report().duplicates_dropped(), 10u);

  // The digest is the clean run's.
  sink::JobAggregator clean(start);
  for (uint64_t t = 0; t < 100; ++t) (void)clean.add(result(42, t), worker("w1"), 1);
  EXPECT_EQ(end.batch_end().report().result_digest(), clean.report().result_digest());
}

TEST(SinkCoreState, EndedJobsAreRememberedAcrossRestarts) {
  TempDir dir;
  ManualClock clock;
  {
    Published out;
    sink::SinkCore core(serving(dir / "state"), clock, out.fn());
    feed_start(core, batch_start(7, 5));
    feed_results(core, 7, 0, 5);
    core.flush_acks();
    (void)core.finish_complete_jobs();
    EXPECT_EQ(core.active_jobs(), 0u);
  }
  Published out;
  sink::SinkCore core(serving(dir / "state"), clock, out.fn());
  EXPECT_EQ(core.active_jobs(), 0u);
  feed_start(core, batch_start(7, 5));  // a ventilator that missed the end asks again
  ASSERT_FALSE(out.ctl.empty());
  ASSERT_TRUE(out.ctl.back().has_batch_end());
  EXPECT_EQ(out.ctl.back().batch_end().tasks_ok(), 5u);
  EXPECT_EQ(core.active_jobs(), 0u);  // not started again
}

TEST(SinkCoreState, JobsOfAVentilatorThatRestartedWithoutStateEndInterrupted) {
  TempDir dir;
  ManualClock clock;
  Published out;
  sink::SinkCore core(serving(dir / "state"), clock, out.fn());
  auto a = batch_start(1, 10);
  a.set_ventilator_id(111);
  feed_start(core, a);
  auto b = batch_start(2, 10);
  b.set_ventilator_id(111);
  feed_start(core, b);
  EXPECT_EQ(core.active_jobs(), 2u);
  auto c = batch_start(3, 10);
  c.set_ventilator_id(222);  // another ventilator: the jobs of 111 have nobody to finish them
  feed_start(core, c);
  EXPECT_EQ(core.active_jobs(), 1u);
  int interrupted = 0;
  for (const auto& e : out.ctl) {
    if (e.has_batch_end() && e.batch_end().state() == v1::JOB_INTERRUPTED) ++interrupted;
  }
  EXPECT_EQ(interrupted, 2);
}

TEST(SinkCoreState, OneShotSinkBusyWithAnotherBatchRefusesWithTheReason) {
  ManualClock clock;
  Published out;
  sink::SinkOptions o;
  o.quiet = true;
  sink::SinkCore core(o, clock, out.fn());
  feed_start(core, batch_start(1, 10));
  feed_start(core, batch_start(2, 10));
  const v1::JobAccepted* refused = out.accepted(2);
  ASSERT_NE(refused, nullptr);
  EXPECT_NE(refused->error().find("busy with batch"), std::string::npos) << refused->error();
  EXPECT_EQ(core.active_jobs(), 1u);
}

// ------------------------------------------------------------------ ventilator journal

v1::JobSpec spec(const std::string& name, uint64_t count) {
  v1::JobSpec s;
  s.set_name(name);
  auto* t = s.add_tasks();
  t->set_kernel("noop");
  t->set_count(count);
  return s;
}

TEST(JobTableJournal, JobsStatesAndAcknowledgedTasksSurviveARestart) {
  TempDir dir;
  ManualClock clock;
  uint64_t running_id = 0, done_id = 0, queued_id = 0, vid = 0;
  {
    ventilator::JobTable table(clock, {});
    table.open_state(dir / "state");
    vid = table.ventilator_id();
    auto& running = table.add(spec("running", 1000), 3);
    running_id = running.id;
    table.start(running);
    for (uint64_t t = 0; t < 400; ++t) running.acked_tasks.insert(t);
    running.acked_tasks.insert(777);
    running.failed = 2;
    clock.advance_ms(100);
    ASSERT_TRUE(table.sync());
    auto& done = table.add(spec("done", 10), 3);
    done_id = done.id;
    table.start(done);
    v1::Report report;
    report.set_tasks_ok(10);
    report.set_result_digest("abc");
    done.report = report;
    table.finish(done, v1::JOB_DONE);
    queued_id = table.add(spec("queued", 5), 7).id;
  }
  ventilator::JobTable table(clock, {});
  table.open_state(dir / "state");
  EXPECT_EQ(table.ventilator_id(), vid);
  ASSERT_EQ(table.jobs().size(), 3u);
  const auto* running = table.get(running_id);
  ASSERT_NE(running, nullptr);
  EXPECT_EQ(running->state, v1::JOB_RUNNING);
  EXPECT_EQ(running->acked_tasks.size(), 401u);
  EXPECT_TRUE(running->acked_tasks.contains(777));
  EXPECT_EQ(running->failed, 2u);
  ASSERT_NE(running->job, nullptr);
  EXPECT_EQ(running->job->total(), 1000u);
  EXPECT_FALSE(running->sink_confirmed);
  const auto* done = table.get(done_id);
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(done->state, v1::JOB_DONE);
  ASSERT_TRUE(done->report.has_value());
  EXPECT_EQ(done->report->result_digest(), "abc");
  EXPECT_EQ(done->job, nullptr);
  const auto* queued = table.get(queued_id);
  ASSERT_NE(queued, nullptr);
  EXPECT_EQ(queued->state, v1::JOB_QUEUED);
  EXPECT_EQ(queued->max_attempts, 7u);
  EXPECT_EQ(table.unfinished(), 2u);
}

TEST(JobTableJournal, ProgressIsBatchedStateChangesAreNot) {
  TempDir dir;
  ManualClock clock;
  ventilator::JobTable table(clock, {});
  table.open_state(dir / "state");
  auto& job = table.add(spec("j", 100000), 3);
  const uint64_t after_add = table.journal_commits();
  table.start(job);
  EXPECT_EQ(table.journal_commits(), after_add + 1);  // at once
  const uint64_t base = table.journal_commits();
  // Acks arrive every millisecond for a second: the journal gets them at most every 50 ms.
  for (uint64_t ms = 0; ms < 1000; ++ms) {
    for (uint64_t t = ms * 10; t < ms * 10 + 10; ++t) job.acked_tasks.insert(t);
    ASSERT_TRUE(table.sync());
    clock.advance_ms(1);
  }
  const uint64_t commits = table.journal_commits() - base;
  EXPECT_GE(commits, 1000 / ventilator::JobTable::kProgressIntervalMs - 1);
  EXPECT_LE(commits, 1000 / ventilator::JobTable::kProgressIntervalMs + 1);
  table.finish(job, v1::JOB_DONE);
  EXPECT_EQ(table.journal_commits() - base, commits + 1);
}

TEST(JobTableJournal, UnreadableRowEndsItsJobAsFailedWithTheReason) {
  TempDir dir;
  ManualClock clock;
  uint64_t id = 0;
  {
    ventilator::JobTable table(clock, {});
    table.open_state(dir / "state");
    id = table.add(spec("j", 10), 3).id;
  }
  {
    sqlite::Database db(dir / "state/ventilator.db");
    db.exec("UPDATE jobs SET spec = x'ff01ff'");
  }
  ventilator::JobTable table(clock, {});
  table.open_state(dir / "state");
  const auto* job = table.get(id);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->state, v1::JOB_FAILED);
  EXPECT_NE(job->error.find("unreadable"), std::string::npos) << job->error;
  EXPECT_EQ(table.unfinished(), 0u);
}

// ------------------------------------------------------------------ VentilatorCore restarts

struct Outbox final : ventilator::VentilatorOutbox {
  std::vector<std::pair<std::string, v1::Envelope>> to_workers;
  std::vector<v1::Envelope> sink;
  bool to_worker(const std::string& w, v1::Envelope& env) override {
    to_workers.emplace_back(w, env);
    return true;
  }
  void to_sink(v1::Envelope& env) override { sink.push_back(env); }
  void announce_to_sink(v1::Envelope& env) override { sink.push_back(env); }
  // Returns: task ids sent to workers in task batches.
  std::multiset<uint64_t> issued() const {
    std::multiset<uint64_t> ids;
    for (const auto& [w, e] : to_workers) {
      if (e.has_tasks()) {
        for (const auto& t : e.tasks().tasks()) ids.insert(t.task_id());
      }
    }
    return ids;
  }
};

v1::Envelope accepted(uint64_t job, uint64_t epoch, uint64_t final_tasks) {
  v1::Envelope env;
  env.mutable_job_accepted()->set_job_id(job);
  env.mutable_job_accepted()->set_sink_epoch(epoch);
  env.mutable_job_accepted()->set_final_tasks(final_tasks);
  return env;
}

v1::Envelope ack(uint64_t job, uint64_t epoch, uint64_t from, uint64_t to) {
  v1::Envelope env;
  env.mutable_ack()->set_job_id(job);
  env.mutable_ack()->set_sink_epoch(epoch);
  for (uint64_t t = from; t < to; ++t) env.mutable_ack()->add_done(t);
  return env;
}

v1::Envelope hello(uint32_t credit) {
  v1::Envelope env;
  *env.mutable_hello()->mutable_worker() = worker("w");
  env.mutable_hello()->set_credit(credit);
  return env;
}

ventilator::CoreOptions core_options(const std::string& state) {
  ventilator::CoreOptions o;
  o.state_dir = state;
  return o;
}

TEST(VentilatorCoreState, RestartedVentilatorSkipsAcknowledgedTasks) {
  TempDir dir;
  ManualClock clock;
  uint64_t id = 0;
  {
    Outbox out;
    ventilator::VentilatorCore core(core_options(dir / "state"), clock, out);
    id = core.add_job(spec("j", 100), "test").id;
    core.tick();
    ASSERT_FALSE(out.sink.empty());
    ASSERT_TRUE(out.sink.back().has_batch_start());
    EXPECT_EQ(out.sink.back().batch_start().ventilator_id(), core.jobs().ventilator_id());
    core.on_sink_message(accepted(id, 5, 0));
    EXPECT_TRUE(core.on_worker_message("w", hello(60)));
    core.dispatch();
    EXPECT_EQ(out.issued().size(), 60u);
    core.on_sink_message(ack(id, 5, 0, 40));
    clock.advance_ms(100);
    core.tick();  // the journal gets the acks
  }
  Outbox out;
  ventilator::VentilatorCore core(core_options(dir / "state"), clock, out);
  const auto* job = core.jobs().get(id);
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->state, v1::JOB_RUNNING);
  EXPECT_EQ(core.status_of(*job).done(), 40u);
  EXPECT_TRUE(core.on_worker_message("w", hello(1000)));
  core.tick();
  EXPECT_TRUE(out.issued().empty());  // nothing before the sink says what it has
  ASSERT_FALSE(out.sink.empty());
  ASSERT_TRUE(out.sink.back().has_batch_start());
  // Results of tasks 40..49 reached the sink after the crash: acked before it is accepted.
  core.on_sink_message(ack(id, 5, 40, 50));
  core.on_sink_message(accepted(id, 5, 50));
  core.dispatch();
  const auto issued = out.issued();
  EXPECT_EQ(issued.size(), 50u);
  EXPECT_EQ(*issued.begin(), 50u);  // the first 50 are not run again
  core.on_sink_message(ack(id, 5, 50, 100));
  EXPECT_EQ(core.status_of(*core.jobs().get(id)).done(), 100u);
}

TEST(VentilatorCoreState, SinkThatLostTheJobMakesItRunAgainFromTheStart) {
  ManualClock clock;
  Outbox out;
  ventilator::VentilatorCore core(ventilator::CoreOptions{}, clock, out);
  const uint64_t id = core.add_job(spec("j", 20), "test").id;
  core.tick();
  core.on_sink_message(accepted(id, 5, 0));
  EXPECT_TRUE(core.on_worker_message("w", hello(20)));
  core.dispatch();
  core.on_sink_message(ack(id, 5, 0, 15));
  EXPECT_EQ(core.status_of(*core.jobs().get(id)).done(), 15u);
  out.to_workers.clear();
  // A sink restarted without its state: another epoch, and nothing counted.
  v1::Envelope hb;
  hb.mutable_sink_heartbeat()->set_epoch(6);
  core.on_sink_message(hb);
  core.tick();
  ASSERT_TRUE(out.sink.back().has_batch_start());
  core.on_sink_message(accepted(id, 6, 0));
  EXPECT_EQ(core.status_of(*core.jobs().get(id)).done(), 0u);
  EXPECT_TRUE(core.on_worker_message("w", hello(20)));
  core.dispatch();
  EXPECT_EQ(out.issued().size(), 20u);  // every task again
}

TEST(VentilatorCoreState, RestartedSinkMakesWorkersResendWhatItDidNotAcknowledge) {
  ManualClock clock;
  Outbox out;
  ventilator::VentilatorCore core(ventilator::CoreOptions{}, clock, out);
  const uint64_t id = core.add_job(spec("j", 30), "test").id;
  core.tick();
  core.on_sink_message(accepted(id, 5, 0));
  EXPECT_TRUE(core.on_worker_message("w", hello(30)));
  core.dispatch();
  core.on_sink_message(ack(id, 5, 0, 10));
  out.to_workers.clear();
  v1::Envelope hb;
  hb.mutable_sink_heartbeat()->set_epoch(6);
  core.on_sink_message(hb);
  core.tick();
  core.on_sink_message(accepted(id, 6, 12));  // it kept the ten, and two acks were lost
  std::vector<uint64_t> asked;
  for (const auto& [w, e] : out.to_workers) {
    if (e.has_resend_results()) {
      EXPECT_EQ(e.resend_results().job_id(), id);
      asked.insert(asked.end(), e.resend_results().task_ids().begin(),
                   e.resend_results().task_ids().end());
    }
  }
  EXPECT_EQ(asked.size(), 20u);  // tasks 10..29: leased to the worker, never acknowledged
  // The worker has none of 25..29 any more: they go out again, as the same attempt.
  v1::Envelope not_held;
  not_held.mutable_results_not_held()->set_job_id(id);
  for (uint64_t t = 25; t < 30; ++t) not_held.mutable_results_not_held()->add_task_ids(t);
  out.to_workers.clear();
  EXPECT_TRUE(core.on_worker_message("w", not_held));
  v1::Envelope credit;
  credit.mutable_credit()->set_credit(10);
  EXPECT_TRUE(core.on_worker_message("w", credit));
  core.dispatch();
  const auto again = out.issued();
  EXPECT_EQ(again, (std::multiset<uint64_t>{25, 26, 27, 28, 29}));
  for (const auto& [w, e] : out.to_workers) {
    if (e.has_tasks()) {
      for (const auto& t : e.tasks().tasks()) EXPECT_EQ(t.attempt(), 1u);
    }
  }
}

TEST(VentilatorCoreState, GiveUpsTheSinkDidNotAcknowledgeGoToARestartedSinkAgain) {
  ManualClock clock;
  Outbox out;
  ventilator::VentilatorCore core(ventilator::CoreOptions{}, clock, out);
  auto s = spec("j", 3);
  s.set_max_attempts(1);
  const uint64_t id = core.add_job(s, "test").id;
  core.tick();
  core.on_sink_message(accepted(id, 5, 0));
  EXPECT_TRUE(core.on_worker_message("w", hello(3)));
  core.dispatch();
  clock.advance_ms(4000);  // the worker is lost with its three tasks, on their last attempt
  core.tick();
  auto give_ups = [&] {
    size_t n = 0;
    for (const auto& e : out.sink) {
      if (e.has_results()) n += static_cast<size_t>(e.results().results_size());
    }
    return n;
  };
  EXPECT_EQ(give_ups(), 3u);
  core.on_sink_message(ack(id, 5, 0, 1));  // the sink acknowledged one before it died
  out.sink.clear();
  v1::Envelope hb;
  hb.mutable_sink_heartbeat()->set_epoch(6);
  core.on_sink_message(hb);
  core.tick();
  core.on_sink_message(accepted(id, 6, 1));
  EXPECT_EQ(give_ups(), 2u);  // the two it may have lost
}

TEST(VentilatorCoreState, SilentSinkIsTheReasonAJobWaits) {
  ManualClock clock;
  Outbox out;
  ventilator::CoreOptions o;
  o.sink_endpoint = "tcp://head:5559";
  ventilator::VentilatorCore core(o, clock, out);
  const uint64_t id = core.add_job(spec("j", 30), "test").id;
  core.tick();
  core.on_sink_message(accepted(id, 5, 0));
  EXPECT_TRUE(core.on_worker_message("w", hello(30)));
  EXPECT_EQ(core.waiting_reason(*core.jobs().get(id)), "");
  clock.advance_ms(12000);
  EXPECT_TRUE(core.on_worker_message("w", hello(30)));
  EXPECT_EQ(core.waiting_reason(*core.jobs().get(id)),
            "no sink at tcp://head:5559 (last heard 12 s ago)");
}

// ------------------------------------------------------------------ worker result cache

std::string encoded(uint64_t job, uint64_t from, uint64_t to) {
  v1::Envelope env;
  env.set_version(kProtocolVersion);
  for (uint64_t t = from; t < to; ++t) *env.mutable_results()->add_results() = result(job, t);
  return env.SerializeAsString();
}

TEST(ResultCache, FindsWhatWasSentAndForgetsTheOldestBeyondItsLimit) {
  worker::ResultCache cache(/*max_results=*/250, /*max_bytes=*/1 << 20);
  cache.add(encoded(1, 0, 100), 100);
  cache.add(encoded(2, 0, 100), 100);
  cache.add(encoded(1, 100, 200), 100);  // 300 > 250: the first message goes
  EXPECT_EQ(cache.results(), 200u);
  std::unordered_set<uint64_t> wanted = {5, 150, 199, 500};
  google::protobuf::RepeatedPtrField<v1::Result> out;
  EXPECT_EQ(cache.take(1, wanted, out), 2u);
  EXPECT_EQ(wanted, (std::unordered_set<uint64_t>{5, 500}));  // forgotten, never sent
  ASSERT_EQ(out.size(), 2);
  for (const auto& r : out) EXPECT_EQ(r.job_id(), 1u);
}

TEST(ResultCache, ByteLimitBoundsIt) {
  worker::ResultCache cache(/*max_results=*/1'000'000, /*max_bytes=*/4096);
  for (int i = 0; i < 100; ++i) cache.add(encoded(1, static_cast<uint64_t>(i) * 10, static_cast<uint64_t>(i) * 10 + 10), 10);
  EXPECT_LE(cache.bytes(), 4096u);
  EXPECT_GT(cache.results(), 0u);
}

}  // namespace
}  // namespace taskfarm
