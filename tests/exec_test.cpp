// Command tasks (kernel exec), task outputs and sweeps, with real processes: stdout comes back
// into the results directory and through `taskfarm results`; failing, hanging and crashing
// commands; cancel kills running commands at once and leaves none behind; workers without
// --allow-exec never get them; oversize outputs; a sweep's index maps each output to its point.
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "farm.h"
#include "service.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

std::vector<json> index_of(const std::string& path) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line));
  return lines;
}

const std::vector<std::string> kExecWorker = {"--threads", "4", "--allow-exec"};

Service exec_service(Farm& farm, int workers = 1, std::vector<std::string> worker_flags = kExecWorker) {
  return Service(farm, workers, {}, {"--results-service", "ipc://" + farm.path("results-service")},
                 std::move(worker_flags));
}

TEST(Exec, AThousandCommandsReturnTheirStdoutHereAndThroughTaskfarmResults) {
  Farm farm;
  Service svc(farm, 1, {}, {"--results-service", "ipc://" + farm.path("results-service")},
              kExecWorker);
  const std::string id = svc.submit(farm.write("job.json", R"({"name": "echo",
      "tasks": [{"kernel": "exec", "count": 1000, "shell": true,
                 "argv": ["echo task {index} of job {job_id} attempt $TASKFARM_ATTEMPT id $TASKFARM_TASK_ID"]}]})"));
  auto wait = svc.client({"wait", id, "-q"});
  ASSERT_EQ(wait.wait_for(0s), std::optional<int>(0)) << wait.err();
  const std::string dir = farm.path("jobs/" + id);
  const auto lines = index_of(dir + "/index.jsonl");
  ASSERT_EQ(lines.size(), 1000u);
  std::set<uint64_t> seen;
  for (const auto& l : lines) {
    const uint64_t t = l["task_id"];
    seen.insert(t);
    EXPECT_EQ(l["status"], "ok");
    EXPECT_EQ(l["output"], "outputs/" + std::to_string(t));
    EXPECT_EQ(read_file(dir + "/outputs/" + std::to_string(t)),
              "task " + std::to_string(t) + " of job " + id + " attempt 1 id " +
                  std::to_string(t) + "\n");
  }
  EXPECT_EQ(seen.size(), 1000u);
  // The same, fetched remotely into another folder.
  auto fetch = svc.client({"results", id, "--out", farm.path("fetched"), "--sink",
                           "ipc://" + farm.path("results-service")},
                          "fetch");
  ASSERT_EQ(fetch.wait_for(0s), std::optional<int>(0)) << fetch.err();
  EXPECT_EQ(read_file(farm.path("fetched/index.jsonl")), read_file(dir + "/index.jsonl"));
  for (uint64_t t : {0ull, 1ull, 499ull, 999ull}) {
    EXPECT_EQ(read_file(farm.path("fetched/outputs/" + std::to_string(t))),
              read_file(dir + "/outputs/" + std::to_string(t)));
  }
}

TEST(Exec, FailingHangingAndCrashingCommandsFailWithTheirReason) {
  Farm farm;
  auto svc = exec_service(farm);
  const std::string id = svc.submit(farm.write("job.json", R"({"name": "bad", "max_attempts": 3,
      "tasks": [
        {"kernel": "exec", "count": 1, "shell": true, "argv": ["echo oops >&2; exit 3"]},
        {"kernel": "exec", "count": 1, "argv": ["sleep", "30"], "timeout_s": 0.5},
        {"kernel": "exec", "count": 1, "shell": true, "argv": ["kill -SEGV $$"]},
        {"kernel": "exec", "count": 1, "shell": true, "argv": ["exit 1"], "retry_failures": true},
        {"kernel": "exec", "count": 1, "argv": ["/no/such/program"]},
        {"kernel": "exec", "count": 2, "argv": ["true"]}]})"));
  auto wait = svc.client({"wait", id, "-q", "--report", farm.path("r.json")});
  EXPECT_EQ(wait.wait_for(0s), std::optional<int>(2)) << wait.err();
  v1::Report rep;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("r.json")), &rep).ok());
  EXPECT_EQ(rep.tasks_ok(), 2u);
  EXPECT_EQ(rep.tasks_failed(), 5u);
  std::map<uint32_t, v1::TaskFailure> by_task;
  for (const auto& f : rep.failures()) by_task[f.task_id()] = f;
  ASSERT_EQ(by_task.size(), 5u);
  EXPECT_NE(by_task[0].error().find("exit status 3: oops"), std::string::npos) << by_task[0].error();
  EXPECT_EQ(by_task[0].attempts(), 1u) << "a failing command is final unless the job says";
  EXPECT_NE(by_task[1].error().find("timed out"), std::string::npos) << by_task[1].error();
  EXPECT_NE(by_task[2].error().find("signal 11"), std::string::npos) << by_task[2].error();
  EXPECT_EQ(by_task[3].attempts(), 3u) << "retry_failures: retried up to max_attempts";
  EXPECT_NE(by_task[4].error().find("cannot run"), std::string::npos) << by_task[4].error();
  const auto lines = index_of(farm.path("jobs/" + id + "/index.jsonl"));
  EXPECT_EQ(lines.size(), 7u);
}

