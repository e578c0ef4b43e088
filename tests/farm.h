// Test harness for integration tests: starts the real taskfarm binaries as child processes on
// private ipc:// endpoints (or free loopback ports), collects their output, reads the sink's
// JSON report, and never leaves a process behind (SIGKILL on destruction, PR_SET_PDEATHSIG).
#pragma once

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "taskfarm.pb.h"

namespace taskfarm::testing {

// Returns: the path of program `name`: from $TASKFARM_BIN_DIR when set, else next to this test
// binary or in its ../bin (a bundle copied to another machine), else in the build's bin folder.
inline std::string bin(const std::string& name) {
  std::vector<std::filesystem::path> dirs;
  if (const char* env = std::getenv("TASKFARM_BIN_DIR"); env && *env) dirs.emplace_back(env);
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back(self.parent_path());
    dirs.push_back(self.parent_path().parent_path() / "bin");
  }
  for (const auto& d : dirs) {
    const auto p = d / name;
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return std::string(TASKFARM_BIN_DIR) + "/" + name;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Process {
 public:
  Process(std::vector<std::string> args, std::string log_prefix, std::vector<std::string> env = {})
      : log_prefix_(std::move(log_prefix)) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string out = log_prefix_ + ".out", err = log_prefix_ + ".err";
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      const int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, 0);
      for (auto& kv : env) putenv(kv.data());
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)), status_(o.status_), log_prefix_(std::move(o.log_prefix_)) {}
  ~Process() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
  }

  int pid() const { return pid_; }
  void signal(int sig) const { kill(pid_, sig); }

  bool running() {
    poll();
    return !status_;
  }

  // Returns: the exit code (128+N when killed by signal N), or nullopt when still running
  // after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!poll() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
  }

  std::string out() const { return read_file(log_prefix_ + ".out"); }

  // Returns: whether `text` appeared on the process's stderr within `timeout`.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (err().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  std::string err() const { return read_file(log_prefix_ + ".err"); }

 private:
  bool poll() {
    if (status_) return true;
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    return false;
  }

  int pid_ = -1;
  std::optional<int> status_;
  std::string log_prefix_;
};

// A private set of endpoints and a folder for logs and reports.
class Farm {
 public:
  Farm() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("taskfarm-") + info->test_suite_name() + "-" + info->name() + "-" +
            std::to_string(getpid()) + "-" + std::to_string(next_id()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    tasks_ = "ipc://" + (dir_ / "tasks").string();
    results_ = "ipc://" + (dir_ / "results").string();
    control_ = "ipc://" + (dir_ / "control").string();
  }
  ~Farm() {
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A test may hold several farms at once: each gets its own folder.
  static int next_id() {
    static int id = 0;
    return ++id;
  }
  const std::string& tasks_endpoint() const { return tasks_; }

  Process sink(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {bin("taskfarm-sink"), "--bind", results_, "--control",
                                     control_, "--report", path("report.json")};
    args.insert(args.end(), extra.begin(), extra.end());
    return Process(args, path("sink"));
  }
  Process worker(const std::string& id, std::vector<std::string> extra = {},
                 std::vector<std::string> env = {}) {
    std::vector<std::string> args = {bin("taskfarm-worker"), "--ventilator", tasks_,
                                     "--sink-results", results_, "--sink-control", control_,
                                     "--id", id};
    if (std::find(extra.begin(), extra.end(), "--device") == extra.end()) {
      args.insert(args.end(), {"--device", "cpu"});  // tests are CPU workers unless they say
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Process(args, path("worker-" + id), std::move(env));
  }
  Process ventilator(std::vector<std::string> extra) {
    std::vector<std::string> args = {bin("taskfarm-ventilator"), "--bind", tasks_,
                                     "--sink-results", results_, "--sink-control", control_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Process(args, path("ventilator"));
  }

  // Returns: the sink's JSON report, parsed into the same protobuf message it was written from.
  v1::Report report() const {
    v1::Report rep;
    const std::string json = read_file(path("report.json"));
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &rep).ok()) << json;
    return rep;
  }

  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }

 private:
  std::filesystem::path dir_;
  std::string tasks_, results_, control_;
};

inline constexpr std::chrono::seconds kBatchTimeout{60};

// Returns: the digest of `job_json` run as a clean one-shot batch on one local worker: what a
// run with faults, several jobs or several hosts must reproduce.
std::string clean_digest(const std::string& job_json);

// Waits for a process and checks its exit code, with its stderr on failure.
#define EXPECT_EXIT_CODE(proc, code, timeout)                                  \
  do {                                                                         \
    auto _rc = (proc).wait_for(timeout);                                       \
    EXPECT_EQ(_rc, std::optional<int>(code)) << #proc << " stderr:\n" << (proc).err(); \
  } while (0)

inline std::string clean_digest(const std::string& job_json) {
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("clean", {"--threads", "4"});
  auto vent = farm.ventilator({"--job", farm.write("job.json", job_json)});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, std::chrono::seconds(10));
  return farm.report().result_digest();
}

}  // namespace taskfarm::testing
