// taskfarm-ventilator: one batch from flags or a job file, dispatched to the connected workers.
#include <fmt/core.h>

#include "common/cli.h"
#include "common/endpoints.h"
#include "common/errors.h"
#include "kernels/kernel.h"
#include "jobs/job.h"
#include "ventilator/ventilator.h"
#include "web/http_flags.h"

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
  auto* size_opt =
      app.add_option("--size", size,
                     "task size (elements, N, microseconds: see kernels/README.md); required "
                     "except for noop")
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
  app.add_option("--min-workers", opt.min_workers,
                 "dispatch a job only once this many workers are connected (job files may say "
                 "min_workers)")
      ->check(CLI::Range(0u, 100000u));
  double min_workers_wait_s = 60;
  app.add_option("--min-workers-wait", min_workers_wait_s,
                 "one batch: give up when fewer workers than --min-workers came within this long")
      ->check(CLI::Range(0.1, 1e6))
      ->capture_default_str();
  double kernel_wait_s = 10;
  app.add_option("--kernel-wait", kernel_wait_s,
                 "one batch: give up when no connected worker offers a kernel of the job for "
                 "this long (0: wait)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  int64_t max_job_mb = opt.max_job_bytes >> 20;
  app.add_option("--max-job-mb", max_job_mb,
                 "largest job a client may submit, or job file --job reads, in MiB")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--max-jobs", opt.table_limits.max_unfinished,
                 "jobs queued or running at once; more are refused")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  uint64_t max_queued_mb = opt.table_limits.max_spec_bytes >> 20;
  app.add_option("--max-queued-mb", max_queued_mb,
                 "memory the specs (payloads) of unfinished jobs may hold, in MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-tasks", opt.job_limits.max_tasks, "most tasks in one job")
      ->check(CLI::Range(uint64_t{1}, uint64_t{UINT32_MAX}))
      ->capture_default_str();
  app.add_option("--state", opt.state_dir,
                 "journal folder (DIR/ventilator.db): a ventilator restarted with the same DIR "
                 "continues its jobs");
  std::string farm;
  add_farm_flag(app, farm, "this host's name and the tasks endpoint");
  web::HttpFlags http;  // dashboard and /metrics (issue 16)
  http.add_flags(app);
  opt.curve.add_flags(app, /*server=*/true, /*client=*/true);
  add_common_flags(app);
  return cli_main(app, argc, argv, [&] {
    opt.policy.worker_timeout_ms = static_cast<int64_t>(worker_timeout_s * 1000);
    opt.policy.task_timeout_ms = static_cast<int64_t>(task_timeout_s * 1000);
    opt.heartbeat_ms = std::max<int64_t>(20, opt.policy.worker_timeout_ms / 6);
    opt.sink_wait_ms = static_cast<int64_t>(wait_sink_s * 1000);
    opt.tasks_bind = bind_endpoint(bind_spec, kTasksPort);
    // Stable across restarts (a journal's jobs continue), distinct for farms running at once.
    set_farm(farm.empty() ? fmt::format("{}:{}", host_name(), opt.tasks_bind) : farm);
    opt.sink_results = sink.results_endpoint();
    opt.sink_control = sink.control_endpoint();
    opt.max_job_bytes = max_job_mb << 20;
    opt.kernel_wait_ms = static_cast<int64_t>(kernel_wait_s * 1000);
    opt.min_workers_wait_ms = static_cast<int64_t>(min_workers_wait_s * 1000);
    opt.table_limits.max_spec_bytes = max_queued_mb << 20;
    opt.http = http.resolve(serve, opt.curve.enabled(), &opt.http_optional);
    if (serve) {
      opt.submit_bind = bind_endpoint(submit_spec, kSubmitPort);
      ventilator::Ventilator v(opt);
      return v.serve();
    }
    v1::JobSpec spec;
    if (!job_file.empty()) {
      spec = jobs::load_job_file(job_file, opt.max_job_bytes);
    } else {
      if (kernel.empty()) throw SetupError("give --job FILE, --kernel K --tasks N, or --serve");
      if (tasks == 0) throw SetupError("--tasks must be at least 1");
      const auto* def = kernels::KernelRegistry::instance().find(kernel);
      if (def && def->job_needs_size && size_opt->count() == 0) {
        throw SetupError(fmt::format("--kernel {} needs --size ({})", kernel, def->size_meaning));
      }
      auto* t = spec.add_tasks();
      t->set_kernel(kernel);
      t->set_count(tasks);
      t->set_size(size);
      t->set_seed(seed);
      spec.set_name(size_opt->count() > 0 ? fmt::format("{}-{}x{}", kernel, tasks, size)
                                          : fmt::format("{}-{}", kernel, tasks));
    }
    jobs::validate_job(spec, job_file.empty() ? "flags" : job_file, opt.job_limits);
    ventilator::Ventilator v(opt);
    return v.run_batch(std::move(spec));
  });
}
