// Untrusted input never kills, hangs or bloats a process: forged results and artifacts at the
// sink, jobs and frames too big for their socket, the memory of finished jobs, the sink's
// limits, and rejected frames counted against the right job. Real processes throughout.
#include <zmq.hpp>

#include <regex>

#include "farm.h"
#include "service.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

// Returns: the id the sink logged for the job it accepted ("job 'NAME' (ID): N tasks").
uint64_t accepted_job_id(const Process& sink) {
  static const std::regex kLine(R"(job '[^']*' \(([0-9a-f]{16})\): \d+ tasks)");
  for (int i = 0; i < 500; ++i) {
    std::smatch m;
    const std::string err = sink.err();
    if (std::regex_search(err, m, kLine)) return std::stoull(m[1].str(), nullptr, 16);
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << "the sink accepted no job:\n" << sink.err();
  return 0;
}

// Returns: resident memory of a process in MiB (VmRSS).
double rss_mb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

v1::Result band(uint64_t job, uint64_t task, uint64_t row, uint64_t width, size_t bytes) {
  v1::Result r;
  r.set_job_id(job);
  r.set_task_id(task);
  r.set_attempt(1);
  r.set_status(v1::STATUS_OK);
  r.set_kernel("mandelbrot");
  r.set_output(std::string(bytes, '\x7f'));
  r.set_output_row(row);
  r.set_output_width(width);
  return r;
}

std::string results_frame(const std::vector<v1::Result>& results) {
  v1::Envelope env;
  env.set_version(1);  // kProtocolVersion
  env.mutable_results()->mutable_worker()->set_id("forger");
  for (const auto& r : results) *env.mutable_results()->add_results() = r;
  return env.SerializeAsString();
}

constexpr const char* kImageJob =
    R"({"name": "img", "keep_output": true,
        "tasks": [{"kernel": "mandelbrot", "count": 16, "size": 64, "seed": 1}]})";

// The frame that killed the sink (row 2^64-1, width 16, 16 bytes), and every other way a band
// can lie about where it goes, sent before any worker exists: the sink survives, counts them,
// retries the tasks they named, and the image and digest equal those of a clean run.
TEST(Robustness, ForgedArtifactsNeverKillTheSinkAndTheImageIsRight) {
  std::string clean_digest, clean_png;
  {
    Farm farm;
    auto sink = farm.sink({"--results-dir", farm.path("res")});
    auto w = farm.worker("w");
    auto vent = farm.ventilator({"--job", farm.write("job.json", kImageJob)});
    EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
    EXPECT_EXIT_CODE(sink, 0, 10s);
    clean_digest = farm.report().result_digest();
    clean_png = read_file(farm.path("res/" + farm.report().job_id() + "/mandelbrot-64.png"));
    ASSERT_GT(clean_png.size(), 8u);
  }
  Farm farm;
  auto sink = farm.sink({"--results-dir", farm.path("res")});
  auto vent = farm.ventilator({"--job", farm.write("job.json", kImageJob)});
  const uint64_t job = accepted_job_id(sink);
  ASSERT_NE(job, 0u);
  const uint64_t kMax = ~uint64_t{0};
  v1::Result wrong_kernel = band(job, 1, 4, 64, 256);
  wrong_kernel.set_kernel("noop");
  v1::Result attempt0 = band(job, 1, 4, 64, 256);
  attempt0.set_attempt(0);
  v1::Result failed_with_output = band(job, 2, 8, 64, 256);
  failed_with_output.set_status(v1::STATUS_FAILED);
  const std::vector<std::string> frames = {
      results_frame({band(job, 0, kMax, 16, 16)}),         // the issue's frame
      results_frame({band(job, 0, kMax - 3, 64, 256)}),    // row + rows wraps
      results_frame({band(job, 0, 0, uint64_t{1} << 32, 64)}),  // width * width wraps
      results_frame({band(job, 0, 0, 0, 16)}),             // width 0
      results_frame({band(job, 0, 0, 64, 64 * 3)}),        // three rows where the band has four
      results_frame({band(job, 0, 4, 64, 256)}),           // task 1's rows claimed by task 0
      results_frame({band(job, 0, 60, 16, 256)}),          // fits a 16-wide image, not this one
      results_frame({band(job, kMax, 0, 64, 256)}),        // no such task
      results_frame({wrong_kernel, attempt0, failed_with_output}),
  };
  {
    zmq::context_t ctx;
    zmq::socket_t push(ctx, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 2000);
    push.connect("ipc://" + farm.path("results"));
    for (const auto& f : frames) push.send(zmq::buffer(f), zmq::send_flags::none);
  }
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(sink.running()) << sink.err();
  auto w = farm.worker("w");
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 16u);
  EXPECT_EQ(rep.tasks_failed(), 0u);
  EXPECT_EQ(rep.result_digest(), clean_digest);
  EXPECT_GE(rep.rejected_messages(), 11u);
  EXPECT_EQ(read_file(farm.path("res/" + rep.job_id() + "/mandelbrot-64.png")), clean_png)
      << "the forged bands must not be in the image";
}

