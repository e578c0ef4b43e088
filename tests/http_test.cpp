// The web side of the job service (issue 16): HttpService on its own with published snapshots
// (unit), then the real ventilator, sink and workers read through a real HTTP client.
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <fmt/core.h>

#include <regex>

#include "common/errors.h"
#include "farm.h"
#include "web/http_service.h"
#include "web/render.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

web::FarmSnapshot sample_snapshot(double t = 1.0, uint64_t ok = 40) {
  web::FarmSnapshot s;
  s.uptime_s = t;
  web::JobView j;
  j.id = "00000000000000aa";
  j.name = "mandel \"4k\"";  // quotes must be escaped in labels and JSON
  j.state = "running";
  j.total = 100;
  j.ok = ok;
  j.failed = 2;
  j.in_flight = 8;
  j.kernels = {"mandelbrot"};
  v1::TaskFailure f;
  f.set_task_id(7);
  f.set_kernel("mandelbrot");
  f.set_attempts(3);
  f.set_error("worker w3 lost (connection closed) on attempt 3 of 3");
  j.failures.push_back(f);
  s.jobs.push_back(j);
  web::WorkerView w;
  w.id = "gpu0";
  w.host = "node7";
  w.device = "cuda:0 (NVIDIA H100)";
  w.slots = 4;
  w.held = 3;
  w.gpu_mem_bytes = 1 << 30;
  s.workers.push_back(w);
  s.queue_depth = 50;
  s.have_sink_stats = true;
  auto* k = s.sink.add_kernels();
  k->set_kernel("mandelbrot");
  k->set_ok(ok);
  k->set_failed(2);
  for (double b : {0.001, 0.01, 0.1}) s.sink.add_latency_bounds_s(b);
  for (uint64_t c : {5u, 30u, 41u}) s.sink.add_latency_counts(c);
  s.sink.set_latency_count(42);
  s.sink.set_latency_sum_s(0.9);
  s.rejected = {{"ventilator", "tasks", 3}};
  s.journals.push_back(web::JournalView{"ventilator", 12, -1, 250, 0.03, ""});
  s.journals.push_back(web::JournalView{"sink", 40, 0.125, 0, 0, "disk full"});
  return s;
}

struct Served {
  explicit Served(std::string token = "") {
    web::HttpOptions o;
    o.port = 0;
    o.token = std::move(token);
    service = std::make_unique<web::HttpService>(o);
    service->publish(sample_snapshot());
    client = std::make_unique<httplib::Client>("127.0.0.1", service->port());
    client->set_read_timeout(5, 0);
  }
  std::unique_ptr<web::HttpService> service;
  std::unique_ptr<httplib::Client> client;
};

TEST(Http, ApiServesThePublishedSnapshotWithNumbersAsNumbers) {
  Served s;
  auto res = s.client->Get("/api/jobs");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const auto jobs = json::parse(res->body)["jobs"];
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["name"], "mandel \"4k\"");
  EXPECT_TRUE(jobs[0]["total"].is_number_unsigned());
  EXPECT_EQ(jobs[0]["done"], 42);
  EXPECT_EQ(jobs[0]["queued"], 50);
  EXPECT_FALSE(jobs[0].contains("failures")) << "the list stays small";

  res = s.client->Get("/api/jobs/00000000000000aa");
  ASSERT_TRUE(res);
  const auto job = json::parse(res->body);
  ASSERT_EQ(job["failures"].size(), 1u);
  EXPECT_EQ(job["failures"][0]["error"], "worker w3 lost (connection closed) on attempt 3 of 3");
  EXPECT_EQ(s.client->Get("/api/jobs/mandel%20%224k%22")->status, 200) << "by name";
  res = s.client->Get("/api/jobs/nope");
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json::parse(res->body)["error"], "unknown job 'nope'");

  res = s.client->Get("/api/workers");
  const auto w = json::parse(res->body)["workers"][0];
  EXPECT_EQ(w["id"], "gpu0");
  EXPECT_EQ(w["slots"], 4);
  EXPECT_EQ(w["gpu_mem_bytes"], 1 << 30);
}

