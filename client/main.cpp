// taskfarm: the job service client for scripts (submit / status / wait / cancel).
#include <fmt/core.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "client/job_client.h"
#include "client/results.h"
#include "common/cli.h"
#include "common/errors.h"
#include "common/job_state.h"
#include "common/net.h"
#include "sink/aggregator.h"
#include "ventilator/job.h"

namespace {

using namespace taskfarm;

bool finished(const v1::JobStatus& s) { return job_state_final(s.state()); }

std::string progress_line(const v1::JobStatus& s) {
  std::string eta = "-";
  if (s.tasks_per_s() > 0 && s.total() > s.done()) {
    eta = fmt::format("{:.1f} s", static_cast<double>(s.total() - s.done()) / s.tasks_per_s());
  }
  return fmt::format("{} {} {}/{} tasks, {} failed, {:.1f} tasks/s, ETA {}", s.name(), job_state_name(s.state()),
                     s.done(), s.total(), s.failed(), s.tasks_per_s(), eta);
}

// Returns: the job's status, asking again while the service does not answer (a restarting
// ventilator) for up to a minute. Throws: SetupError (NoAnswer after that minute).
v1::StatusReply status_riding_over(client::JobClient& c, const std::string& job) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (bool said = false;; said = true) {
    try {
      return c.status(job);
    } catch (const client::NoAnswer& e) {
      if (std::chrono::steady_clock::now() >= give_up) throw;
      if (!said) fmt::print(stderr, "\ntaskfarm: {}; asking again for up to a minute\n", e.what());
    }
  }
}

// Polls the job until it finishes, showing progress. Returns: the exit code.
int wait_for(client::JobClient& c, const std::string& job, const std::string& report_path,
             bool quiet) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  auto last_plain = std::chrono::steady_clock::now() - std::chrono::hours(1);
  for (;;) {
    const auto reply = status_riding_over(c, job);
    if (reply.jobs_size() == 0) throw SetupError(fmt::format("unknown job '{}'", job));
    const auto& s = reply.jobs(0);
    if (finished(s)) {
      if (tty && !quiet) fmt::print("\r\033[K");
      if (s.has_report()) {
        if (!report_path.empty()) {
          std::ofstream(report_path, std::ios::trunc) << sink::report_json(s.report()) << '\n';
        }
        if (!quiet) fmt::print("{}", sink::report_table(s.report()));
      } else if (!quiet) {
        fmt::print("{}\n", progress_line(s));
      }
      std::fflush(stdout);
      if (!s.error().empty()) fmt::print(stderr, "taskfarm: job {} failed: {}\n", job, s.error());
      if (s.state() == v1::JOB_DONE) return kExitOk;
      if (s.state() == v1::JOB_CANCELLED) fmt::print(stderr, "taskfarm: job {} was cancelled\n", job);
      if (s.state() == v1::JOB_INTERRUPTED) return kExitInterrupted;
      return kExitTasksFailed;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!quiet && tty) {
      fmt::print("\r\033[K{}", progress_line(s));
      std::fflush(stdout);
    } else if (!quiet && now - last_plain > std::chrono::seconds(2)) {
      fmt::print("{}\n", progress_line(s));
      std::fflush(stdout);
      last_plain = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 200 : 250));
  }
}

