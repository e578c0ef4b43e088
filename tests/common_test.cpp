// Envelope encoding/decoding, endpoints, the latency histogram, the digest, report formatting,
// command-line helpers and handshake messages.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/cli.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/histogram.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/report.h"
#include "common/security.h"

namespace taskfarm {
namespace {

TEST(Protocol, RoundTripsATaskBatch) {
  v1::Envelope env;
  auto* t = env.mutable_tasks()->add_tasks();
  t->set_job_id(1);
  t->set_task_id(77);
  t->set_kernel("saxpy");
  t->set_size(1 << 20);
  t->set_payload(std::string("\0\1\2", 3));
  zmq::message_t msg = encode(env);
  Decoded d = decode(msg);
  ASSERT_TRUE(d) << d.error;
  EXPECT_EQ(d.envelope->version(), kProtocolVersion);
  ASSERT_EQ(d.envelope->tasks().tasks_size(), 1);
  EXPECT_EQ(d.envelope->tasks().tasks(0).task_id(), 77u);
  EXPECT_EQ(d.envelope->tasks().tasks(0).payload().size(), 3u);
}

TEST(Protocol, RejectsOtherVersions) {
  v1::Envelope env;
  env.mutable_kill();
  env.set_version(kProtocolVersion + 1);
  const std::string bytes = env.SerializeAsString();
  Decoded d = decode(bytes.data(), bytes.size());
  EXPECT_FALSE(d);
  EXPECT_NE(d.error.find("protocol version 2"), std::string::npos) << d.error;
}

TEST(Protocol, MessagesOfAnotherFarmAreRejectedAndUnnamedPeersAccepted) {
  auto encoded_by = [](const std::string& farm) {
    set_farm(farm);
    v1::Envelope env;
    env.mutable_kill();
    zmq::message_t msg = encode(env);
    return std::string(static_cast<const char*>(msg.data()), msg.size());
  };
  const std::string from_a = encoded_by("alpha"), from_b = encoded_by("beta"),
                    from_none = encoded_by("");
  set_farm("alpha");
  EXPECT_TRUE(decode(from_a.data(), from_a.size()));
  EXPECT_TRUE(decode(from_none.data(), from_none.size())) << "a client or a worker not yet joined";
  Decoded d = decode(from_b.data(), from_b.size());
  EXPECT_FALSE(d);
  EXPECT_NE(d.error.find("another farm (this is farm 'alpha'"), std::string::npos) << d.error;
  set_farm("");  // a process that has not joined a farm yet takes every farm's messages
  EXPECT_TRUE(decode(from_b.data(), from_b.size()));
  EXPECT_NE(farm_id_of("alpha"), farm_id_of("beta"));
  EXPECT_NE(farm_id_of(""), 0u);
}

TEST(Endpoints, TaskfarmPortBaseMovesEveryDefaultPortAndBadValuesAreOneLineErrors) {
  ::setenv("TASKFARM_PORT_BASE", "6557", 1);
  EXPECT_EQ(bind_endpoint("", kTasksPort), "tcp://*:6557");
  EXPECT_EQ(bind_endpoint("", kResultsServicePort), "tcp://*:6561");
  EXPECT_EQ(connect_endpoint("head", kControlPort), "tcp://head:6559");
  EXPECT_EQ(default_port(8080), 9080);
  EXPECT_EQ(bind_endpoint("7000", kTasksPort), "tcp://*:7000") << "a port given is kept";
  EXPECT_EQ(connect_endpoint("head:7001", kTasksPort), "tcp://head:7001");
  for (const char* bad : {"abc", "80", "65000", "-1", "6557x"}) {
    ::setenv("TASKFARM_PORT_BASE", bad, 1);
    try {
      (void)bind_endpoint("", kTasksPort);
      ADD_FAILURE() << bad << " was taken";
    } catch (const SetupError& e) {
      EXPECT_NE(std::string(e.what()).find("TASKFARM_PORT_BASE='" + std::string(bad) + "'"),
                std::string::npos) << e.what();
    }
  }
  ::unsetenv("TASKFARM_PORT_BASE");
  EXPECT_EQ(bind_endpoint("", kTasksPort), "tcp://*:5557");
}

TEST(Protocol, RejectsEmptyGarbageAndBodylessFrames) {
  EXPECT_FALSE(decode(nullptr, 0));
  std::mt19937 gen(3);
  int rejected = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string junk(1 + gen() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(gen());
    Decoded d = decode(junk.data(), junk.size());
    if (!d) {
      ++rejected;
      EXPECT_FALSE(d.error.empty());
    }
  }
  EXPECT_GT(rejected, 1900);  // the rest happen to be valid protobuf: harmless, checked later
  v1::Envelope no_body;
  no_body.set_version(kProtocolVersion);
  const std::string bytes = no_body.SerializeAsString();
  EXPECT_FALSE(decode(bytes.data(), bytes.size()));
}

TEST(Endpoints, ExpandsHostsPortsAndKeepsFullEndpoints) {
  EXPECT_EQ(connect_endpoint("node7", 5557), "tcp://node7:5557");
  EXPECT_EQ(connect_endpoint("node7:6000", 5557), "tcp://node7:6000");
  EXPECT_EQ(connect_endpoint("ipc:///tmp/x", 5557), "ipc:///tmp/x");
  EXPECT_EQ(bind_endpoint("", 5558), "tcp://*:5558");
  EXPECT_EQ(bind_endpoint("6001", 5558), "tcp://*:6001");
  EXPECT_EQ(bind_endpoint("127.0.0.1:0", 5558), "tcp://127.0.0.1:0");
  EXPECT_THROW(connect_endpoint("", 1), SetupError);
  EXPECT_THROW(connect_endpoint("host:99999", 1), SetupError);
  EXPECT_THROW(connect_endpoint("host:abc", 1), SetupError);
}

TEST(Endpoints, BindingATakenPortIsASetupError) {
  zmq::context_t ctx;
  zmq::socket_t a(ctx, zmq::socket_type::pull), b(ctx, zmq::socket_type::pull);
  const std::string ep = bind_socket(a, "tcp://127.0.0.1:0", "test");
  try {
    bind_socket(b, ep, "test");
    FAIL() << "second bind succeeded";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos);
  }
}

TEST(Histogram, QuantilesWithinBucketPrecision) {
  LatencyHistogram h;
  std::vector<int64_t> values;
  std::mt19937_64 gen(11);
  for (int i = 0; i < 100000; ++i) {
    const auto v = static_cast<int64_t>(gen() % 10'000'000);
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const auto exact = static_cast<double>(values[static_cast<size_t>(q * values.size()) - 1]);
    EXPECT_NEAR(static_cast<double>(h.quantile(q)), exact, exact * 0.02 + 2) << q;
  }
  EXPECT_EQ(h.max(), static_cast<uint64_t>(values.back()));
  EXPECT_EQ(h.count(), 100000u);
}

TEST(Histogram, BucketsAreMonotonicAndCoverTheRange) {
  int last = -1;
  // 128 and 129 share a bucket (width 2 there); these values are all in different buckets.
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 130ull, 1000ull, 1ull << 40, ~0ull}) {
    const int i = LatencyHistogram::index_of(v);
    EXPECT_GT(i, last);
    EXPECT_LT(i, LatencyHistogram::kBuckets);
    EXPECT_GE(LatencyHistogram::upper_bound(i), v);
    last = i;
  }
  EXPECT_EQ(LatencyHistogram::index_of(128), LatencyHistogram::index_of(129));
  LatencyHistogram empty;
  EXPECT_EQ(empty.quantile(0.5), 0u);
}

