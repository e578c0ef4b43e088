// A job service on private endpoints for integration tests: taskfarm-sink --serve,
// taskfarm-ventilator --serve and workers, driven through the real `taskfarm` client.
#pragma once

#include <google/protobuf/util/json_util.h>

#include <optional>
#include <string>
#include <vector>

#include "farm.h"

namespace taskfarm::testing {

using namespace std::chrono_literals;

class Service {
 public:
  explicit Service(Farm& farm, int workers = 2, std::vector<std::string> vent_flags = {},
                   std::vector<std::string> sink_flags = {},
                   std::vector<std::string> worker_flags = {"--threads", "2"})
      : farm_(farm), submit_("ipc://" + farm.path("submit")) {
    sink_flags.insert(sink_flags.begin(), {"--serve", "--results-dir", farm.path("jobs")});
    // No results service on the default port unless a test asks: tests run side by side.
    if (std::find(sink_flags.begin(), sink_flags.end(), "--results-service") == sink_flags.end()) {
      sink_flags.insert(sink_flags.end(), {"--results-service", "off"});
    }
    sink_.emplace(farm.sink(sink_flags));
    vent_flags.insert(vent_flags.begin(), {"--serve", "--submit", submit_});
    // No dashboard unless a test asks: tests must not take port 8080.
    if (std::find(vent_flags.begin(), vent_flags.end(), "--http") == vent_flags.end()) {
      vent_flags.insert(vent_flags.end(), {"--http", "off"});
    }
    vent_.emplace(farm.ventilator(vent_flags));
    for (int i = 0; i < workers; ++i) {
      workers_.push_back(farm.worker("w" + std::to_string(i), worker_flags));
    }
    EXPECT_TRUE(vent_->wait_for_log("serving jobs", 10s)) << vent_->err();
  }
  ~Service() {
    vent_->signal(SIGTERM);
    sink_->signal(SIGTERM);
    EXPECT_EQ(vent_->wait_for(5s), std::optional<int>(0)) << vent_->err();
    EXPECT_EQ(sink_->wait_for(5s), std::optional<int>(0)) << sink_->err();
    for (auto& w : workers_) {
      EXPECT_TRUE(w.running()) << "workers stay up between jobs:\n" << w.err();
      w.signal(SIGTERM);
      EXPECT_EQ(w.wait_for(5s), std::optional<int>(0));
    }
  }

  // Starts `taskfarm ARGS...`. Returns: the running process.
  Process start_client(std::vector<std::string> args, const std::string& name = "client") {
    std::vector<std::string> full = {bin("taskfarm"), "--server", submit_, "--timeout", "5"};
    full.insert(full.end(), args.begin(), args.end());
    return Process(full, farm_.path(name));
  }
  // Runs `taskfarm ARGS...` to completion. Returns: the finished process.
  Process client(std::vector<std::string> args, const std::string& name = "client") {
    Process p = start_client(std::move(args), name);
    EXPECT_TRUE(p.wait_for(60s).has_value()) << name << " hung";
    return p;
  }
  std::string submit(const std::string& file) {
    auto p = client({"submit", file});
    EXPECT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
    std::string id = p.out();
    while (!id.empty() && id.back() == '\n') id.pop_back();
    EXPECT_EQ(id.size(), 16u) << id;
    return id;
  }
  v1::StatusReply status(const std::string& job = "") {
    auto p = job.empty() ? client({"status", "--json"}) : client({"status", job, "--json"});
    v1::StatusReply reply;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(p.out(), &reply).ok()) << p.out() << p.err();
    return reply;
  }
  const std::string& endpoint() const { return submit_; }
  Process& sink() { return *sink_; }
  Process& ventilator() { return *vent_; }

 private:
  Farm& farm_;
  std::string submit_;
  std::optional<Process> sink_, vent_;
  std::vector<Process> workers_;
};

}  // namespace taskfarm::testing