TEST(Exec, CancelKillsRunningCommandsWithinASecondAndLeavesNoProcess) {
  Farm farm;
  auto svc = exec_service(farm);
  const std::string pids = farm.path("pids");
  std::filesystem::create_directories(pids);
  const std::string id = svc.submit(farm.write("job.json", R"({"name": "long",
      "tasks": [{"kernel": "exec", "count": 8, "shell": true,
                 "argv": ["sleep 300 & echo $! > )" + pids + R"(/child-{index}; echo $$ > )" + pids +
                                                       R"(/sh-{index}; wait"]}]})"));
  // Wait until four commands run (the worker has four slots).
  std::vector<int> procs;
  for (int i = 0; i < 200 && procs.size() < 8; ++i) {
    procs.clear();
    for (const auto& e : std::filesystem::directory_iterator(pids)) {
      const std::string text = read_file(e.path().string());
      if (!text.empty() && text.back() == '\n') procs.push_back(std::stoi(text));
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(procs.size(), 8u) << "four commands with a child each";
  auto cancel = svc.client({"cancel", id});
  ASSERT_EQ(cancel.wait_for(0s), std::optional<int>(0)) << cancel.err();
  const auto t0 = std::chrono::steady_clock::now();
  auto alive = [](int pid) {
    if (kill(pid, 0) != 0) return false;
    // A zombie waiting for its reaper is dead too.
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
  };
  auto any_alive = [&] {
    for (int pid : procs) {
      if (alive(pid)) return true;
    }
    return false;
  };
  while (any_alive() && std::chrono::steady_clock::now() - t0 < 3s) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(any_alive());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "commands killed within a second";
}

TEST(Exec, WorkersWithoutAllowExecNeverGetCommandTasks) {
  Farm farm;
  auto sink = farm.sink({"--results-dir", farm.path("res")});
  auto plain = farm.worker("plain", {"--threads", "2"});
  auto exec = farm.worker("exec", {"--threads", "1", "--allow-exec", "--prefetch", "1"});
  auto vent = farm.ventilator({"--job", farm.write("job.json", R"({"tasks": [
      {"kernel": "exec", "count": 20, "argv": ["sleep", "0.02"]},
      {"kernel": "sleep", "count": 40, "size": 20000}]})")});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_failed(), 0u);
  EXPECT_EQ(rep.tasks_ok(), 60u);
  // A command task on the plain worker would have failed ("unknown kernel 'exec'").
  for (const auto& w : rep.workers()) {
    if (w.id() == "plain") {
      EXPECT_LE(w.tasks(), 40u) << "plain ran command tasks";
    }
  }
}

TEST(Exec, MaxAttemptsFlagAppliesToJobFilesAndTheFileWins) {
  // The ventilator's --max-attempts is the default for a job file that does not say (it was
  // once filled in as 3 before the flag applied); a file's own max_attempts wins over it.
  for (const auto& [file_says, flag, expected] :
       {std::tuple{"", "5", 5u}, std::tuple{R"("max_attempts": 2,)", "5", 2u}}) {
    Farm farm;
    auto sink = farm.sink();
    auto w = farm.worker("w", kExecWorker);
    auto vent = farm.ventilator(
        {"--max-attempts", flag, "--job",
         farm.write("job.json", std::string(R"({"name": "poison", )") + file_says +
                                    R"( "tasks": [{"kernel": "exec", "argv": ["false"],
                                    "count": 1, "retry_failures": true}]})")});
    EXPECT_EXIT_CODE(vent, 2, kBatchTimeout);
    EXPECT_EXIT_CODE(sink, 2, 10s);
    const auto rep = farm.report();
    ASSERT_EQ(rep.failures_size(), 1);
    EXPECT_EQ(rep.failures(0).attempts(), expected) << file_says;
  }
}

TEST(Exec, OutputsLargerThanTheLimitFailTheTaskNotTheFarm) {
  Farm farm;
  auto svc = exec_service(farm, 1, {"--threads", "2", "--allow-exec", "--max-output-mb", "1"});
  const std::string id = svc.submit(farm.write("job.json", R"({"tasks": [
      {"kernel": "exec", "count": 1, "argv": ["head", "-c", "2000000", "/dev/zero"]},
      {"kernel": "exec", "count": 1, "argv": ["head", "-c", "1000000", "/dev/zero"]}]})"));
  auto wait = svc.client({"wait", id, "-q", "--report", farm.path("r.json")});
  EXPECT_EQ(wait.wait_for(0s), std::optional<int>(2)) << wait.err();
  v1::Report rep;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("r.json")), &rep).ok());
  EXPECT_EQ(rep.tasks_ok(), 1u);
  ASSERT_EQ(rep.failures_size(), 1);
  EXPECT_NE(rep.failures(0).error().find("larger than"), std::string::npos) << rep.failures(0).error();
  EXPECT_EQ(std::filesystem::file_size(farm.path("jobs/" + id + "/outputs/1")), 1000000u);
}