// A job bigger than the service takes is refused with a one-line error naming the limit
// (before, the client got "no answer" and the service dropped the connection).
TEST(Robustness, JobsTooBigForTheServiceAreOneLineErrorsNamingTheLimit) {
  Farm farm;
  Service service(farm, 1, {"--max-job-mb", "1"});
  const std::string payload(2 << 20, 'A');  // base64 text: 1.5 MiB of bytes
  const std::string big = farm.write(
      "big.json", R"({"name": "big", "tasks": [{"kernel": "noop", "count": 1, "payload": ")" +
                      payload + R"("}]})");
  auto p = service.client({"submit", big});
  const std::string err = p.err();
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(1)) << err;
  EXPECT_NE(err.find("limit of 1.0 MiB"), std::string::npos) << err;
  EXPECT_NE(err.find("--max-job-mb"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // The service is unharmed and still takes jobs.
  auto ok = service.client({"submit", farm.write("small.json", R"({"tasks": [{"kernel": "noop",
      "count": 5}]})"), "--wait"}, "small");
  EXPECT_EQ(ok.wait_for(0s), std::optional<int>(0)) << ok.err();
}

// Frames larger than a socket's limit are dropped with their connection, never buffered:
// four peers sending 40 MiB each at a submission socket limited to 1 MiB leave its memory as
// it was.
TEST(Robustness, OversizeFramesAtTheSubmissionSocketCostNoMemory) {
  Farm farm;
  Service service(farm, 1, {"--max-job-mb", "1"});
  const double before = rss_mb(service.ventilator().pid());
  {
    zmq::context_t ctx;
    std::vector<zmq::socket_t> peers;
    const std::string junk(40 << 20, 'x');
    for (int i = 0; i < 4; ++i) {
      peers.emplace_back(ctx, zmq::socket_type::dealer);
      peers.back().set(zmq::sockopt::linger, 0);
      peers.back().connect(service.endpoint());
      peers.back().send(zmq::buffer(junk), zmq::send_flags::dontwait);
    }
    std::this_thread::sleep_for(1s);
  }
  const double after = rss_mb(service.ventilator().pid());
  EXPECT_LT(after - before, 20.0) << "RSS " << before << " -> " << after << " MiB";
  auto st = service.client({"status"});
  EXPECT_EQ(st.wait_for(0s), std::optional<int>(0)) << st.err();
}

// Finished jobs keep a summary, not their spec: twelve jobs of 8 MiB payloads leave the
// service's memory where the first one left it (it grew by ~100 MiB and stayed, before).
TEST(Robustness, FinishedJobsReleaseTheirPayloads) {
  Farm farm;
  Service service(farm, 1, {"--max-job-mb", "16"});
  std::string payload;
  for (int i = 0; i < (8 << 20) / 3; ++i) payload += "QUFB";  // base64 of "AAA": 8 MiB of bytes
  const std::string job = farm.write(
      "job.json", R"({"name": "heavy", "tasks": [{"kernel": "noop", "count": 2, "payload": ")" +
                      payload + R"("}]})");
  auto first = service.client({"submit", job, "--wait", "-q"}, "first");
  ASSERT_EQ(first.wait_for(0s), std::optional<int>(0)) << first.err();
  const double before = rss_mb(service.ventilator().pid());
  for (int i = 0; i < 12; ++i) {
    auto p = service.client({"submit", job, "--wait", "-q"}, "job" + std::to_string(i));
    ASSERT_EQ(p.wait_for(0s), std::optional<int>(0)) << p.err();
  }
  const double after = rss_mb(service.ventilator().pid());
  EXPECT_LT(after - before, 40.0) << "RSS " << before << " -> " << after << " MiB";
  EXPECT_EQ(service.status().jobs_size(), 13);  // all still listed, as summaries
}