TEST(Digest, IsPinnedSoThatReportsStayComparable) {
  // Digests of earlier runs (bench/RESULTS.md, fuzz seeds) must keep their meaning.
  ResultDigest d;
  d.add(0, true, 0);
  d.add(1, false, 42);
  d.add(123456789, true, 0xDEADBEEFCAFEF00Dull);
  EXPECT_EQ(d.hex(), "99b24b07ba553443");
  ResultDigest other_order;
  other_order.add(123456789, true, 0xDEADBEEFCAFEF00Dull);
  other_order.add(1, false, 42);
  other_order.add(0, true, 0);
  EXPECT_EQ(other_order.value(), d.value());
}

TEST(Report, JsonWithNumbersWritesSixtyFourBitIntegersAsNumbers) {
  v1::StatusReply reply;
  auto* s = reply.add_jobs();
  s->set_job_id("00000000000000ff");
  s->set_name("quote\" back\\slash\nline\x01");
  s->set_state(v1::JOB_RUNNING);
  s->set_done(64);
  s->set_total(uint64_t{1} << 40);
  s->set_tasks_per_s(12.5);
  const std::string json = json_with_numbers(reply);
  EXPECT_NE(json.find(R"("state":"JOB_RUNNING")"), std::string::npos) << "enums by name: " << json;
  EXPECT_NE(json.find(R"("done":64,)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("total":1099511627776,)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("failed":0,)"), std::string::npos) << "defaults are written: " << json;
  EXPECT_EQ(json.find("\"report\""), std::string::npos) << "unset messages are not: " << json;
  // protobuf's own parser reads it back to the same message.
  v1::StatusReply back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok()) << json;
  EXPECT_EQ(back.SerializeAsString(), reply.SerializeAsString());
}

