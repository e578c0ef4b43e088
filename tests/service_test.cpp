// The job service with real processes: taskfarm-sink --serve, taskfarm-ventilator --serve,
// workers, and the `taskfarm` client (plus the Python example client when python3-zmq exists).
#include <google/protobuf/util/json_util.h>

#include <filesystem>

#include "farm.h"
#include "service.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

v1::Report read_report(const std::string& path) {
  v1::Report r;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(path), &r).ok()) << path;
  return r;
}

constexpr const char* kSmallJob =
    R"({"name": "small", "tasks": [{"kernel": "saxpy", "count": 60, "size": 5000, "seed": 2}]})";

TEST(Service, SubmitWaitPrintsTheReportAndKeepsItOnDisk) {
  Farm farm;
  Service svc(farm);
  auto p = svc.client({"submit", farm.write("small.json", kSmallJob), "--wait", "--report",
                       farm.path("small.report.json")});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
  EXPECT_NE(p.out().find("60 ok"), std::string::npos) << p.out();
  const auto r = read_report(farm.path("small.report.json"));
  EXPECT_EQ(r.tasks_ok(), 60u);
  EXPECT_EQ(r.state(), "done");
  // The sink's copy, under the results directory, named by job id.
  const auto on_disk = read_report(farm.path("jobs/" + r.job_id() + "/report.json"));
  EXPECT_EQ(on_disk.result_digest(), r.result_digest());
  // And the same digest as a one-shot batch of the same job.
  EXPECT_EQ(clean_digest(kSmallJob), r.result_digest());
}

TEST(Service, TwoConcurrentJobsSmallOneIsNotStuckAndBothDigestsAreRight) {
  const std::string big_json =
      R"({"name": "big", "tasks": [{"kernel": "sleep", "count": 800, "size": 5000},
                                   {"kernel": "sort", "count": 40, "size": 3000, "seed": 9}]})";
  Farm farm;
  Service svc(farm);
  const std::string big = svc.submit(farm.write("big.json", big_json));
  std::this_thread::sleep_for(300ms);
  auto p = svc.client({"submit", farm.write("small.json", kSmallJob), "--wait", "-q", "--report",
                       farm.path("small.report.json")});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
  const auto st = svc.status(big);
  ASSERT_EQ(st.jobs_size(), 1);
  EXPECT_EQ(st.jobs(0).state(), v1::JOB_RUNNING) << "the small job finished while the big one ran";
  EXPECT_LT(st.jobs(0).done(), 840u);
  EXPECT_EQ(svc.status().jobs_size(), 2);
  auto w = svc.client({"wait", big, "-q", "--report", farm.path("big.report.json")});
  EXPECT_EQ(w.wait_for(0s), std::optional<int>(0)) << w.err();
  const auto small_r = read_report(farm.path("small.report.json"));
  const auto big_r = read_report(farm.path("big.report.json"));
  EXPECT_EQ(small_r.tasks_ok(), 60u);
  EXPECT_EQ(big_r.tasks_ok(), 840u);
  EXPECT_EQ(small_r.result_digest(), clean_digest(kSmallJob));
  EXPECT_EQ(big_r.result_digest(), clean_digest(big_json));
}

TEST(Service, CancelStopsAJobAndFreesTheWorkers) {
  Farm farm;
  Service svc(farm);
  const std::string long_job = svc.submit(farm.write(
      "long.json", R"({"name": "long", "tasks": [{"kernel": "sleep", "count": 2000, "size": 20000}]})"));
  std::this_thread::sleep_for(500ms);
  auto c = svc.client({"cancel", "long"});  // by name
  EXPECT_EQ(c.wait_for(0s), std::optional<int>(0)) << c.err();
  const auto st = svc.status(long_job);
  ASSERT_EQ(st.jobs_size(), 1);
  EXPECT_EQ(st.jobs(0).state(), v1::JOB_CANCELLED);
  const auto t0 = std::chrono::steady_clock::now();
  auto p = svc.client({"submit", farm.write("small.json", kSmallJob), "--wait", "-q"});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "workers were freed";
  auto w = svc.client({"wait", long_job, "-q"});
  EXPECT_EQ(w.wait_for(0s), std::optional<int>(2)) << "a cancelled job does not succeed";
  const auto partial = read_report(farm.path("jobs/" + long_job + "/report.json"));
  EXPECT_EQ(partial.state(), "cancelled");
  // The sink's partial report reaches the job's status too (taskfarm wait/status show it).
  const auto after = svc.status(long_job);
  ASSERT_EQ(after.jobs_size(), 1);
  EXPECT_TRUE(after.jobs(0).has_report());
  EXPECT_EQ(after.jobs(0).report().state(), "cancelled");
  EXPECT_EQ(after.jobs(0).report().tasks_total(), 2000u);
}

