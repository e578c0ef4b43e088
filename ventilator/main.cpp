// taskfarm-ventilator: one batch from flags or a job file, dispatched to the connected workers.
#include <fmt/core.h>

#include <cctype>
#include <fstream>

#include "common/cli.h"
#include "common/endpoints.h"
#include "common/errors.h"
#include "kernels/kernel.h"
#include "ventilator/job.h"
#include "ventilator/ventilator.h"

namespace {
// Returns: the first line of `path`, trimmed. Throws: SetupError when it is missing or empty.
std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) throw taskfarm::SetupError(fmt::format("cannot read --http-token-file {}", path));
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw taskfarm::SetupError(fmt::format("--http-token-file {} is empty", path));
  return token;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace taskfarm;
  CLI::App app{"Sends one batch of tasks to the workers and waits until the sink has every result.",
               "taskfarm-ventilator"};
  ventilator::VentilatorOptions opt;
  SinkEndpoints sink;
  std::string bind_spec, job_file, kernel;
  uint64_t tasks = 0, seed = 1;
  int64_t size = 0;
  double wait_sink_s = 0, worker_timeout_s = 3, task_timeout_s = 0;
  auto* job_opt = app.add_option("--job", job_file, "job file (JSON, see examples/)");
  auto* kernel_opt =
      app.add_option("--kernel", kernel, "kernel: " + kernels::KernelRegistry::instance().names())
          ->excludes(job_opt);
  app.add_option("--tasks", tasks, "number of tasks")->excludes(job_opt)->needs(kernel_opt);
  app.add_option("--size", size, "task size (elements, N, microseconds: see kernels/README.md)")
      ->excludes(job_opt);
  app.add_option("--seed", seed, "generator seed")->excludes(job_opt)->capture_default_str();
  app.add_option("--bind", bind_spec, "task endpoint to bind (default tcp://*:5557)");
  bool serve = false;
  std::string submit_spec;
  app.add_flag("--serve", serve, "run as a job service for `taskfarm submit` (until SIGINT/SIGTERM)")
      ->excludes(job_opt)
      ->excludes(kernel_opt);
  app.add_option("--submit", submit_spec, "job service endpoint to bind (default tcp://*:5560)");
  sink.add_flags(app);
  app.add_option("--window", opt.policy.window, "most unresolved tasks at once")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--max-attempts", opt.policy.max_attempts,
                 "attempts before a task is failed (job files may set max_attempts)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--worker-timeout", worker_timeout_s,
                 "seconds of silence after which a worker's tasks are re-issued")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--task-timeout", task_timeout_s,
                 "re-issue a task held longer than this many seconds (0: never)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--wait-sink", wait_sink_s, "give up if the sink does not answer (0: wait)")
      ->check(CLI::Range(0.0, 1e6));
  // Web dashboard and /metrics (issue 16).
  std::string http_port, http_token, http_token_file;
  web::HttpOptions http;
  app.add_option("--http", http_port,
                 "serve the dashboard, /metrics and /api on this port (0: any free port; off: "
                 "none; default 8080 with --serve, off otherwise)");
  app.add_option("--http-bind", http.bind, "address for --http (0.0.0.0 opens it to the network)")
      ->capture_default_str();
  auto* token_opt = app.add_option("--http-token", http_token,
                                   "require this token on every HTTP request (a random one is "
                                   "made when CurveZMQ keys are set)");
  app.add_option("--http-token-file", http_token_file, "read the HTTP token from this file")
      ->excludes(token_opt);
  opt.curve.add_flags(app, /*server=*/true, /*client=*/true);
  add_common_flags(app);
  return cli_main(app, argc, argv, [&] {
    opt.policy.worker_timeout_ms = static_cast<int64_t>(worker_timeout_s * 1000);
    opt.policy.task_timeout_ms = static_cast<int64_t>(task_timeout_s * 1000);
    opt.heartbeat_ms = std::max<int64_t>(20, opt.policy.worker_timeout_ms / 6);
    opt.sink_wait_ms = static_cast<int64_t>(wait_sink_s * 1000);
    opt.tasks_bind = bind_endpoint(bind_spec, kTasksPort);
    opt.sink_results = sink.results_endpoint();
    opt.sink_control = sink.control_endpoint();
    if (http_port.empty()) http_port = serve ? "8080" : "off";
    if (http_port != "off") {
      int port = -1;
      try {
        size_t used = 0;
        port = std::stoi(http_port, &used);
        if (used != http_port.size()) port = -1;
      } catch (const std::exception&) {
      }
      if (port < 0 || port > 65535) throw SetupError(fmt::format("--http: '{}' is not a port", http_port));
      http.port = port;
      if (!http_token_file.empty()) {
        http.token = read_token_file(http_token_file);
      } else if (!http_token.empty()) {
        http.token = http_token;
      } else if (opt.curve.enabled()) {
        http.token = web::random_token();  // a browser cannot do CURVE: the page needs a secret
      }
      opt.http = http;
      opt.http_optional = !app.count("--http");
    }
    if (serve) {
      opt.submit_bind = bind_endpoint(submit_spec, kSubmitPort);
      ventilator::Ventilator v(opt);
      return v.serve();
    }
    v1::JobSpec spec;
    if (!job_file.empty()) {
      spec = ventilator::load_job_file(job_file);
    } else {
      if (kernel.empty()) throw SetupError("give --job FILE, --kernel K --tasks N, or --serve");
      if (tasks == 0) throw SetupError("--tasks must be at least 1");
      auto* t = spec.add_tasks();
      t->set_kernel(kernel);
      t->set_count(tasks);
      t->set_size(size);
      t->set_seed(seed);
      spec.set_name(fmt::format("{}-{}x{}", kernel, tasks, size));
      spec.set_max_attempts(opt.policy.max_attempts);
    }
    ventilator::validate_job(spec, job_file.empty() ? "flags" : job_file);
    opt.policy.max_attempts = spec.max_attempts();
    ventilator::Ventilator v(opt);
    return v.run_batch(std::move(spec));
  });
}
