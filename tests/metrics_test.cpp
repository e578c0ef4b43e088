// The sink's farm-wide totals for /metrics (issue 16): folded from ended jobs plus the jobs in
// progress; the latency histogram's cumulative buckets.
#include <gtest/gtest.h>

#include "common/histogram.h"
#include "sink/aggregator.h"
#include "sink/metrics.h"

namespace taskfarm::sink {
namespace {

v1::BatchStart start(uint64_t id, uint64_t total) {
  v1::BatchStart s;
  s.set_job_id(id);
  s.set_name("j" + std::to_string(id));
  s.set_total(total);
  s.set_max_attempts(1);
  return s;
}

v1::WorkerInfo worker(const std::string& id) {
  v1::WorkerInfo w;
  w.set_id(id);
  w.set_host("h");
  w.set_device("cpu");
  w.set_slots(2);
  return w;
}

// A result sent at 1 s (wall clock, ns) that ran for 1 ms.
v1::Result result(uint64_t job, uint64_t id, const std::string& kernel, bool ok) {
  v1::Result r;
  r.set_job_id(job);
  r.set_task_id(id);
  r.set_attempt(1);
  r.set_status(ok ? v1::STATUS_OK : v1::STATUS_FAILED);
  r.set_error(ok ? "" : "boom");
  r.set_kernel(kernel);
  r.set_sent_ns(1'000'000'000);
  r.set_started_ns(1'000'000'000);
  r.set_finished_ns(1'001'000'000);
  return r;
}

TEST(SinkMetrics, TotalsFoldEndedJobsAndAddTheJobsInProgress) {
  JobAggregator ended(start(1, 3)), running(start(2, 10));
  ended.add(result(1, 0, "saxpy", true), worker("w0"), 1'000'500'000);   // 0.5 ms
  ended.add(result(1, 1, "saxpy", true), worker("w0"), 1'020'000'000);   // 20 ms
  ended.add(result(1, 2, "sort", false), worker("w1"), 1'300'000'000);   // 300 ms
  running.add(result(2, 0, "saxpy", true), worker("w1"), 1'002'000'000); // 2 ms
  ended.add(result(1, 1, "saxpy", true), worker("w0"), 1'020'000'000);   // duplicate

  SinkMetrics m;
  m.fold(ended);
  const auto s = m.stats({&running}, /*rejected=*/7, /*late=*/2);
  ASSERT_EQ(s.kernels_size(), 2);
  EXPECT_EQ(s.kernels(0).kernel(), "saxpy");
  EXPECT_EQ(s.kernels(0).ok(), 3u);  // two ended, one in progress
  EXPECT_EQ(s.kernels(0).failed(), 0u);
  EXPECT_EQ(s.kernels(1).kernel(), "sort");
  EXPECT_EQ(s.kernels(1).failed(), 1u);
  EXPECT_NEAR(s.kernels(0).busy_s(), 0.003, 1e-9);
  ASSERT_EQ(s.workers_size(), 2);
  EXPECT_EQ(s.workers(0).id(), "w0");
  EXPECT_EQ(s.workers(0).tasks(), 2u);
  EXPECT_EQ(s.workers(1).tasks(), 1u);  // w1: its failure is not a completed task
  EXPECT_EQ(s.duplicates(), 1u);
  EXPECT_EQ(s.rejected_messages(), 7u);
  EXPECT_EQ(s.late_results(), 2u);
  // The running job's report so far, for its live failures and progress.
  ASSERT_EQ(s.jobs_size(), 1);
  EXPECT_EQ(s.jobs(0).tasks_ok(), 1u);

  // Latency: 0.5 ms, 2 ms, 20 ms, 300 ms in cumulative buckets that end with every sample.
  EXPECT_EQ(s.latency_count(), 4u);
  EXPECT_NEAR(s.latency_sum_s(), 0.3225, 0.3225 * 0.02);
  ASSERT_EQ(s.latency_bounds_s_size(), s.latency_counts_size());
  auto count_at = [&](double bound) {
    for (int i = 0; i < s.latency_bounds_s_size(); ++i) {
      if (s.latency_bounds_s(i) == bound) return s.latency_counts(i);
    }
    ADD_FAILURE() << "no bound " << bound;
    return uint64_t{0};
  };
  EXPECT_EQ(count_at(0.0001), 0u);
  EXPECT_EQ(count_at(0.001), 1u);
  EXPECT_EQ(count_at(0.0025), 2u);
  EXPECT_EQ(count_at(0.025), 3u);
  EXPECT_EQ(count_at(0.25), 3u);
  EXPECT_EQ(count_at(0.5), 4u);
  for (int i = 1; i < s.latency_counts_size(); ++i) {
    EXPECT_GE(s.latency_counts(i), s.latency_counts(i - 1));
  }
}

TEST(LatencyHistogram, SumAndBucketsCoverEveryValue) {
  LatencyHistogram h;
  uint64_t sum = 0, seen = 0;
  for (uint64_t v : {0ull, 5ull, 1000ull, 123456789ull, 1ull << 40}) {
    h.record(static_cast<int64_t>(v));
    sum += v;
  }
  EXPECT_EQ(h.sum(), sum);
  uint64_t last = 0;
  h.for_each_bucket([&](uint64_t upper, uint64_t n) {
    EXPECT_GE(upper, last);
    last = upper;
    seen += n;
  });
  EXPECT_EQ(seen, 5u);
  EXPECT_GE(last, uint64_t{1} << 40);
}

}  // namespace
}  // namespace taskfarm::sink
