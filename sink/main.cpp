// taskfarm-sink: collects results, prints the report table, writes --report FILE.
#include <fmt/core.h>

#include "common/cli.h"
#include "common/errors.h"
#include "common/net.h"
#include "common/protocol.h"
#include "sink/sink.h"

int main(int argc, char** argv) {
  using namespace taskfarm;
  CLI::App app{"Collects task results from workers, reports the batch, then tells workers to stop.",
               "taskfarm-sink"};
  sink::SinkOptions opt;
  std::string results_spec, control_spec;
  app.add_option("--bind", results_spec,
                 "results endpoint to bind: PORT, HOST:PORT or tcp://... (default tcp://*:5558)");
  app.add_option("--control", control_spec,
                 "control endpoint to bind (PUB: acks, batch end, kill; default tcp://*:5559)");
  app.add_option("--report", opt.report_path, "write the JSON report to FILE");
  app.add_flag("--serve", opt.serve,
               "handle jobs until SIGINT/SIGTERM (with taskfarm-ventilator --serve)");
  app.add_option("--results-dir", opt.results_dir,
                 "write DIR/<job id>/report.json for every job (default with --serve: "
                 "taskfarm-results)");
  app.add_flag("--keep-workers", opt.keep_workers,
               "leave workers running after the batch (for the next one)");
  app.add_flag("-q,--quiet", opt.quiet, "do not print the report table");
  int64_t max_message_mb = opt.max_message_bytes >> 20;
  app.add_option("--max-message-mb", max_message_mb, "largest accepted message, in MiB")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--max-jobs", opt.max_jobs, "jobs aggregated at once; more are refused")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--max-tasks", opt.max_tasks_per_job, "largest job accepted, in tasks")
      ->check(CLI::Range(uint64_t{1}, uint64_t{UINT32_MAX}))
      ->capture_default_str();
  uint64_t max_output_mb = opt.max_output_bytes >> 20;
  auto* max_output_opt =
      app.add_option("--max-output-mb", max_output_mb,
                     "largest output of one task, in MiB (default 64, at most half the message "
                     "limit)")
          ->check(CLI::Range(uint64_t{1}, uint64_t{1024}));
  std::string service_spec;
  app.add_option("--results-service", service_spec,
                 "endpoint for `taskfarm results` clients (default with --serve: tcp://*:5561; "
                 "'off': none)");
  app.add_option("--state", opt.state_dir,
                 "journal folder (DIR/sink.db): a sink restarted with the same DIR continues its "
                 "jobs; acks are sent once results are in it");
  std::string farm;
  add_farm_flag(app, farm, "its ventilator's, learnt from the first job");
  opt.curve.add_flags(app, /*server=*/true, /*client=*/false);
  add_common_flags(app);
  return cli_main(app, argc, argv, [&] {
    opt.max_message_bytes = max_message_mb << 20;
    set_farm(farm);
    if (opt.serve && opt.results_dir.empty()) opt.results_dir = "taskfarm-results";
    opt.results_bind = bind_endpoint(results_spec, kResultsPort);
    opt.control_bind = bind_endpoint(control_spec, kControlPort);
    // An output travels in a result message: it must fit, with room for the rest.
    if (max_output_opt->count() == 0) {
      max_output_mb = std::min<uint64_t>(max_output_mb, static_cast<uint64_t>(max_message_mb) / 2);
    } else if (max_output_mb + 1 > static_cast<uint64_t>(max_message_mb)) {
      throw SetupError(fmt::format("--max-output-mb {} needs --max-message-mb of at least {}",
                                   max_output_mb, max_output_mb + 1));
    }
    opt.max_output_bytes = std::max<uint64_t>(max_output_mb, 0) << 20;
    if (opt.max_output_bytes == 0) opt.max_output_bytes = uint64_t{512} << 10;
    if (service_spec != "off" && (opt.serve || !service_spec.empty())) {
      opt.results_service_bind = bind_endpoint(service_spec, kResultsServicePort);
    }
    sink::Sink s(opt);
    return s.run();
  });
}
