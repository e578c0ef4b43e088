// A farm whose head node can be killed and started again (issue 14): the sink and the
// ventilator of a Farm's endpoints, each restartable with its --state folder, workers, and the
// `taskfarm` client. Every start gets its own log files (sink-1, sink-2, ...), so a failed test
// shows each life of a role.
#pragma once

#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "farm.h"

namespace taskfarm::testing {

using namespace std::chrono_literals;

class Head {
 public:
  struct Options {
    bool serve = true;
    bool sink_state = true;
    bool vent_state = true;
    std::vector<std::string> vent_flags = {};  // more ventilator flags
    std::vector<std::string> sink_flags = {};
  };

  Head(Farm& farm, Options o) : farm_(farm), o_(std::move(o)) {}
  ~Head() {
    // Whatever a test left running goes (the Process destructors SIGKILL and reap).
    for (auto& w : workers_) w.signal(SIGKILL);
  }

  std::string results() const { return "ipc://" + farm_.path("results"); }
  std::string control() const { return "ipc://" + farm_.path("control"); }
  std::string submit_ep() const { return "ipc://" + farm_.path("submit"); }
  std::string jobs_dir() const { return farm_.path("jobs"); }

  // Starts the sink (again). `state`: with its --state folder (the Options' choice when unset).
  Process& start_sink(std::optional<bool> state = std::nullopt) {
    std::vector<std::string> args = {bin("taskfarm-sink"), "--bind", results(), "--control",
                                     control()};
    if (o_.serve) {
      args.insert(args.end(), {"--serve", "--results-dir", jobs_dir(), "--results-service", "off"});
    } else {
      args.insert(args.end(), {"--report", farm_.path("report.json"), "-q"});
    }
    if (state.value_or(o_.sink_state)) args.insert(args.end(), {"--state", farm_.path("sink-state")});
    args.insert(args.end(), o_.sink_flags.begin(), o_.sink_flags.end());
    sink_.reset();
    sink_.emplace(args, farm_.path(fmt("sink", ++sink_starts_)));
    return *sink_;
  }

  // Starts the ventilator (again) with `extra` flags (a one-shot batch: its --job).
  Process& start_vent(std::vector<std::string> extra = {},
                      std::optional<bool> state = std::nullopt) {
    std::vector<std::string> args = {bin("taskfarm-ventilator"), "--bind", farm_.tasks_endpoint(),
                                     "--sink-results", results(), "--sink-control", control(),
                                     "--worker-timeout", "2"};
    if (o_.serve) args.insert(args.end(), {"--serve", "--submit", submit_ep(), "--http", "off"});
    if (state.value_or(o_.vent_state)) {
      args.insert(args.end(), {"--state", farm_.path("vent-state")});
    }
    args.insert(args.end(), o_.vent_flags.begin(), o_.vent_flags.end());
    args.insert(args.end(), extra.begin(), extra.end());
    vent_.reset();
    vent_.emplace(args, farm_.path(fmt("ventilator", ++vent_starts_)));
    if (o_.serve && !vent_->wait_for_log("serving jobs", 20s)) {
      ADD_FAILURE() << "ventilator " << vent_starts_ << " does not serve (running: "
                    << vent_->running() << "): " << vent_->err() << stacks(*vent_);
    }
    return *vent_;
  }

  // Returns: the threads' stacks of a process that seems stuck (gdb, where installed).
  std::string stacks(Process& p) {
    if (!p.running() || std::system("command -v gdb >/dev/null 2>&1") != 0) return "";
    const std::string out = farm_.path("stacks-" + std::to_string(p.pid()) + ".txt");
    const std::string cmd = "gdb -p " + std::to_string(p.pid()) +
                            " -batch -ex 'thread apply all bt' >" + out + " 2>&1";
    (void)std::system(cmd.c_str());
    return "\n" + read_file(out);
  }

  Process& add_worker(std::vector<std::string> flags = {"--threads", "2"}) {
    const std::string id = "w" + std::to_string(workers_.size());
    std::vector<std::string> args = {bin("taskfarm-worker"), "--ventilator", farm_.tasks_endpoint(),
                                     "--sink-results", results(), "--sink-control", control(),
                                     "--id", id, "--device", "cpu"};
    args.insert(args.end(), flags.begin(), flags.end());
    workers_.emplace_back(args, farm_.path("worker-" + id));
    return workers_.back();
  }

