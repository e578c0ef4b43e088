// Exactly-once aggregation, digest and report math of the sink.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>

#include "common/report.h"
#include "sink/aggregator.h"

namespace taskfarm::sink {
namespace {

v1::BatchStart start(uint64_t total, uint32_t max_attempts = 3) {
  v1::BatchStart s;
  s.set_job_id(42);
  s.set_name("t");
  s.set_total(total);
  s.set_max_attempts(max_attempts);
  return s;
}

v1::WorkerInfo worker(const std::string& id) {
  v1::WorkerInfo w;
  w.set_id(id);
  w.set_host("h");
  w.set_device("cpu");
  return w;
}

v1::Result ok(uint64_t id, uint64_t checksum, uint32_t attempt = 1) {
  v1::Result r;
  r.set_job_id(42);
  r.set_task_id(id);
  r.set_attempt(attempt);
  r.set_status(v1::STATUS_OK);
  r.set_kernel("saxpy");
  r.set_checksum(checksum);
  r.set_sent_ns(1'000'000'000);
  r.set_started_ns(1'000'100'000);
  r.set_finished_ns(1'000'300'000);
  r.set_bytes(1000);
  r.set_flops(2000);
  return r;
}

TEST(Sink, DropsDuplicateResults) {
  JobAggregator agg(start(3));
  EXPECT_EQ(agg.add(ok(0, 11), worker("a"), 1'001'000'000), Outcome::kFinal);
  EXPECT_EQ(agg.add(ok(0, 11), worker("b"), 1'002'000'000), Outcome::kDuplicate);
  EXPECT_EQ(agg.add(ok(1, 12), worker("a"), 1'003'000'000), Outcome::kFinal);
  EXPECT_FALSE(agg.complete());
  EXPECT_EQ(agg.add(ok(2, 13, 2), worker("b"), 1'004'000'000), Outcome::kFinal);
  EXPECT_TRUE(agg.complete());
  const auto rep = agg.report();
  EXPECT_EQ(rep.tasks_total(), 3u);
  EXPECT_EQ(rep.tasks_ok(), 3u);
  EXPECT_EQ(rep.duplicates_dropped(), 1u);
  EXPECT_EQ(rep.retried(), 1u);  // task 2 needed a second attempt
  EXPECT_EQ(agg.add(ok(3, 1), worker("a"), 1'005'000'000), Outcome::kInvalid);
}

TEST(Sink, DigestIsIndependentOfOrderWorkersAndDuplicates) {
  std::vector<v1::Result> results;
  std::mt19937_64 gen(5);
  for (uint64_t i = 0; i < 500; ++i) results.push_back(ok(i, gen()));
  JobAggregator a(start(500));
  for (const auto& r : results) a.add(r, worker("one"), 2'000'000'000);
  std::shuffle(results.begin(), results.end(), gen);
  JobAggregator b(start(500));
  for (size_t i = 0; i < results.size(); ++i) {
    b.add(results[i], worker(i % 2 ? "x" : "y"), 2'000'000'000);
    if (i % 7 == 0) b.add(results[i], worker("dup"), 2'000'000'000);
  }
  EXPECT_EQ(a.report().result_digest(), b.report().result_digest());
  JobAggregator c(start(500));
  results[3].set_checksum(results[3].checksum() + 1);
  for (const auto& r : results) c.add(r, worker("one"), 2'000'000'000);
  EXPECT_NE(a.report().result_digest(), c.report().result_digest());
}

TEST(Sink, RetryableFailureIsRetriedUntilMaxAttempts) {
  JobAggregator agg(start(1, 3));
  v1::Result r = ok(0, 1);
  r.set_status(v1::STATUS_FAILED);
  r.set_retryable(true);
  r.set_error("device fault");
  EXPECT_EQ(agg.add(r, worker("a"), 1'001'000'000), Outcome::kRetry);
  r.set_attempt(2);
  EXPECT_EQ(agg.add(r, worker("a"), 1'001'000'000), Outcome::kRetry);
  r.set_attempt(3);
  EXPECT_EQ(agg.add(r, worker("a"), 1'001'000'000), Outcome::kFinal);
  EXPECT_TRUE(agg.complete());
  const auto rep = agg.report();
  EXPECT_EQ(rep.tasks_failed(), 1u);
  ASSERT_EQ(rep.failures_size(), 1);
  EXPECT_EQ(rep.failures(0).attempts(), 3u);
  EXPECT_EQ(rep.failures(0).error(), "device fault");
}

TEST(Sink, PermanentFailureIsFinalAtOnce) {
  JobAggregator agg(start(1));
  v1::Result r = ok(0, 1);
  r.set_status(v1::STATUS_FAILED);
  r.set_retryable(false);
  EXPECT_EQ(agg.add(r, worker("a"), 1'001'000'000), Outcome::kFinal);
  EXPECT_EQ(agg.report().tasks_failed(), 1u);
}

TEST(Sink, ReportRatesAndLatencyPercentiles) {
  JobAggregator agg(start(100));
  for (uint64_t i = 0; i < 100; ++i) {
    v1::Result r = ok(i, i);
    r.set_sent_ns(1'000'000'000);
    // latency (i+1) * 10 us; last result arrives 1 s after the first send
    agg.add(r, worker(i < 30 ? "a" : "b"), 1'000'000'000 + static_cast<int64_t>(i + 1) * 10'000);
  }
  v1::Result last = ok(0, 0);
  (void)last;
  const auto rep = agg.report();
  EXPECT_NEAR(rep.elapsed_s(), 0.001, 1e-9);
  EXPECT_NEAR(rep.tasks_per_s(), 100 / 0.001, 1e-3);
  EXPECT_NEAR(rep.mb_per_s(), 100 * 1000 / 0.001 * 1e-6, 1e-6);
  EXPECT_NEAR(rep.gflop_per_s(), 100 * 2000 / 0.001 * 1e-9, 1e-9);
  EXPECT_NEAR(rep.latency_us().p50(), 500, 500 * 0.02);
  EXPECT_NEAR(rep.latency_us().p90(), 900, 900 * 0.02);
  EXPECT_NEAR(rep.latency_us().p99(), 990, 990 * 0.02);
  EXPECT_DOUBLE_EQ(rep.latency_us().max(), 1000);
  ASSERT_EQ(rep.workers_size(), 2);
  EXPECT_EQ(rep.workers(0).tasks() + rep.workers(1).tasks(), 100u);
  EXPECT_NEAR(rep.workers(0).busy_s(), 30 * 200e-6, 1e-9);
  ASSERT_EQ(rep.kernels_size(), 1);
  EXPECT_EQ(rep.kernels(0).kernel(), "saxpy");
  EXPECT_NEAR(rep.kernels(0).gflop_per_s(), 2000.0 / 200e-6 * 1e-9, 1e-9);
}

TEST(Sink, ReportJsonUsesDesignFieldNames) {
  JobAggregator agg(start(1));
  agg.add(ok(0, 9), worker("a"), 1'001'000'000);
  const std::string json = report_json(agg.report());
  for (const char* field : {"\"job\"", "\"tasks_total\"", "\"tasks_ok\"", "\"tasks_failed\"",
                            "\"retried\"", "\"duplicates_dropped\"", "\"elapsed_s\"",
                            "\"tasks_per_s\"", "\"mb_per_s\"", "\"gflop_per_s\"", "\"latency_us\"",
                            "\"p50\"", "\"p99\"", "\"result_digest\"", "\"workers\"", "\"busy_s\""}) {
    EXPECT_NE(json.find(field), std::string::npos) << field << " in " << json;
  }
  EXPECT_NE(report_table(agg.report()).find("saxpy"), std::string::npos);
}

}  // namespace
}  // namespace taskfarm::sink

#include <zlib.h>

#include "sink/png.h"

namespace taskfarm::sink {
namespace {

TEST(Png, WritesADecodableGreyImage) {
  const uint32_t w = 37, h = 11;
  std::string pixels(w * h, '\0');
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<char>(i * 7);
  const std::string path = ::testing::TempDir() + "/t.png";
  ASSERT_TRUE(write_png_gray8(path, w, h, reinterpret_cast<const uint8_t*>(pixels.data())));
  std::ifstream in(path, std::ios::binary);
  std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IDAT follows IHDR (8 + 25 bytes); inflate it and compare the rows.
  const size_t idat = 8 + 25;
  ASSERT_EQ(png.substr(idat + 4, 4), "IDAT");
  const uint32_t len = (uint8_t(png[idat]) << 24) | (uint8_t(png[idat + 1]) << 16) |
                       (uint8_t(png[idat + 2]) << 8) | uint8_t(png[idat + 3]);
  std::string raw((w + 1) * h, '\0');
  uLongf raw_len = raw.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_len,
                       reinterpret_cast<const Bytef*>(png.data() + idat + 8), len),
            Z_OK);
  ASSERT_EQ(raw_len, raw.size());
  for (uint32_t r = 0; r < h; ++r) {
    EXPECT_EQ(raw[r * (w + 1)], 0);
    EXPECT_EQ(raw.substr(r * (w + 1) + 1, w), pixels.substr(r * w, w));
  }
}

}  // namespace
}  // namespace taskfarm::sink
