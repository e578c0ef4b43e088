// Bad input: every bad flag, file or frame gets exit code 1 and a one-line message naming the
// problem (fast, with nothing started), or is rejected and counted without harm.
#include <zmq.hpp>

#include <random>

#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

struct Rejection {
  std::vector<std::string> args;
  std::string expect;  // substring of the one-line error
};

void expect_setup_error(Farm& farm, const Rejection& c) {
  std::vector<std::string> args = c.args;
  Process p(args, farm.path("p"));
  const auto t0 = std::chrono::steady_clock::now();
  const auto rc = p.wait_for(5s);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::string joined;
  for (const auto& a : c.args) joined += a + " ";
  EXPECT_EQ(rc, std::optional<int>(1)) << joined << "\n" << p.err();
  EXPECT_LT(took, 2s) << joined;
  const std::string err = p.err();
  EXPECT_NE(err.find(c.expect), std::string::npos) << joined << "\nstderr: " << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << joined << "\nstderr: " << err;
}

TEST(BadInput, VentilatorRejectsBadFlagsAndJobsWithOneLine) {
  Farm farm;
  const std::string v = bin("taskfarm-ventilator");
  const std::string bind = farm.tasks_endpoint();
  const std::string bad_json = farm.write("bad.json", "{ \"tasks\": [ { \"kernel\": ");
  const std::string unknown_field =
      farm.write("field.json", R"({"tasks": [{"kernel": "noop", "count": 1, "cnt": 2}]})");
  const std::string empty = farm.write("empty.json", R"({"name": "x", "tasks": []})");
  const Rejection cases[] = {
      {{v, "--bind", bind, "--kernel", "f/t", "--tasks", "3"}, "'f/t' is not a kernel name"},
      {{v, "--bind", bind, "--kernel", "saxpy", "--tasks", "3", "--size", "-4"}, "-4"},
      {{v, "--bind", bind, "--kernel", "sgemm", "--tasks", "1", "--size", "1000000"}, "1000000"},
      {{v, "--bind", bind, "--kernel", "noop", "--tasks", "0"}, "--tasks"},
      {{v, "--bind", bind, "--job", farm.path("missing.json")}, "missing.json"},
      {{v, "--bind", bind, "--job", bad_json}, "bad.json"},
      {{v, "--bind", bind, "--job", unknown_field}, "cnt"},
      {{v, "--bind", bind, "--job", empty}, "no tasks"},
      {{v, "--bind", bind, "--frobnicate"}, "frobnicate"},
      {{v, "--bind", bind, "--kernel", "noop", "--tasks", "many"}, "many"},
      {{v, "--bind", bind}, "--job FILE, --kernel K --tasks N, or --serve"},
      {{v, "--bind", "tcp://nosuchhost.invalid:1", "--kernel", "noop", "--tasks", "1"}, "bind"},
  };
  for (const auto& c : cases) expect_setup_error(farm, c);
}

TEST(BadInput, WorkerAndSinkRejectBadFlags) {
  Farm farm;
  const std::string w = bin("taskfarm-worker"), s = bin("taskfarm-sink");
  const Rejection cases[] = {
      {{w, "--device", "tpu"}, "tpu"},
      {{w, "--device", "cuda:x"}, "cuda:x"},
      {{w, "--threads", "0"}, "--threads"},
      {{w, "--ventilator", "host:notaport"}, "host:notaport"},
      {{s, "--bind", "99999"}, "99999"},
      {{s, "--max-message-mb", "0"}, "max-message-mb"},
      {{s, "--log-level", "loud"}, "loud"},
  };
  for (const auto& c : cases) expect_setup_error(farm, c);
}

TEST(BadInput, MisspelledFlagsAreNamedFirstWithTheClosestFlag) {
  Farm farm;
  const std::string v = bin("taskfarm-ventilator"), w = bin("taskfarm-worker"),
                    s = bin("taskfarm-sink"), c = bin("taskfarm");
  const Rejection cases[] = {
      // Before this, "--tasks requires --kernel" was all a typo of --kernel got.
      {{v, "--kernal", "saxpy", "--tasks", "10"}, "unknown flag --kernal (did you mean --kernel?)"},
      {{v, "--job", "x.json", "--kernal", "saxpy"}, "unknown flag --kernal (did you mean --kernel?)"},
      {{w, "--thread", "4"}, "unknown flag --thread (did you mean --threads?)"},
      {{s, "--reprot", "r.json", "--serve"}, "unknown flag --reprot (did you mean --report?)"},
      {{c, "status", "--stat", "running"}, "unknown flag --stat (did you mean --state?)"},
      {{c, "stauts"}, "unknown command 'stauts' (did you mean status?)"},
      {{c, "status", "--state", "runing"}, "runing"},
  };
  for (const auto& r : cases) expect_setup_error(farm, r);
}