TEST(Http, DashboardAndItsAssetsAreServedByTheBinary) {
  Served s;
  auto page = s.client->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/assets/chart.min.js"), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos) << "no CDN: nothing from outside";
  EXPECT_EQ(page->body.find("https://"), std::string::npos) << "no CDN: nothing from outside";
  for (const char* asset : {"/assets/chart.min.js", "/assets/dashboard.js", "/assets/dashboard.css"}) {
    auto a = s.client->Get(asset);
    ASSERT_TRUE(a) << asset;
    EXPECT_EQ(a->status, 200) << asset;
    EXPECT_GT(a->body.size(), 1000u) << asset;
  }
  EXPECT_NE(s.client->Get("/assets/chart.min.js")->body.find("Chart"), std::string::npos);
  EXPECT_EQ(s.client->Get("/assets/nothing.js")->status, 404);
  EXPECT_EQ(s.client->Get("/assets/../CMakeLists.txt")->status, 404);
}

// Each line of the text format: comments, or name{labels} value.
TEST(Http, MetricsFollowThePrometheusTextFormat) {
  Served s;
  auto res = s.client->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eEInfNa]+$)");
  std::istringstream in(res->body);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 20);
  const std::string& m = res->body;
  EXPECT_NE(m.find("taskfarm_tasks_total{kernel=\"mandelbrot\",state=\"ok\"} 40\n"), std::string::npos) << m;
  EXPECT_NE(m.find("taskfarm_job_tasks{job_id=\"00000000000000aa\",job=\"mandel \\\"4k\\\"\",state=\"in_flight\"} 8\n"),
            std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE taskfarm_task_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_task_latency_seconds_bucket{le=\"0.01\"} 30\n"), std::string::npos) << m;
  EXPECT_NE(m.find("taskfarm_task_latency_seconds_bucket{le=\"+Inf\"} 42\n"), std::string::npos) << m;
  EXPECT_NE(m.find("taskfarm_task_latency_seconds_count 42\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_worker_info{worker=\"gpu0\",host=\"node7\",device=\"cuda:0 (NVIDIA H100)\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("taskfarm_worker_gpu_memory_bytes{worker=\"gpu0\"} 1073741824\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_rejected_messages_total{process=\"ventilator\",socket=\"tasks\"} 3\n"),
            std::string::npos);
  EXPECT_NE(m.find("taskfarm_queue_depth 50\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_journal_commits_total{process=\"ventilator\"} 12\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_journal_writable{process=\"sink\"} 0\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_journal_commit_seconds_total{process=\"sink\"} 0.125\n"),
            std::string::npos);
  EXPECT_EQ(m.find("taskfarm_journal_commit_seconds_total{process=\"ventilator\"}"),
            std::string::npos) << "not measured there";
  EXPECT_NE(m.find("taskfarm_journal_lag_tasks{process=\"ventilator\"} 250\n"), std::string::npos);
  EXPECT_NE(m.find("taskfarm_journal_lag_seconds{process=\"ventilator\"} 0.03\n"), std::string::npos);
}