TEST(Exec, ASweepsIndexMapsEveryOutputToItsPoint) {
  Farm farm;
  auto svc = exec_service(farm);
  const std::string id = svc.submit(farm.write("job.json", R"({"name": "grid", "tasks": [
      {"kernel": "exec", "argv": ["echo", "{x}:{mode}:$TASKFARM_PARAM_X"],
       "params": {"grid": {"x": [1, 2.5, -3], "mode": ["fast", "slow"]}}}]})"));
  auto wait = svc.client({"wait", id, "-q"});
  ASSERT_EQ(wait.wait_for(0s), std::optional<int>(0)) << wait.err();
  const std::string dir = farm.path("jobs/" + id);
  const auto lines = index_of(dir + "/index.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  std::set<std::string> points;
  for (const auto& l : lines) {
    const std::string x = l["params"]["x"], mode = l["params"]["mode"];
    points.insert(x + "/" + mode);
    // No shell: $TASKFARM_PARAM_X stays as it is, the placeholders are expanded.
    EXPECT_EQ(read_file(dir + "/" + l["output"].get<std::string>()),
              x + ":" + mode + ":$TASKFARM_PARAM_X\n");
  }
  EXPECT_EQ(points, (std::set<std::string>{"1/fast", "1/slow", "2.5/fast", "2.5/slow",
                                           "-3/fast", "-3/slow"}));
}

TEST(Exec, AFetchInterruptedMidJobResumesWithoutDuplicates) {
  Farm farm;
  auto svc = exec_service(farm);
  const std::string id = svc.submit(farm.write("job.json", R"({"tasks": [
      {"kernel": "exec", "count": 40, "shell": true, "argv": ["sleep 0.05; echo {index}"]}]})"));
  std::this_thread::sleep_for(200ms);
  const std::string sink_ep = "ipc://" + farm.path("results-service");
  auto early = svc.client({"results", id, "--out", farm.path("out"), "--sink", sink_ep,
                           "--no-wait", "-q"},
                          "early");
  EXPECT_EQ(early.wait_for(0s), std::optional<int>(0)) << early.err();
  const auto partial = index_of(farm.path("out/index.jsonl")).size();
  EXPECT_LT(partial, 40u);
  auto rest = svc.client({"results", id, "--out", farm.path("out"), "--sink", sink_ep, "-q"},
                         "rest");
  EXPECT_EQ(rest.wait_for(0s), std::optional<int>(0)) << rest.err();
  std::set<uint64_t> ids;
  const auto lines = index_of(farm.path("out/index.jsonl"));
  for (const auto& l : lines) ids.insert(l["task_id"].get<uint64_t>());
  EXPECT_EQ(lines.size(), 40u);
  EXPECT_EQ(ids.size(), 40u);
}

TEST(Exec, AJobServiceWithoutKeysOffLoopbackRefusesCommandTasks) {
  Farm farm;
  auto sink = farm.sink({"--serve", "--results-service", "off"});
  auto vent = farm.ventilator({"--serve", "--submit", "tcp://0.0.0.0:0", "--http", "off"});
  ASSERT_TRUE(vent.wait_for_log("serving jobs on", 10s)) << vent.err();
  const std::string err = vent.err();
  const auto at = err.find("serving jobs on tcp://0.0.0.0:");
  ASSERT_NE(at, std::string::npos) << err;
  const std::string port = err.substr(at + 30, err.find(';', at) - at - 30);
  Process p({bin("taskfarm"), "--server", "127.0.0.1:" + port, "submit",
             farm.write("job.json", R"({"tasks": [{"kernel": "exec", "count": 1, "argv": ["true"]}]})")},
            farm.path("client"));
  EXPECT_EQ(p.wait_for(10s), std::optional<int>(1));
  EXPECT_NE(p.err().find("exec jobs need CurveZMQ keys"), std::string::npos) << p.err();
  vent.signal(SIGTERM);
  sink.signal(SIGTERM);
  EXPECT_EXIT_CODE(vent, 0, 5s);
  EXPECT_EXIT_CODE(sink, 0, 5s);
}

}  // namespace
}  // namespace taskfarm::testing
