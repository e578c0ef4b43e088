// Farm isolation (issue 15.3, 15.4): farm names on every message, TASKFARM_PORT_BASE, busy
// ports, and workers that share an id. Real binaries, real sockets.
#include <gtest/gtest.h>
#include <zmq.hpp>

#include <algorithm>
#include <random>
#include <set>

#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

size_t lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

TEST(Identity, AWorkerOfAnotherFarmGetsNoTaskAndBothSidesSayWhy) {
  Farm farm;
  auto sink = farm.sink({"--farm", "alpha"});
  auto stranger = farm.worker("stranger", {"--farm", "beta"});
  // Running, and already refusing the sink's heartbeats: its Hellos (one a second until it is
  // registered) reach the ventilator while the batch runs (1.5 s).
  ASSERT_TRUE(stranger.wait_for_log("a message of another farm (this is farm 'beta'", 20s))
      << stranger.err();
  auto member = farm.worker("member");  // no --farm: joins the ventilator's
  auto vent = farm.ventilator({"--farm", "alpha", "--kernel", "sleep", "--tasks", "60", "--size",
                               "50000", "--min-workers", "1"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(member, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 60u);
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).id(), "member");
  EXPECT_NE(member.err().find("joined farm 'alpha'"), std::string::npos) << member.err();
  EXPECT_NE(vent.err().find("a message of another farm (this is farm 'alpha'"), std::string::npos)
      << vent.err();
  // The batch-end Kill of farm alpha is not for it either: it is still waiting for its farm.
  EXPECT_TRUE(stranger.running());
  stranger.signal(SIGTERM);
  EXPECT_EXIT_CODE(stranger, 0, 10s);
}

TEST(Identity, ASinkIgnoresTheJobsOfAnotherFarmsVentilator) {
  Farm farm, other;
  auto sink = farm.sink();  // learns its farm from the first job
  auto worker = farm.worker("w", {"--threads", "2"});
  // 3 s of work: the stray ventilator below announces its job while this one runs.
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "100", "--size", "60000"});
  ASSERT_TRUE(sink.wait_for_log("joined farm", 20s)) << sink.err();
  // A second farm's ventilator, wrongly pointed at this farm's sink.
  Process stray({bin("taskfarm-ventilator"), "--farm", "beta", "--bind", other.tasks_endpoint(),
                 "--sink-results", "ipc://" + farm.path("results"), "--sink-control",
                 "ipc://" + farm.path("control"), "--kernel", "noop", "--tasks", "5",
                 "--wait-sink", "2"},
                other.path("stray"));
  EXPECT_TRUE(sink.wait_for_log("another farm", 20s)) << sink.err();
  EXPECT_EXIT_CODE(stray, 1, 20s);
  EXPECT_EQ(lines(stray.err().substr(stray.err().rfind("error"))), 1u) << stray.err();
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(worker, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 100u) << "the stray job neither replaced nor disturbed this one";
  EXPECT_EQ(r.tasks_total(), 100u);
  EXPECT_NE(sink.err().find("another farm"), std::string::npos) << sink.err();
  EXPECT_EQ(sink.err().find("ignoring job"), std::string::npos) << sink.err();
}

TEST(Identity, TwoWorkersWithOneIdAreTwoWorkersInTheReport) {
  Farm farm;
  auto sink = farm.sink();
  auto a = farm.worker("twin", {"--threads", "2"});
  auto b = farm.worker("twin", {"--threads", "2"});
  auto vent = farm.ventilator(
      {"--kernel", "sleep", "--tasks", "200", "--size", "3000", "--min-workers", "2"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(a, 0, 10s);
  EXPECT_EXIT_CODE(b, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 200u);
  std::set<std::string> ids;
  uint64_t tasks = 0;
  for (const auto& w : r.workers()) {
    ids.insert(w.id());
    EXPECT_GT(w.tasks(), 0u) << w.id();
    tasks += w.tasks();
  }
  EXPECT_EQ(ids, (std::set<std::string>{"twin", "twin~2"}));
  EXPECT_EQ(tasks, 200u);
  const std::string renamed = "this one is 'twin~2' in reports";
  EXPECT_NE((a.err() + b.err()).find(renamed), std::string::npos) << a.err() << b.err();
  EXPECT_NE(vent.err().find("give each worker its own --id"), std::string::npos) << vent.err();
}

// Returns: a base B with B, B+1, B+2 free on this host (the farm's ports).
int free_port_base() {
  std::mt19937 rng(std::random_device{}());
  zmq::context_t ctx;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int base = std::uniform_int_distribution<int>(20000, 40000)(rng);
    bool free = true;
    for (int p = base; p < base + 3 && free; ++p) {
      zmq::socket_t s(ctx, zmq::socket_type::pull);
      s.set(zmq::sockopt::linger, 0);
      try {
        s.bind("tcp://*:" + std::to_string(p));
      } catch (const zmq::error_t&) {
        free = false;
      }
    }
    if (free) return base;
  }
  return 0;
}

TEST(Identity, TaskfarmPortBaseMovesTheFarmAndABusyPortSaysWhatToDo) {
  Farm farm;
  const int base = free_port_base();
  ASSERT_NE(base, 0);
  const std::vector<std::string> env = {"TASKFARM_PORT_BASE=" + std::to_string(base)};
  // No endpoint flag anywhere: every program takes the moved defaults.
  Process sink({bin("taskfarm-sink"), "--report", farm.path("report.json")}, farm.path("sink"),
               env);
  ASSERT_TRUE(sink.wait_for_log(std::to_string(base + 1), 10s)) << sink.err();
  Process second({bin("taskfarm-sink"), "--report", farm.path("second.json")},
                 farm.path("second"), env);
  EXPECT_EXIT_CODE(second, 1, 10s);
  EXPECT_NE(second.err().find("address already in use (another farm on this host? give all of "
                              "this farm's programs TASKFARM_PORT_BASE="),
            std::string::npos)
      << second.err();
  EXPECT_EQ(lines(second.err()), 1u) << second.err();
  Process worker({bin("taskfarm-worker"), "--ventilator", "127.0.0.1", "--sink", "127.0.0.1",
                  "--device", "cpu"},
                 farm.path("worker"), env);
  Process vent({bin("taskfarm-ventilator"), "--sink", "127.0.0.1", "--kernel", "reduce", "--tasks",
                "30", "--size", "1000"},
               farm.path("vent"), env);
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(worker, 0, 10s);
  EXPECT_EQ(farm.report().tasks_ok(), 30u);

  Process bad({bin("taskfarm-ventilator"), "--kernel", "noop", "--tasks", "1"}, farm.path("bad"),
              {"TASKFARM_PORT_BASE=abc"});
  EXPECT_EXIT_CODE(bad, 1, 10s);
  EXPECT_NE(bad.err().find("TASKFARM_PORT_BASE='abc' is not a port"), std::string::npos)
      << bad.err();
  EXPECT_EQ(lines(bad.err()), 1u) << bad.err();
}

}  // namespace
}  // namespace taskfarm::testing