TEST(Service, FailedTasksGiveExitCode2) {
  Farm farm;
  Service svc(farm, 0);
  auto w = farm.worker("w", {"--threads", "2"}, {"TASKFARM_TEST_FAIL_TASK=3"});
  auto p = svc.client({"submit", farm.write("small.json", kSmallJob), "--wait", "--report",
                       farm.path("r.json")});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(2)) << p.err();
  EXPECT_EQ(read_report(farm.path("r.json")).tasks_failed(), 1u);
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 5s);
}

TEST(Service, BadSubmissionsAreOneLineErrorsAndDoNotDisturbRunningJobs) {
  Farm farm;
  Service svc(farm);
  const std::string running = svc.submit(farm.write(
      "run.json", R"({"name": "run", "tasks": [{"kernel": "sleep", "count": 200, "size": 5000}]})"));
  const std::pair<std::string, std::string> bad[] = {
      {"{ not json", "invalid job"},
      {R"({"tasks": [{"kernel": "f f t", "count": 1}]})", "'f f t' is not a kernel name"},
      {R"({"tasks": [{"kernel": "sgemm", "count": 1, "size": 99999}]})", "99999"},
      {R"({"tasks": [{"kernel": "noop", "count": -3}]})", "invalid job"},
      {R"({"tasks": []})", "no tasks"},
      {R"({"tasks": [{"kernel": "noop", "count": 1}], "colour": 1})", "colour"},
  };
  int i = 0;
  for (const auto& [json, expect] : bad) {
    auto p = svc.client({"submit", farm.write("bad" + std::to_string(i++) + ".json", json)});
    EXPECT_EQ(p.wait_for(0s), std::optional<int>(1)) << json;
    const std::string err = p.err();
    EXPECT_NE(err.find(expect), std::string::npos) << json << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  auto missing = svc.client({"submit", farm.path("missing.json")});
  EXPECT_EQ(missing.wait_for(0s), std::optional<int>(1));
  auto unknown = svc.client({"cancel", "0123456789abcdef"});
  EXPECT_EQ(unknown.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(unknown.err().find("unknown job"), std::string::npos) << unknown.err();
  auto p = svc.client({"wait", running, "-q"});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
}

TEST(Service, MandelbrotImageIsAssembledIntoAPng) {
  Farm farm;
  Service svc(farm);
  auto p = svc.client({"submit", farm.write("m.json", R"({"name": "m", "keep_output": true,
      "tasks": [{"kernel": "mandelbrot", "count": 7, "size": 100}]})"), "--wait", "--report",
                       farm.path("m.report.json")});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
  const auto r = read_report(farm.path("m.report.json"));
  const std::string png = read_file(farm.path("jobs/" + r.job_id() + "/mandelbrot-100.png"));
  ASSERT_GT(png.size(), 33u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(static_cast<uint8_t>(png[19]), 100);  // width, big-endian
  EXPECT_EQ(static_cast<uint8_t>(png[23]), 100);  // height
}

TEST(Service, ClientTimesOutClearlyWhenNoServerRuns) {
  Farm farm;
  const auto t0 = std::chrono::steady_clock::now();
  Process p({bin("taskfarm"), "--server", "ipc://" + farm.path("nobody"), "--timeout", "1",
             "status"},
            farm.path("client"));
  EXPECT_EQ(p.wait_for(10s), std::optional<int>(1));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_NE(p.err().find("no answer from the job service"), std::string::npos) << p.err();
}

TEST(Service, PythonClientSubmitsWaitsAndReadsTheReport) {
  if (std::string(TASKFARM_PYTHON).empty()) GTEST_SKIP() << "python3 with zmq and protobuf not found";
  Farm farm;
  Service svc(farm);
  Process py({TASKFARM_PYTHON, std::string(TASKFARM_SOURCE_DIR) + "/examples/python/taskfarm_client.py",
              farm.write("small.json", kSmallJob), "--server", svc.endpoint(), "--report",
              farm.path("py.json")},
             farm.path("python"), {"PYTHONPATH=" TASKFARM_PYTHON_DIR});
  EXPECT_EQ(py.wait_for(60s), std::optional<int>(0)) << py.err();
  EXPECT_NE(py.out().find("done: 60 ok"), std::string::npos) << py.out();
  EXPECT_EQ(read_report(farm.path("py.json")).tasks_ok(), 60u);
}

// ---- issue 15: the client in everyday use ----------------------------------------------

// Returns: whether `text` appeared on the process's stdout within `timeout`.
bool wait_for_output(const Process& p, const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p.out().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

constexpr const char* kSlowJob =
    R"({"name": "slow", "tasks": [{"kernel": "sleep", "count": 80, "size": 100000}]})";

TEST(Service, WaitingClientsStopOnSigintAndSigtermWhileTheJobKeepsRunning) {
  Farm farm;
  Service svc(farm, 1);  // 1 worker x 2 threads: the job takes about 4 s
  auto submit = svc.start_client({"submit", farm.write("slow.json", kSlowJob), "--wait"}, "submit");
  ASSERT_TRUE(wait_for_output(submit, "submitted ", 10s)) << submit.err();
  std::string id = submit.out().substr(submit.out().find("submitted ") + 10, 16);
  std::this_thread::sleep_for(200ms);
  submit.signal(SIGINT);
  EXPECT_EQ(submit.wait_for(3s), std::optional<int>(130)) << "Ctrl-C ends --wait:\n" << submit.err();
  EXPECT_NE(submit.err().find("taskfarm wait " + id), std::string::npos) << submit.err();
  EXPECT_NE(submit.err().find("taskfarm cancel " + id), std::string::npos) << submit.err();

  auto wait = svc.start_client({"wait", id}, "wait-term");
  ASSERT_TRUE(wait_for_output(wait, "slow running", 10s)) << wait.out() << wait.err();
  wait.signal(SIGTERM);
  EXPECT_EQ(wait.wait_for(3s), std::optional<int>(130)) << "SIGTERM ends wait:\n" << wait.err();

  const auto st = svc.status(id);
  ASSERT_EQ(st.jobs_size(), 1);
  EXPECT_NE(st.jobs(0).state(), v1::JOB_CANCELLED) << "the job is not cancelled by a client leaving";
  auto done = svc.client({"wait", id, "-q", "--report", farm.path("slow.report.json")}, "wait-end");
  EXPECT_EQ(done.wait_for(0s), std::optional<int>(0)) << done.err();
  EXPECT_EQ(read_report(farm.path("slow.report.json")).tasks_ok(), 80u);
}

TEST(Service, StatusAndTheWaitLineSayWhyAJobDoesNotMove) {
  Farm farm;
  Service svc(farm, 0);  // no worker: the job cannot move
  const std::string id = svc.submit(farm.write(
      "stuck.json", R"({"name": "stuck", "tasks": [{"kernel": "noop", "count": 10}]})"));
  // The table: the reason on a line under the job's row (first "waiting for the sink", until
  // the sink has accepted the job).
  std::string table;
  for (int i = 0; i < 100 && table.find("waiting: no worker connected") == std::string::npos;
       ++i) {
    table = svc.client({"status", id}, "status").out();
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(table.find("waiting: no worker connected"), std::string::npos) << table;
  // The --wait progress line (plain lines when stdout is not a terminal).
  auto wait = svc.start_client({"wait", id}, "wait");
  EXPECT_TRUE(wait_for_output(wait,
                              "stuck running 0/10 tasks, 0 failed, 0.0 tasks/s, ETA -; no "
                              "worker connected (workers connect to ipc://",
                              10s))
      << wait.out() << wait.err();
  wait.signal(SIGINT);
  EXPECT_EQ(wait.wait_for(3s), std::optional<int>(130)) << wait.err();
  auto cancel = svc.client({"cancel", id}, "cancel");
  EXPECT_EQ(cancel.wait_for(0s), std::optional<int>(0)) << cancel.err();
}

TEST(Service, StatusListsNewestFirstFiltersAndPrintsNumbers) {
  Farm farm;
  Service svc(farm);
  auto a = svc.client({"submit", farm.write("alpha.json",
      R"({"name": "alpha-1", "tasks": [{"kernel": "noop", "count": 64}]})"), "--wait", "-q"});
  EXPECT_EQ(a.wait_for(0s), std::optional<int>(0)) << a.err();
  const std::string beta = svc.submit(farm.write("beta.json",
      R"({"name": "beta", "tasks": [{"kernel": "sleep", "count": 200, "size": 20000}]})"));

  auto all = svc.client({"status"}, "status-all");
  const std::string table = all.out();
  ASSERT_NE(table.find("beta"), std::string::npos) << table;
  EXPECT_LT(table.find("beta"), table.find("alpha-1")) << "newest first:\n" << table;

  auto json = svc.client({"status", "--json", "--name", "alpha*"}, "status-json");
  EXPECT_NE(json.out().find(R"("done":64)"), std::string::npos) << json.out();
  EXPECT_NE(json.out().find(R"("total":64)"), std::string::npos) << json.out();
  EXPECT_EQ(json.out().find("beta"), std::string::npos) << json.out();
  v1::StatusReply parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out(), &parsed).ok()) << json.out();
  ASSERT_EQ(parsed.jobs_size(), 1);
  EXPECT_EQ(parsed.jobs(0).done(), 64u);

  auto running = svc.client({"status", "--state", "running", "--json"}, "status-running");
  parsed.Clear();
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(running.out(), &parsed).ok()) << running.out();
  ASSERT_EQ(parsed.jobs_size(), 1) << running.out();
  EXPECT_EQ(parsed.jobs(0).job_id(), beta);
  auto none = svc.client({"status", "--state", "failed", "--json"}, "status-failed");
  EXPECT_EQ(none.out(), "{\"jobs\":[],\"error\":\"\"}\n");
  auto bad = svc.client({"status", "--state", "runing"}, "status-bad");
  EXPECT_EQ(bad.wait_for(0s), std::optional<int>(1));
  auto end = svc.client({"wait", beta, "-q"}, "wait-beta");
  EXPECT_EQ(end.wait_for(0s), std::optional<int>(0)) << end.err();
}

TEST(Service, WorkersListsTheConnectedWorkersAndTheirJobs) {
  Farm farm;
  Service svc(farm);
  v1::WorkersReply reply;
  // Both workers register at once; then the long job spreads over them.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    auto p = svc.client({"workers", "--json"}, "workers-idle");
    reply.Clear();
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(p.out(), &reply).ok()) << p.out() << p.err();
  } while (reply.workers_size() < 2 && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(reply.workers_size(), 2);
  for (const auto& w : reply.workers()) {
    EXPECT_TRUE(w.id() == "w0" || w.id() == "w1") << w.id();
    EXPECT_EQ(w.slots(), 2u);
    EXPECT_EQ(w.device(), "cpu");
    EXPECT_FALSE(w.host().empty());
    EXPECT_EQ(w.busy(), 0u);
    EXPECT_EQ(w.jobs_size(), 0);
  }
  const std::string id = svc.submit(farm.write("long.json",
      R"({"name": "long", "tasks": [{"kernel": "sleep", "count": 80, "size": 50000}]})"));
  bool busy = false;
  for (int i = 0; i < 50 && !busy; ++i) {
    auto p = svc.client({"workers", "--json"}, "workers-busy");
    reply.Clear();
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(p.out(), &reply).ok()) << p.out();
    busy = reply.workers_size() == 2;
    for (const auto& w : reply.workers()) {
      busy = busy && w.busy() == 2 && w.held() >= 2 && w.jobs_size() == 1 &&
             w.jobs(0).name() == "long" && w.jobs(0).job_id() == id;
    }
    if (!busy) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(busy) << reply.DebugString();
  auto table = svc.client({"workers"}, "workers-table");
  EXPECT_NE(table.out().find("long ("), std::string::npos) << table.out();
  auto end = svc.client({"wait", id, "-q"}, "wait-long");
  EXPECT_EQ(end.wait_for(0s), std::optional<int>(0)) << end.err();
}