TEST(Report, JsonWithNumbersMatchesTheProtobufMappingOtherwise) {
  v1::Envelope env;
  env.set_version(1);
  auto* t = env.mutable_tasks()->add_tasks();
  t->set_kernel("saxpy");
  t->set_payload(std::string("\x00\xff\x10\x20\x30", 5));  // bytes: base64
  t->set_sent_ns(-5);
  auto* r = env.mutable_results();  // oneof: replaces tasks
  r->add_results()->set_status(v1::STATUS_FAILED);
  r->mutable_results(0)->set_value(std::nan(""));
  const std::string json = json_with_numbers(env);
  EXPECT_NE(json.find(R"("status":"STATUS_FAILED")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("value":"NaN")"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"tasks\""), std::string::npos) << "only the set oneof member: " << json;
  v1::Envelope back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok()) << json;
  v1::Task task;
  task.set_payload(std::string("\x00\xff\x10\x20\x30", 5));
  const std::string task_json = json_with_numbers(task);
  EXPECT_NE(task_json.find(R"("payload":"AP8QIDA=")"), std::string::npos) << task_json;
}

TEST(Report, TableSaysOneAttemptNotOneAttempts) {
  v1::Report r;
  r.set_job("j");
  r.set_duplicates_dropped(1);
  auto* f = r.add_failures();
  f->set_task_id(3);
  f->set_kernel("saxpy");
  f->set_attempts(1);
  f->set_error("boom");
  auto* g = r.add_failures();
  g->set_attempts(3);
  const std::string table = report_table(r);
  EXPECT_NE(table.find("(saxpy, 1 attempt): boom"), std::string::npos) << table;
  EXPECT_NE(table.find(", 3 attempts)"), std::string::npos) << table;
  EXPECT_NE(table.find("1 duplicate dropped"), std::string::npos) << table;
  EXPECT_EQ(count_of(0, "task"), "0 tasks");
  EXPECT_EQ(count_of(1, "task"), "1 task");
}

// argv from a list of words, for unknown_argument.
std::optional<std::string> unknown_in(const CLI::App& app, std::vector<const char*> args) {
  args.insert(args.begin(), "program");
  return unknown_argument(app, static_cast<int>(args.size()), args.data());
}

TEST(Cli, NamesUnknownFlagsWithTheClosestKnownOne) {
  CLI::App app{"test", "program"};
  std::string kernel;
  int threads = 0;
  bool json = false;
  app.add_option("--kernel", kernel);
  app.add_option("--threads", threads);
  auto* status = app.add_subcommand("status");
  status->add_flag("--json", json);
  add_common_flags(app);
  EXPECT_EQ(unknown_in(app, {"--kernal", "saxpy"}), "unknown flag --kernal (did you mean --kernel?)");
  EXPECT_EQ(unknown_in(app, {"--thread", "4"}), "unknown flag --thread (did you mean --threads?)");
  EXPECT_EQ(unknown_in(app, {"--kernel=x", "--jsn"}), "unknown flag --jsn (did you mean --json?)");
  EXPECT_EQ(unknown_in(app, {"--frobnicate"}), "unknown flag --frobnicate");
  EXPECT_EQ(unknown_in(app, {"stauts"}), "unknown command 'stauts' (did you mean status?)");
  // Values of flags, negative numbers and what follows "--" are not flags.
  EXPECT_EQ(unknown_in(app, {"--kernel", "--x", "status", "--json"}), std::nullopt);
  EXPECT_EQ(unknown_in(app, {"--threads", "-3", "status", "--", "--whatever"}), std::nullopt);
  EXPECT_EQ(unknown_in(app, {"--version"}), std::nullopt);
}

TEST(Cli, VersionSaysCommitProtocolAndCuda) {
  const std::string v = version_line("taskfarm-worker");
  EXPECT_EQ(v.rfind("taskfarm-worker 0.", 0), 0u) << v;
  EXPECT_NE(v.find("(git "), std::string::npos) << v;
  EXPECT_NE(v.find(fmt::format("protocol {}", kProtocolVersion)), std::string::npos) << v;
  EXPECT_TRUE(v.find("CUDA on)") != std::string::npos || v.find("CUDA off)") != std::string::npos) << v;
}

TEST(HandshakeWatch, DescribesEachFailure) {
  EXPECT_EQ(HandshakeWatch::describe(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, true),
            "the server refused our key (not authorized)");
  EXPECT_NE(HandshakeWatch::describe(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, EPIPE, true)
                .find("the server's key does not match"),
            std::string::npos);
  EXPECT_NE(HandshakeWatch::describe(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                     ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, false)
                .find("requires CurveZMQ keys"),
            std::string::npos);
  EXPECT_EQ(HandshakeWatch::describe(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, true), "");
}

}  // namespace
}  // namespace taskfarm