// The sink refuses what is over its limits, and the job fails with the reason instead of
// waiting forever.
TEST(Robustness, JobsOverTheSinksLimitsFailWithTheReason) {
  Farm farm;
  Service service(farm, 1, {}, {"--max-tasks", "100"});
  auto p = service.client(
      {"submit", farm.write("job.json", R"({"tasks": [{"kernel": "noop", "count": 101}]})"),
       "--wait"});
  EXPECT_EQ(p.wait_for(0s), std::optional<int>(2)) << p.err();
  EXPECT_NE(p.err().find("refused by the sink"), std::string::npos) << p.err();
  EXPECT_NE(p.err().find("--max-tasks"), std::string::npos) << p.err();
  auto ok = service.client(
      {"submit", farm.write("ok.json", R"({"tasks": [{"kernel": "noop", "count": 100}]})"),
       "--wait", "-q"},
      "ok");
  EXPECT_EQ(ok.wait_for(0s), std::optional<int>(0)) << ok.err();
}

// rejected_messages counts per job: garbage before a job is not in its report, garbage while
// it runs is.
TEST(Robustness, RejectedMessagesAreCountedPerJob) {
  Farm farm;
  Service service(farm, 1);
  zmq::context_t ctx;
  zmq::socket_t push(ctx, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 2000);
  push.connect("ipc://" + farm.path("results"));
  auto garbage = [&](int n) {
    for (int i = 0; i < n; ++i) push.send(zmq::buffer(std::string("junk")), zmq::send_flags::none);
  };
  garbage(50);
  std::this_thread::sleep_for(300ms);
  auto clean = service.client(
      {"submit", farm.write("a.json", R"({"name": "a", "tasks": [{"kernel": "noop", "count": 10}]})"),
       "--wait", "-q", "--report", farm.path("a.report.json")},
      "a");
  ASSERT_EQ(clean.wait_for(0s), std::optional<int>(0)) << clean.err();
  v1::Report a;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("a.report.json")), &a).ok());
  EXPECT_EQ(a.rejected_messages(), 0u);

  const std::string id = service.submit(farm.write(
      "b.json", R"({"name": "b", "tasks": [{"kernel": "sleep", "count": 20, "size": 100000}]})"));
  std::this_thread::sleep_for(300ms);
  garbage(7);
  auto b = service.client({"wait", id, "-q", "--report", farm.path("b.report.json")}, "b");
  ASSERT_EQ(b.wait_for(0s), std::optional<int>(0)) << b.err();
  v1::Report rb;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("b.report.json")), &rb).ok());
  EXPECT_EQ(rb.rejected_messages(), 7u);
}

// What a worker says of itself ends up in reports and logs: a registration or a result batch
// with a huge or unprintable worker id is refused, and the batch still completes.
TEST(Robustness, HugeOrUnprintableWorkerIdsAreRefused) {
  Farm farm;
  auto sink = farm.sink();
  auto vent = farm.ventilator({"--kernel", "noop", "--tasks", "50"});
  ASSERT_TRUE(vent.wait_for_log("tasks on", 10s)) << vent.err();
  const uint64_t job = accepted_job_id(sink);
  zmq::context_t ctx;
  {
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 1000);
    dealer.connect(farm.tasks_endpoint());
    v1::Envelope hello;
    hello.set_version(1);
    hello.mutable_hello()->mutable_worker()->set_id(std::string(1 << 20, 'w'));
    hello.mutable_hello()->set_credit(100);
    dealer.send(zmq::buffer(hello.SerializeAsString()), zmq::send_flags::none);
    hello.mutable_hello()->mutable_worker()->set_id("evil\x1b[2Jid");
    dealer.send(zmq::buffer(hello.SerializeAsString()), zmq::send_flags::none);
    zmq::socket_t push(ctx, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 1000);
    push.connect("ipc://" + farm.path("results"));
    v1::Envelope results;
    results.set_version(1);
    results.mutable_results()->mutable_worker()->set_id(std::string(10 << 20, 'x'));
    auto* r = results.mutable_results()->add_results();
    r->set_job_id(job);
    r->set_task_id(0);
    r->set_attempt(1);
    r->set_status(v1::STATUS_OK);
    r->set_kernel("noop");
    push.send(zmq::buffer(results.SerializeAsString()), zmq::send_flags::none);
    std::this_thread::sleep_for(300ms);
  }
  auto w = farm.worker("honest");
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto rep = farm.report();
  EXPECT_EQ(rep.tasks_ok(), 50u);
  ASSERT_EQ(rep.workers_size(), 1);
  EXPECT_EQ(rep.workers(0).id(), "honest");
  EXPECT_GE(rep.rejected_messages(), 1u);
  EXPECT_EQ(vent.err().find("\x1b"), std::string::npos) << "an escape sequence reached the log";
  EXPECT_NE(vent.err().find("refused a worker's registration"), std::string::npos) << vent.err();
}

}  // namespace
}  // namespace taskfarm::testing