TEST(Http, TokenIsRequiredWhenSetAndTheCookieCarriesItForThePage) {
  Served s("s3cret");
  EXPECT_EQ(s.client->Get("/api/jobs")->status, 401);
  EXPECT_EQ(s.client->Get("/metrics")->status, 401);
  EXPECT_EQ(s.client->Get("/")->status, 401);
  EXPECT_EQ(s.client->Get("/api/jobs", {{"Authorization", "Bearer wrong"}})->status, 401);
  EXPECT_EQ(s.client->Get("/api/jobs", {{"Authorization", "Bearer s3cret"}})->status, 200);
  EXPECT_EQ(s.client->Get("/metrics?token=s3cret")->status, 200);
  auto page = s.client->Get("/?token=s3cret");
  EXPECT_EQ(page->status, 200);
  const std::string cookie = page->get_header_value("Set-Cookie");
  EXPECT_NE(cookie.find("taskfarm_token=s3cret"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  EXPECT_EQ(s.client->Get("/api/state", {{"Cookie", "a=b; taskfarm_token=s3cret"}})->status, 200);
  EXPECT_EQ(s.client->Post("/api/jobs/x/cancel", "", "text/plain")->status, 401);
  EXPECT_EQ(s.client->Get("/healthz")->status, 200) << "liveness needs no secret";
}

TEST(Http, CancelIsACommandForTheEventLoopAndOtherOriginsAreRefused) {
  Served s;
  std::atomic<bool> stop{false};
  std::vector<std::string> cancelled;
  std::thread loop([&] {  // stands in for the ventilator's event loop
    while (!stop) {
      for (auto& cmd : s.service->take_commands()) {
        if (cmd->job == "00000000000000aa") {
          cancelled.push_back(cmd->job);
          cmd->reply.set_value({200, cmd->job});
        } else {
          cmd->reply.set_value({404, "unknown job '" + cmd->job + "'"});
        }
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  auto res = s.client->Post("/api/jobs/00000000000000aa/cancel", "", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["state"], "cancelled");
  EXPECT_EQ(s.client->Post("/api/jobs/other/cancel", "", "text/plain")->status, 404);
  httplib::Headers evil = {{"Origin", "http://evil.example"}};
  EXPECT_EQ(s.client->Post("/api/jobs/00000000000000aa/cancel", evil, "", "text/plain")->status, 403);
  httplib::Headers same = {{"Origin", "http://127.0.0.1:" + std::to_string(s.service->port())}};
  EXPECT_EQ(s.client->Post("/api/jobs/00000000000000aa/cancel", same, "", "text/plain")->status, 200);
  stop = true;
  loop.join();
  EXPECT_EQ(cancelled.size(), 2u);
  EXPECT_EQ(s.client->Get("/api/jobs/00000000000000aa/cancel")->status, 404) << "GET never cancels";
}

TEST(Http, PortInUseIsASetupError) {
  Served s;
  web::HttpOptions o;
  o.port = s.service->port();
  EXPECT_THROW(web::HttpService{o}, SetupError);
}

TEST(Http, HistoryGivesThroughputRatesAndWorkerOccupancy) {
  web::History h;
  for (int i = 0; i <= 8; ++i) h.add(sample_snapshot(1.0 + 0.5 * i, 40 + 10 * i));  // 20 tasks/s
  ASSERT_FALSE(h.throughput().empty());
  EXPECT_NEAR(h.throughput().back().tasks_per_s, 20.0, 1e-6);
  EXPECT_NEAR(h.job_rate("00000000000000aa"), 20.0, 1e-6);
  EXPECT_EQ(h.tasks_completed(), 122u);  // 42 done when first seen, then 10 per sample
  const auto occ = h.occupancy("gpu0");
  ASSERT_FALSE(occ.empty());
  EXPECT_FLOAT_EQ(occ.back(), 0.75f);  // 3 of 4 streams held
  const auto j = web::job_json(sample_snapshot(5.0, 80).jobs[0], h, false);
  EXPECT_NEAR(j["eta_s"].get<double>(), (100.0 - 82.0) / 20.0, 1e-6);
}

// ---------------------------------------------------------------- real processes

// Returns: the port in the ventilator's "dashboard on http://HOST:PORT/..." line.
int dashboard_port(const Process& vent) {
  if (!vent.wait_for_log("dashboard on", 10s)) return 0;
  std::smatch m;
  const std::string err = vent.err();
  if (!std::regex_search(err, m, std::regex(R"(dashboard on http://[^:]+:(\d+)/)"))) return 0;
  return std::stoi(m[1]);
}

// Returns: a serving ventilator of its own (endpoints and log named `name`) in `farm`'s folder.
Process ventilator(Farm& farm, const std::string& name, std::vector<std::string> extra) {
  std::vector<std::string> args = {bin("taskfarm-ventilator"), "--serve",
                                   "--bind", "ipc://" + farm.path(name + "-tasks"),
                                   "--submit", "ipc://" + farm.path(name + "-submit"),
                                   "--sink-results", "ipc://" + farm.path(name + "-results"),
                                   "--sink-control", "ipc://" + farm.path(name + "-control")};
  args.insert(args.end(), extra.begin(), extra.end());
  return Process(args, farm.path(name));
}

json get_json(httplib::Client& c, const std::string& path) {
  auto res = c.Get(path);
  if (!res || res->status != 200) return json();
  return json::parse(res->body);
}

class WebFarm {
 public:
  explicit WebFarm(Farm& farm, std::vector<std::string> worker_env = {}, bool state = false)
      : farm_(farm), submit_("ipc://" + farm.path("submit")) {
    std::vector<std::string> sink_flags = {"--serve", "--results-service", "off"};
    std::vector<std::string> vent_flags = {"--serve", "--submit", submit_, "--http", "0"};
    if (state) {  // --state journals on both
      sink_flags.insert(sink_flags.end(), {"--state", farm.path("sink-state")});
      vent_flags.insert(vent_flags.end(), {"--state", farm.path("vent-state")});
    }
    sink_.emplace(farm.sink(sink_flags));
    vent_.emplace(farm.ventilator(vent_flags));
    worker_.emplace(farm.worker("w0", {"--threads", "2"}, std::move(worker_env)));
    port = dashboard_port(*vent_);
    client = std::make_unique<httplib::Client>("127.0.0.1", port);
    client->set_read_timeout(5, 0);
  }
  ~WebFarm() {
    for (auto* p : {&*vent_, &*sink_, &*worker_}) p->signal(SIGTERM);
    EXPECT_EQ(vent_->wait_for(5s), std::optional<int>(0)) << vent_->err();
    EXPECT_EQ(sink_->wait_for(5s), std::optional<int>(0)) << sink_->err();
    EXPECT_EQ(worker_->wait_for(5s), std::optional<int>(0)) << worker_->err();
  }
  std::string submit(const std::string& json_text) {
    Process p({bin("taskfarm"), "--server", submit_, "submit", farm_.write("job.json", json_text)},
              farm_.path("submit"));
    EXPECT_EQ(p.wait_for(20s), std::optional<int>(0)) << p.err();
    std::string id = p.out();
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
  }
  // Polls `path` until `pred` holds. Returns: the last JSON seen.
  template <typename Pred>
  json poll(const std::string& path, Pred pred, std::chrono::seconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json j;
    while (std::chrono::steady_clock::now() < deadline) {
      j = get_json(*client, path);
      if (!j.is_null() && pred(j)) break;
      std::this_thread::sleep_for(50ms);
    }
    return j;
  }
  Process& ventilator() { return *vent_; }

  int port = 0;
  std::unique_ptr<httplib::Client> client;

 private:
  Farm& farm_;
  std::string submit_;
  std::optional<Process> sink_, vent_, worker_;
};

TEST(HttpFarm, JobProgressWorkersAndMetricsFromARealFarm) {
  Farm farm;
  WebFarm web(farm);
  ASSERT_GT(web.port, 0) << web.ventilator().err();
  const std::string id = web.submit(
      R"({"name": "web", "tasks": [{"kernel": "saxpy", "count": 60, "size": 5000, "seed": 2},
                                   {"kernel": "sleep", "count": 40, "size": 2000}]})");
  ASSERT_EQ(id.size(), 16u);
  auto job = web.poll("/api/jobs/" + id, [](const json& j) { return j["state"] == "done"; });
  EXPECT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["ok"], 100);
  EXPECT_EQ(job["total"], 100);
  EXPECT_EQ(job["kernels"], json({"saxpy", "sleep"}));
  const auto workers = web.poll("/api/workers", [](const json& j) {
    return !j["workers"].empty() && j["workers"][0]["tasks"] == 100;  // the sink's totals
  })["workers"];
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["id"], "w0");
  EXPECT_EQ(workers[0]["slots"], 2);
  EXPECT_EQ(workers[0]["device"], "cpu");
  auto m = web.client->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("taskfarm_tasks_total{kernel=\"saxpy\",state=\"ok\"} 60\n"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("taskfarm_tasks_total{kernel=\"sleep\",state=\"ok\"} 40\n"), std::string::npos);
  EXPECT_NE(m->body.find("taskfarm_task_latency_seconds_count 100\n"), std::string::npos);
  EXPECT_NE(m->body.find("taskfarm_jobs{state=\"done\"} 1\n"), std::string::npos);
  EXPECT_NE(m->body.find("taskfarm_sink_up 1\n"), std::string::npos);
  EXPECT_EQ(m->body.find("taskfarm_journal"), std::string::npos) << "no --state, no journal";
}

// Returns: the value of the sample `series` (name and labels) in a Prometheus text body, or -1.
double metric(const std::string& body, const std::string& series) {
  const auto at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + series.size() + 2));
}