TEST(Service, CancelSaysWhatItDidAndWaitShowsThePartialReportWithItsRate) {
  Farm farm;
  Service svc(farm);
  const std::string id = svc.submit(farm.write(
      "long.json", R"({"name": "long", "tasks": [{"kernel": "sleep", "count": 2000, "size": 10000}]})"));
  std::this_thread::sleep_for(800ms);
  auto c = svc.client({"cancel", id});
  EXPECT_EQ(c.wait_for(0s), std::optional<int>(0)) << c.err();
  EXPECT_NE(c.out().find("cancelled job 'long' (" + id + ") at "), std::string::npos) << c.out();
  EXPECT_NE(c.out().find("/2000 tasks"), std::string::npos) << c.out();

  auto w = svc.client({"wait", id, "--report", farm.path("partial.json")});
  EXPECT_EQ(w.wait_for(0s), std::optional<int>(2)) << w.err();
  EXPECT_NE(w.out().find("job long (" + id + ")"), std::string::npos) << "the table:\n" << w.out();
  EXPECT_NE(w.out().find("cancelled at"), std::string::npos) << w.out();
  const auto partial = read_report(farm.path("partial.json"));
  EXPECT_EQ(partial.state(), "cancelled");
  EXPECT_GT(partial.tasks_ok(), 0u);
  EXPECT_LT(partial.tasks_ok(), 2000u);
  const auto st = svc.status(id);
  ASSERT_EQ(st.jobs_size(), 1);
  EXPECT_GT(st.jobs(0).tasks_per_s(), 0) << "a cancelled job shows the rate it ran at";
  EXPECT_EQ(st.jobs(0).done(), partial.tasks_ok() + partial.tasks_failed());
}

}  // namespace
}  // namespace taskfarm::testing
