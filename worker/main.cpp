// taskfarm-worker: pulls tasks from the ventilator, runs them on CPU threads or a GPU, pushes
// results to the sink.
#include <fmt/core.h>

#include "common/cli.h"
#include "common/endpoints.h"
#include "common/text.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  using namespace taskfarm;
  CLI::App app{"Runs tasks from the ventilator and sends the results to the sink.",
               "taskfarm-worker"};
  worker::WorkerOptions opt;
  SinkEndpoints sink;
  std::string ventilator = "localhost";
  double peer_timeout_s = 3, drain_timeout_s = 30;
  app.add_option("--ventilator", ventilator, "ventilator HOST, HOST:PORT or endpoint (port 5557)")
      ->capture_default_str();
  sink.add_flags(app);
  app.add_option("--id", opt.id, "worker name in reports (default HOST-PID)")
      ->check([](const std::string& id) -> std::string {
        // The id becomes part of a ZMQ routing id (255 bytes at most) and appears in logs.
        const auto why = name_problem(id, kMaxWorkerIdBytes, /*allow_spaces=*/false);
        if (!why) return "";
        return fmt::format("worker id '{}' {} (ids: printable UTF-8, no spaces, at most {} bytes)",
                           printable(id, 64), *why, kMaxWorkerIdBytes);
      });
  app.add_option("--device", opt.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", opt.threads, "CPU tasks run at once (default: number of cores)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--streams", opt.streams, "CUDA streams, i.e. GPU tasks in flight at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--prefetch", opt.prefetch,
                 "tasks queued beyond the running ones (default: adaptive, ~2 ms of work)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--peer-timeout", peer_timeout_s,
                 "seconds without word from the ventilator before registering again")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--drain-timeout", drain_timeout_s,
                 "on SIGINT/SIGTERM, seconds to let running tasks finish")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--plugin", opt.plugins, "load kernels from a plugin library (repeatable)");
  app.add_option("--plugin-dir", opt.plugin_dirs,
                 "load every lib*.so plugin in a folder (repeatable)");
  app.add_flag("--allow-exec", opt.allow_exec,
               "run command tasks (kernel exec): only with CurveZMQ keys across machines");
  app.add_option("--exec-dir", opt.exec_dir,
                 "folder for the command tasks' working folders (default: a temporary one)");
  uint64_t max_output_mb = opt.max_output_bytes >> 20;
  app.add_option("--max-output-mb", max_output_mb, "largest output a task may return, in MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1024}))
      ->capture_default_str();
  std::string farm;
  add_farm_flag(app, farm, "its ventilator's, learnt when it registers");
  opt.curve.add_flags(app, /*server=*/false, /*client=*/true);
  add_common_flags(app);
  return cli_main(app, argc, argv, [&] {
    opt.ventilator = connect_endpoint(ventilator, kTasksPort);
    set_farm(farm);
    opt.sink_results = sink.results_endpoint();
    opt.sink_control = sink.control_endpoint();
    opt.peer_timeout_ms = static_cast<int64_t>(peer_timeout_s * 1000);
    opt.heartbeat_ms = std::max<int64_t>(20, opt.peer_timeout_ms / 6);
    opt.drain_timeout_ms = static_cast<int64_t>(drain_timeout_s * 1000);
    opt.max_output_bytes = max_output_mb << 20;
    worker::Worker w(opt);
    return w.run();
  });
}