TEST(HttpFarm, JournalsShowInTheMetricsWithTheirCommitsAndLag) {
  Farm farm;
  WebFarm web(farm, {}, /*state=*/true);
  ASSERT_GT(web.port, 0) << web.ventilator().err();
  const std::string id =
      web.submit(R"({"name": "journaled", "tasks": [{"kernel": "sleep", "count": 60, "size": 2000}]})");
  auto job = web.poll("/api/jobs/" + id, [](const json& j) { return j["state"] == "done"; });
  EXPECT_EQ(job["state"], "done") << job.dump();
  std::string body;
  for (int i = 0; i < 100; ++i) {  // the sink's statistics come every half second
    auto m = web.client->Get("/metrics");
    ASSERT_TRUE(m);
    body = m->body;
    if (metric(body, R"(taskfarm_journal_commits_total{process="sink"})") > 0) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(metric(body, R"(taskfarm_journal_commits_total{process="ventilator"})"), 0) << body;
  EXPECT_GT(metric(body, R"(taskfarm_journal_commits_total{process="sink"})"), 0) << body;
  EXPECT_EQ(metric(body, R"(taskfarm_journal_writable{process="ventilator"})"), 1) << body;
  EXPECT_EQ(metric(body, R"(taskfarm_journal_writable{process="sink"})"), 1) << body;
  EXPECT_GE(metric(body, R"(taskfarm_journal_commit_seconds_total{process="sink"})"), 0) << body;
  EXPECT_EQ(metric(body, R"(taskfarm_journal_lag_tasks{process="ventilator"})"), 0)
      << "the job is over: its journal has it all\n" << body;
  EXPECT_GE(metric(body, R"(taskfarm_journal_lag_seconds{process="ventilator"})"), 0) << body;
}

TEST(HttpFarm, CancelButtonEndpointCancelsARunningJobAndFailuresCarryTheirError) {
  Farm farm;
  WebFarm web(farm, {"TASKFARM_TEST_FAIL_TASK=2"});
  ASSERT_GT(web.port, 0) << web.ventilator().err();
  const std::string id = web.submit(
      R"({"name": "long", "tasks": [{"kernel": "sleep", "count": 2000, "size": 20000}]})");
  auto job = web.poll("/api/jobs/" + id, [](const json& j) { return j["done"] > 0; });
  EXPECT_EQ(job["state"], "running");
  EXPECT_GT(job["recent_tasks_per_s"].get<double>(), 0) << job.dump();
  EXPECT_TRUE(job["eta_s"].is_number()) << job.dump();
  auto res = web.client->Post("/api/jobs/" + id + "/cancel", "", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  // The cancel is queued to the event loop; the next snapshot (every 250 ms) shows it.
  job = web.poll("/api/jobs/" + id, [](const json& j) { return j["state"] != "running"; });
  EXPECT_EQ(job["state"], "cancelled");
  res = web.client->Post("/api/jobs/" + id + "/cancel", "", "text/plain");
  EXPECT_EQ(res->status, 409) << res->body;
  EXPECT_EQ(json::parse(res->body)["error"], "job '" + id + "' is already cancelled");
  // A kernel failure shows with its error text.
  const std::string bad = web.submit(
      R"({"name": "bad", "tasks": [{"kernel": "sort", "count": 4, "size": 1000}]})");
  job = web.poll("/api/jobs/" + bad, [](const json& j) { return j["state"] == "failed"; });
  ASSERT_EQ(job["state"], "failed") << job.dump();
  ASSERT_EQ(job["failures"].size(), 1u) << job.dump();
  EXPECT_EQ(job["failures"][0]["task_id"], 2);
  EXPECT_EQ(job["failures"][0]["error"], "injected failure (TASKFARM_TEST_FAIL_TASK)");
}

TEST(HttpFarm, GarbageAtTheTaskSocketIsCountedInMetricsAndLoggedWithItsPeer) {
  Farm farm;
  WebFarm web(farm);
  ASSERT_GT(web.port, 0) << web.ventilator().err();
  zmq::context_t ctx;
  {
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 1000);
    dealer.set(zmq::sockopt::routing_id, std::string("bad-peer"));
    dealer.connect(farm.tasks_endpoint());
    for (int i = 0; i < 20; ++i) dealer.send(zmq::buffer(std::string("\xff\xfe garbage")), zmq::send_flags::none);
    std::this_thread::sleep_for(200ms);
  }
  const std::string needle = "taskfarm_rejected_messages_total{process=\"ventilator\",socket=\"tasks\"} 20\n";
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string body;
  while (std::chrono::steady_clock::now() < deadline && body.find(needle) == std::string::npos) {
    auto m = web.client->Get("/metrics");
    if (m) body = m->body;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(body.find(needle), std::string::npos) << body;
  const std::string err = web.ventilator().err();
  // Over ipc:// the peer is "localhost:UID:GID:PID" of the sender: this test.
  EXPECT_NE(err.find(fmt::format("rejected message #1 from localhost:{}:{}:{}:", getuid(), getgid(), getpid())),
            std::string::npos) << err;
  // Rate-limited: the first few, not all twenty.
  size_t lines = 0;
  for (size_t p = err.find("rejected message #"); p != std::string::npos; p = err.find("rejected message #", p + 1)) ++lines;
  EXPECT_EQ(lines, 5u) << err;
}

TEST(HttpFarm, WithCurveKeysThePageNeedsTheTokenTheVentilatorLogs) {
  Farm farm;
  const std::string dir = farm.path("keys"), auth = farm.path("authorized");
  for (const auto& [name, role] : {std::pair{"head", "head"}, std::pair{"w0", "workers"}}) {
    Process p({bin("taskfarm"), "keygen", name, "--dir", dir}, farm.path(std::string("keygen-") + name));
    ASSERT_EQ(p.wait_for(5s), std::optional<int>(0)) << p.err();
    std::filesystem::create_directories(auth + "/" + role);  // keys are authorized by role
    std::filesystem::copy_file(dir + "/" + name + ".pub", auth + "/" + role + "/" + name + ".pub");
  }
  auto vent = farm.ventilator({"--serve", "--submit", "ipc://" + farm.path("submit"), "--http", "0",
                               "--curve-secret", dir + "/head.key", "--authorized-keys", auth,
                               "--server-key", dir + "/head.pub"});
  const int port = dashboard_port(vent);
  ASSERT_GT(port, 0) << vent.err();
  std::smatch m;
  const std::string err = vent.err();
  ASSERT_TRUE(std::regex_search(err, m, std::regex(R"(\?token=([0-9a-f]{32}))"))) << err;
  httplib::Client c("127.0.0.1", port);
  EXPECT_EQ(c.Get("/api/jobs")->status, 401);
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  EXPECT_EQ(c.Get("/api/jobs", {{"Authorization", "Bearer " + m[1].str()}})->status, 200);
  // A token file replaces the random one.
  const std::string file = farm.write("token", "from-a-file\n");
  auto vent2 = ventilator(farm, "vent2", {"--http", "0", "--http-token-file", file});
  const int port2 = dashboard_port(vent2);
  ASSERT_GT(port2, 0) << vent2.err();
  httplib::Client c2("127.0.0.1", port2);
  EXPECT_EQ(c2.Get("/api/jobs")->status, 401);
  EXPECT_EQ(c2.Get("/api/jobs?token=from-a-file")->status, 200);
  for (auto* v : {&vent, &vent2}) {
    v->signal(SIGTERM);
    EXPECT_EQ(v->wait_for(5s), std::optional<int>(0)) << v->err();
  }
}

TEST(HttpFarm, AOneShotBatchCanHaveADashboardToo) {
  Farm farm;
  auto sink = farm.sink();
  auto w = farm.worker("w0", {"--threads", "2"});
  auto vent = farm.ventilator({"--kernel", "sleep", "--tasks", "300", "--size", "5000", "--http", "0"});
  const int port = dashboard_port(vent);
  ASSERT_GT(port, 0) << vent.err();
  httplib::Client c("127.0.0.1", port);
  json jobs;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    jobs = get_json(c, "/api/jobs");
    if (!jobs.is_null() && jobs["jobs"].size() == 1 && jobs["jobs"][0]["done"] > 0) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(jobs["jobs"].size(), 1u) << jobs.dump();
  EXPECT_EQ(jobs["jobs"][0]["name"], "sleep-300x5000");
  EXPECT_EQ(jobs["jobs"][0]["total"], 300);
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  EXPECT_FALSE(c.Get("/api/jobs")) << "the server went with the ventilator";
}

TEST(HttpFarm, BadHttpFlagsAreOneLineErrors) {
  Farm farm;
  auto busy = ventilator(farm, "busy", {"--http", "0"});
  const int port = dashboard_port(busy);
  ASSERT_GT(port, 0) << busy.err();
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--http", "eighty"}, "--http: 'eighty' is not a port"},
      {{"--http", std::to_string(port)}, "cannot serve HTTP"},
      {{"--http", "0", "--http-token-file", farm.path("missing")}, "cannot read --http-token-file"},
  };
  int i = 0;
  for (const auto& [flags, expect] : cases) {
    auto v = ventilator(farm, "bad" + std::to_string(i++), flags);
    EXPECT_EQ(v.wait_for(10s), std::optional<int>(1)) << expect;
    const std::string err = v.err();
    EXPECT_NE(err.find(expect), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  busy.signal(SIGTERM);
  EXPECT_EQ(busy.wait_for(5s), std::optional<int>(0));
}

}  // namespace
}  // namespace taskfarm::testing