TEST(BadInput, SizeIsRequiredWhereItMattersAndNotForNoop) {
  Farm farm;
  const std::string v = bin("taskfarm-ventilator");
  const Rejection cases[] = {
      {{v, "--bind", farm.tasks_endpoint(), "--kernel", "saxpy", "--tasks", "10"},
       "--kernel saxpy needs --size (elements n)"},
      {{v, "--bind", farm.tasks_endpoint(), "--kernel", "sleep", "--tasks", "10"}, "needs --size"},
      {{v, "--bind", farm.tasks_endpoint(), "--kernel", "sort", "--tasks", "1", "--size", "0"},
       "needs a size"},
  };
  for (const auto& r : cases) expect_setup_error(farm, r);
  auto sink = farm.sink();
  auto worker = farm.worker("w");
  auto vent = farm.ventilator({"--kernel", "noop", "--tasks", "5"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EQ(farm.report().tasks_ok(), 5u);
  EXPECT_EQ(farm.report().job(), "noop-5");
}

TEST(BadInput, EveryProgramPrintsItsVersion) {
  Farm farm;
  for (const char* program : {"taskfarm", "taskfarm-sink", "taskfarm-worker", "taskfarm-ventilator"}) {
    Process p({bin(program), "--version"}, farm.path(program));
    EXPECT_EQ(p.wait_for(5s), std::optional<int>(0)) << program << ": " << p.err();
    const std::string out = p.out();
    EXPECT_EQ(out.rfind(std::string(program) + " 0.", 0), 0u) << out;
    EXPECT_NE(out.find("(git "), std::string::npos) << out;
    EXPECT_NE(out.find(", protocol 1, CUDA "), std::string::npos) << out;
  }
}

TEST(BadInput, WorkerWithDeviceCudaButNoGpuExitsWithReason) {
  Farm farm;
  Process p({bin("taskfarm-worker"), "--device", "cuda"}, farm.path("w"));
  const auto rc = p.wait_for(10s);
  ASSERT_TRUE(rc.has_value());
  if (*rc == 1) {
    EXPECT_NE(p.err().find("no usable GPU"), std::string::npos) << p.err();
  } else {
    GTEST_SKIP() << "a GPU is present here";
  }
}

TEST(BadInput, PortInUseIsASetupError) {
  Farm farm;
  // ipc:// endpoints are taken over by a new bind (libzmq unlinks the file): use TCP.
  Process first({bin("taskfarm-sink"), "--bind", "127.0.0.1:0", "--control", "127.0.0.1:0"},
                farm.path("first"));
  std::string control;
  for (int i = 0; i < 100 && control.empty(); ++i) {
    std::this_thread::sleep_for(20ms);
    const std::string err = first.err();
    const auto at = err.find("control on ");
    if (at != std::string::npos && err.find('\n', at) != std::string::npos) {
      control = err.substr(at + 11, err.find('\n', at) - at - 11);
    }
  }
  ASSERT_FALSE(control.empty()) << first.err();
  Process second({bin("taskfarm-sink"), "--bind", "127.0.0.1:0", "--control", control},
                 farm.path("second"));
  EXPECT_EQ(second.wait_for(5s), std::optional<int>(1));
  EXPECT_NE(second.err().find("address already in use"), std::string::npos) << second.err();
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait_for(5s), std::optional<int>(130));
}

// Garbage of every kind at every bound socket while a batch runs: nothing crashes or hangs,
// the batch completes with the right digest, and the sink counts what it rejected.
TEST(BadInput, GarbageFramesAtEveryBoundSocketAreRejectedAndCounted) {
  std::string clean_digest;
  {
    Farm farm;
    auto sink = farm.sink();
    auto w = farm.worker("w");
    auto vent = farm.ventilator({"--kernel", "sort", "--tasks", "40", "--size", "1000"});
    EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
    EXPECT_EXIT_CODE(sink, 0, 10s);
    clean_digest = farm.report().result_digest();
  }
  Farm farm;
  auto sink = farm.sink({"--max-message-mb", "1"});
  ASSERT_TRUE(sink.wait_for_log("results on", 10s)) << sink.err();  // bound
  zmq::context_t ctx;
  std::mt19937 gen(1);
  auto junk = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(gen());
    return s;
  };
  v1::Envelope wrong_version;
  wrong_version.set_version(99);
  wrong_version.mutable_kill();
  v1::Envelope nonsense;  // valid protobuf, nonsense values: results for a job nobody knows
  nonsense.set_version(1);
  auto* r = nonsense.mutable_results()->add_results();
  r->set_job_id(12345);
  r->set_task_id(~0ull);
  v1::Envelope zero_batch;
  zero_batch.set_version(1);
  zero_batch.mutable_batch_start()->set_total(0);
  v1::Envelope tasks_to_sink;
  tasks_to_sink.set_version(1);
  tasks_to_sink.mutable_tasks()->add_tasks()->set_kernel("noop");
  std::vector<std::string> frames = {"",
                                     junk(1),
                                     junk(100),
                                     junk(5000),
                                     wrong_version.SerializeAsString(),
                                     nonsense.SerializeAsString(),
                                     zero_batch.SerializeAsString(),
                                     tasks_to_sink.SerializeAsString()};
  {
    zmq::socket_t push(ctx, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 1000);
    push.connect("ipc://" + farm.path("results"));
    for (const auto& f : frames) push.send(zmq::buffer(f), zmq::send_flags::none);
    push.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);  // multipart
    push.send(zmq::buffer(std::string("b")), zmq::send_flags::none);
    push.send(zmq::buffer(std::string(2 << 20, 'x')), zmq::send_flags::none);  // oversize: dropped
  }
  auto w = farm.worker("w");
  auto vent = farm.ventilator({"--kernel", "sort", "--tasks", "40", "--size", "1000"});
  ASSERT_TRUE(vent.wait_for_log("tasks on", 10s)) << vent.err();  // bound
  {
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 1000);
    dealer.connect(farm.tasks_endpoint());
    for (const auto& f : frames) dealer.send(zmq::buffer(f), zmq::send_flags::none);
    dealer.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(std::string("b")), zmq::send_flags::none);
    v1::Envelope credit;  // credit from a stranger that never said hello: told to reconnect
    credit.set_version(1);
    credit.mutable_credit()->set_credit(1000000);
    dealer.send(zmq::buffer(credit.SerializeAsString()), zmq::send_flags::none);
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 40u);
  EXPECT_EQ(rep.result_digest(), clean_digest);
  EXPECT_GE(rep.rejected_messages(), 7u);
  EXPECT_NE(vent.err().find("rejected message"), std::string::npos) << vent.err();
}

}  // namespace
}  // namespace taskfarm::testing
