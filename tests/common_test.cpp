// Envelope encoding/decoding, endpoints and the latency histogram.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/errors.h"
#include "common/histogram.h"
#include "common/net.h"
#include "common/protocol.h"

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

}  // namespace
}  // namespace taskfarm