  // kill -9, and reaps it.
  static void crash(Process& p) {
    p.signal(SIGKILL);
    EXPECT_TRUE(p.wait_for(10s).has_value());
  }
  void crash_sink() { crash(*sink_); }
  void crash_vent() { crash(*vent_); }

  Process& sink() { return *sink_; }
  Process& vent() { return *vent_; }
  std::vector<Process>& workers() { return workers_; }

  // Runs `taskfarm --timeout TIMEOUT ARGS...` against the job service and waits for it.
  // Returns: the finished process.
  Process client(std::vector<std::string> args, const std::string& name = "client",
                 int timeout_s = 2) {
    std::vector<std::string> full = {bin("taskfarm"), "--server", submit_ep(), "--timeout",
                                     std::to_string(timeout_s)};
    full.insert(full.end(), args.begin(), args.end());
    Process p(full, farm_.path(fmt(name, ++clients_)));
    EXPECT_TRUE(p.wait_for(90s).has_value()) << name << " hung";
    return p;
  }
  // Starts `taskfarm ARGS...` without waiting for it.
  Process client_async(std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> full = {bin("taskfarm"), "--server", submit_ep(), "--timeout", "1"};
    full.insert(full.end(), args.begin(), args.end());
    return Process(full, farm_.path(fmt(name, ++clients_)));
  }

  std::string submit(const std::string& job_json, const std::string& name) {
    auto p = client({"submit", farm_.write(name + ".json", job_json)});
    EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
    std::string id = p.out();
    while (!id.empty() && id.back() == '\n') id.pop_back();
    EXPECT_EQ(id.size(), 16u) << id << p.err();
    return id;
  }

  // Returns: the job's status, or nullopt when the service did not answer.
  std::optional<v1::JobStatus> status(const std::string& job) {
    auto p = client({"status", job, "--json"});
    v1::StatusReply reply;
    if (p.wait_for(0s) != std::optional<int>(0) ||
        !google::protobuf::util::JsonStringToMessage(p.out(), &reply).ok() ||
        reply.jobs_size() != 1) {
      return std::nullopt;
    }
    return reply.jobs(0);
  }

  // Waits until the job has at least `done` tasks acknowledged. Returns: whether it did.
  bool wait_progress(const std::string& job, uint64_t done, std::chrono::seconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto st = status(job); st && st->done() >= done) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Returns: the report the sink wrote for the job in its results folder.
  v1::Report job_report(const std::string& job) const {
    v1::Report rep;
    const std::string json = read_file(jobs_dir() + "/" + job + "/report.json");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &rep).ok()) << json;
    return rep;
  }

  // SIGTERM to every role; each must exit 0.
  void stop() {
    if (vent_ && vent_->running()) {
      vent_->signal(SIGTERM);
      EXPECT_EQ(vent_->wait_for(10s), std::optional<int>(0)) << vent_->err();
    }
    if (sink_ && sink_->running()) {
      sink_->signal(SIGTERM);
      EXPECT_EQ(sink_->wait_for(10s), std::optional<int>(0)) << sink_->err();
    }
    for (auto& w : workers_) {
      if (!w.running()) continue;
      w.signal(SIGTERM);
      EXPECT_EQ(w.wait_for(10s), std::optional<int>(0)) << w.err();
    }
  }

 private:
  static std::string fmt(const std::string& name, int n) { return name + "-" + std::to_string(n); }

  Farm& farm_;
  Options o_;
  std::optional<Process> sink_, vent_;
  std::vector<Process> workers_;
  int sink_starts_ = 0, vent_starts_ = 0, clients_ = 0;
};

// Returns: clean_digest(job_json), computed once per job text in this test process.
inline std::string clean_digest_cached(const std::string& job_json) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(job_json);
  if (it == cache.end()) it = cache.emplace(job_json, clean_digest(job_json)).first;
  return it->second;
}

}  // namespace taskfarm::testing
