// CurveZMQ: only workers and clients whose keys are authorized get work or can send results.
#include <zmq.hpp>

#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

struct Keys {
  explicit Keys(Farm& farm) : dir(farm.path("keys")), auth(farm.path("authorized")) {
    std::filesystem::create_directories(auth);
    for (const char* name : {"head", "good", "intruder"}) {
      Process p({bin("taskfarm"), "keygen", name, "--dir", dir}, farm.path(std::string("keygen-") + name));
      EXPECT_EQ(p.wait_for(5s), std::optional<int>(0)) << p.err();
    }
    for (const char* name : {"head", "good"}) {  // the intruder's key is not authorized
      std::filesystem::copy_file(dir + "/" + name + ".pub", auth + "/" + name + ".pub");
    }
  }
  std::vector<std::string> server() const {
    return {"--curve-secret", dir + "/head.key", "--authorized-keys", auth};
  }
  std::vector<std::string> client(const std::string& name) const {
    return {"--curve-secret", dir + "/" + name + ".key", "--server-key", dir + "/head.pub"};
  }
  std::string dir, auth;
};

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Security, AuthorizedWorkerGetsWorkOverCurve) {
  Farm farm;
  Keys keys(farm);
  auto sink = farm.sink(keys.server());
  auto w = farm.worker("good", keys.client("good"));
  auto vent = farm.ventilator(std::vector<std::string>{"--kernel", "saxpy", "--tasks", "40",
                                                       "--size", "1000"} +
                              keys.server() + std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 40u);
}

TEST(Security, UnknownOrMissingKeysGetNothingAndCannotInjectResults) {
  Farm farm;
  Keys keys(farm);
  auto sink = farm.sink(keys.server());
  auto vent = farm.ventilator(std::vector<std::string>{"--kernel", "noop", "--tasks", "50"} +
                              keys.server() + std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  auto intruder = farm.worker("intruder", keys.client("intruder"));
  auto keyless = farm.worker("keyless");
  // A raw peer without CURVE tries to push a forged result batch to the sink.
  zmq::context_t ctx;
  zmq::socket_t forger(ctx, zmq::socket_type::push);
  forger.set(zmq::sockopt::linger, 0);
  forger.connect("ipc://" + farm.path("results"));
  v1::Envelope forged;
  forged.set_version(1);
  forged.mutable_results()->add_results()->set_task_id(0);
  (void)forger.send(zmq::buffer(forged.SerializeAsString()), zmq::send_flags::dontwait);
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(vent.running());  // nobody authorized has done anything yet
  EXPECT_TRUE(vent.err().find("joined") == std::string::npos) << vent.err();
  auto good = farm.worker("good", keys.client("good"));
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 50u);
  EXPECT_EQ(r.rejected_messages(), 0u) << "the forged frame never got past the handshake";
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).id(), "good");
  EXPECT_NE(vent.err().find("unknown key"), std::string::npos) << vent.err();
}

TEST(Security, BadKeyFilesAreOneLineErrors) {
  Farm farm;
  Keys keys(farm);
  const std::string garbage = farm.write("garbage.key", "not a key\n");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{bin("taskfarm-sink"), "--curve-secret", farm.path("none.key"), "--authorized-keys", keys.auth},
       "none.key"},
      {{bin("taskfarm-sink"), "--curve-secret", garbage, "--authorized-keys", keys.auth},
       "not a CURVE key"},
      {{bin("taskfarm-sink"), "--curve-secret", keys.dir + "/head.key"}, "--authorized-keys"},
      {{bin("taskfarm-sink"), "--curve-secret", keys.dir + "/head.key", "--authorized-keys",
        farm.path("nodir")},
       "nodir"},
      {{bin("taskfarm-worker"), "--device", "cpu", "--curve-secret", keys.dir + "/good.key"},
       "--server-key"},
      {{bin("taskfarm-worker"), "--device", "cpu", "--server-key", keys.dir + "/head.pub"},
       "--curve-secret"},
  };
  for (const auto& [args, expect] : cases) {
    Process p(args, farm.path("p"));
    EXPECT_EQ(p.wait_for(5s), std::optional<int>(1)) << args[0] << " " << expect;
    const std::string err = p.err();
    EXPECT_NE(err.find(expect), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// A refused client or worker says why at once instead of "no answer" or a silent wait.
TEST(Security, RefusedClientsAndWorkersSayWhy) {
  Farm farm;
  Keys keys(farm);
  const std::string submit = "ipc://" + farm.path("submit");
  // No TCP ports: tests run side by side.
  auto sink = farm.sink(keys.server() +
                        std::vector<std::string>{"--serve", "--results-service", "off"});
  auto vent = farm.ventilator(std::vector<std::string>{"--serve", "--submit", submit, "--http", "off"} +
                              keys.server() +
                              std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  ASSERT_TRUE(vent.wait_for_log("serving jobs", 10s)) << vent.err();
  auto client = [&](const std::vector<std::string>& key_args, const std::string& name) {
    // A long --timeout: the reason must come from the handshake, not from the timeout.
    Process p(std::vector<std::string>{bin("taskfarm"), "--server", submit, "--timeout", "60"} +
                  key_args + std::vector<std::string>{"status"},
              farm.path(name));
    EXPECT_TRUE(p.wait_for(20s).has_value()) << name << " waited for its timeout";
    return p;
  };
  auto intruder = client(keys.client("intruder"), "intruder");
  EXPECT_EQ(intruder.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(intruder.err().find("the server refused our key (not authorized)"), std::string::npos)
      << intruder.err();
  auto wrong_server = client({"--curve-secret", keys.dir + "/good.key", "--server-key",
                              keys.dir + "/intruder.pub"},
                             "wrong-server-key");
  EXPECT_EQ(wrong_server.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(wrong_server.err().find("the server's key does not match"), std::string::npos)
      << wrong_server.err();
  auto keyless = client({}, "keyless");
  EXPECT_EQ(keyless.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(keyless.err().find("requires CurveZMQ keys"), std::string::npos)
      << keyless.err();
  auto good = client(keys.client("good"), "good");
  EXPECT_EQ(good.wait_for(0s), std::optional<int>(0)) << good.err();

  auto w = farm.worker("intruder", keys.client("intruder"));
  EXPECT_TRUE(w.wait_for_log("cannot register with the ventilator at", 10s)) << w.err();
  EXPECT_NE(w.err().find("the server refused our key (not authorized)"), std::string::npos)
      << w.err();
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 10s);
  vent.signal(SIGTERM);
  sink.signal(SIGTERM);
  EXPECT_EXIT_CODE(vent, 0, 10s);
  EXPECT_EXIT_CODE(sink, 0, 10s);
}

}  // namespace
}  // namespace taskfarm::testing