int print_status(client::JobClient& c, const std::string& job, bool json) {
  const auto reply = c.status(job);
  if (json) {
    google::protobuf::util::JsonPrintOptions options;
    options.always_print_primitive_fields = true;
    options.preserve_proto_field_names = true;
    std::string out;
    (void)google::protobuf::util::MessageToJsonString(reply, &out, options);
    fmt::print("{}\n", out);
    return kExitOk;
  }
  fmt::print("{:<16}  {:<20} {:<9} {:>19} {:>12} {:>9}\n", "JOB", "NAME", "STATE", "DONE/TOTAL",
             "TASKS/S", "AGE");
  for (const auto& s : reply.jobs()) {
    fmt::print("{:<16}  {:<20} {:<9} {:>19} {:>12.1f} {:>8.1f}s\n", s.job_id(), s.name(), job_state_name(s.state()),
               fmt::format("{}/{}", s.done(), s.total()), s.tasks_per_s(), s.age_s());
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Submits jobs to a taskfarm job service (taskfarm-ventilator --serve) and follows them.",
               "taskfarm"};
  app.require_subcommand(1);
  std::string server = "localhost";
  double timeout_s = 5;
  app.add_option("--server", server, "job service HOST, HOST:PORT or endpoint (port 5560)")
      ->capture_default_str();
  app.add_option("--timeout", timeout_s, "seconds to wait for the service to answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  CurveOptions curve;
  curve.add_flags(app, /*server=*/false, /*client=*/true);
  add_common_flags(app);

  std::string file, job, report_path;
  bool wait = false, json = false, quiet = false;
  auto* submit = app.add_subcommand("submit", "submit a job file; prints the job id");
  submit->add_option("FILE", file, "job file (JSON)")->required();
  submit->add_flag("--wait", wait, "wait for the job, show progress, print the report");
  submit->add_option("--report", report_path, "with --wait: write the JSON report to FILE");
  submit->add_flag("-q,--quiet", quiet, "with --wait: no progress or table");
  auto* status = app.add_subcommand("status", "list jobs, or show one");
  status->add_option("JOB", job, "job id or name");
  status->add_flag("--json", json, "print JSON");
  auto* wait_cmd = app.add_subcommand("wait", "wait for a job and print its report");
  wait_cmd->add_option("JOB", job, "job id or name")->required();
  wait_cmd->add_option("--report", report_path, "write the JSON report to FILE");
  wait_cmd->add_flag("-q,--quiet", quiet, "no progress or table");
  auto* cancel = app.add_subcommand("cancel", "stop a job and discard its results");
  cancel->add_option("JOB", job, "job id or name")->required();
  std::string out_dir, sink_spec;
  bool no_wait = false;
  auto* results = app.add_subcommand(
      "results", "fetch a job's outputs and index into a folder (resumable)");
  results->add_option("JOB", job, "job id or name")->required();
  results->add_option("--out", out_dir, "folder for index.jsonl and outputs/ (default: JOB id)");
  results->add_option("--sink", sink_spec,
                      "the sink's results service: HOST, HOST:PORT or endpoint (default: the "
                      "--server host, port 5561)");
  results->add_flag("--no-wait", no_wait, "fetch what exists now, do not wait for the job");
  results->add_flag("-q,--quiet", quiet, "no summary line");
  std::string key_name, key_dir = ".";
  auto* keygen = app.add_subcommand("keygen", "write a CurveZMQ key pair: DIR/NAME.key and DIR/NAME.pub");
  keygen->add_option("NAME", key_name, "key name, e.g. head or worker-7")->required();
  keygen->add_option("--dir", key_dir, "directory for the two files")->capture_default_str();

  return cli_main(app, argc, argv, [&]() -> int {
    if (*keygen) {
      fmt::print("{}\n", write_key_pair(key_dir, key_name));
      return kExitOk;
    }
    client::JobClient c(connect_endpoint(server, kSubmitPort),
                        static_cast<int64_t>(timeout_s * 1000), curve);
    if (*submit) {
      const std::string id = c.submit(ventilator::load_job_file(file));
      if (!wait) {
        fmt::print("{}\n", id);
        return kExitOk;
      }
      if (!quiet) fmt::print("submitted {}\n", id);
      return wait_for(c, id, report_path, quiet);
    }
    if (*status) return print_status(c, job, json);
    if (*results) {
      client::FetchOptions f;
      const auto reply = c.status(job);  // resolves a name, and checks the job exists
      if (reply.jobs_size() == 0) throw SetupError(fmt::format("unknown job '{}'", job));
      f.job_id = reply.jobs(0).job_id();
      f.endpoint = sink_spec.empty() ? client::results_endpoint_near(server)
                                     : connect_endpoint(sink_spec, kResultsServicePort);
      if (f.endpoint.empty()) throw SetupError("give --sink: the sink's results service");
      f.out_dir = out_dir.empty() ? f.job_id : out_dir;
      f.wait = !no_wait;
      f.quiet = quiet;
      f.timeout_ms = static_cast<int64_t>(timeout_s * 1000);
      return client::fetch_results(f, curve);
    }
    if (*wait_cmd) return wait_for(c, job, report_path, quiet);
    fmt::print("{}\n", c.cancel(job));
    return kExitOk;
  });
}
