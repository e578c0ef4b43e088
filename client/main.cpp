// taskfarm: the job service client for scripts (submit / status / wait / cancel / workers).
#include <fmt/core.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
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
#include "common/report.h"
#include "common/signals.h"
#include "common/text.h"
#include "jobs/job.h"

namespace {

using namespace taskfarm;

bool finished(const v1::JobStatus& s) { return job_state_final(s.state()); }

std::string progress_line(const v1::JobStatus& s) {
  std::string eta = "-";
  if (s.tasks_per_s() > 0 && s.total() > s.done()) {
    eta = fmt::format("{:.1f} s", static_cast<double>(s.total() - s.done()) / s.tasks_per_s());
  }
  // A job that does not move says why ("waiting for the sink at ...", "no worker connected").
  const std::string why = s.reason().empty() ? "" : "; " + printable(s.reason(), 400);
  return fmt::format("{} {} {}/{} tasks, {} failed, {:.1f} tasks/s, ETA {}{}",
                     printable(s.name(), jobs::kMaxJobNameBytes), job_state_name(s.state()),
                     s.done(), s.total(), s.failed(), s.tasks_per_s(), eta, why);
}

// Returns: the job's status, asking again while the service does not answer (a restarting
// ventilator) for up to a minute. Throws: SetupError (NoAnswer after that minute), Interrupted.
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

// The job keeps running when a client stops waiting: say how to come back to it.
int stopped_waiting(const std::string& job, bool tty) {
  if (tty) fmt::print("\n");
  std::fflush(stdout);
  fmt::print(stderr,
             "taskfarm: stopped waiting; job {} keeps running. Follow it again with `taskfarm "
             "wait {}`, stop it with `taskfarm cancel {}`\n",
             job, job, job);
  return kExitInterrupted;
}

// Polls the job until it finishes, showing progress, until a stop signal.
// Returns: the exit code (0 done, 2 failed or cancelled, 130 interrupted).
int wait_for(client::JobClient& c, const std::string& job, const std::string& report_path,
             bool quiet) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  auto last_plain = std::chrono::steady_clock::now() - std::chrono::hours(1);
  std::string id = job;  // the id once known: names may be reused
  int report_polls = 0;
  try {
    for (;;) {
      const auto reply = status_riding_over(c, id);
      if (reply.jobs_size() == 0) throw SetupError(fmt::format("unknown job '{}'", job));
      const auto& s = reply.jobs(0);
      id = s.job_id();
      // A cancelled job's partial report follows the cancel by a few milliseconds.
      if (s.state() == v1::JOB_CANCELLED && !s.has_report() && ++report_polls < 10) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (stop_requested()) return stopped_waiting(id, tty && !quiet);
        continue;
      }
      if (finished(s)) {
        if (tty && !quiet) fmt::print("\r\033[K");
        if (s.has_report()) {
          if (!report_path.empty()) {
            std::ofstream(report_path, std::ios::trunc) << report_json(s.report()) << '\n';
          }
          if (!quiet) fmt::print("{}", report_table(s.report()));
        } else if (!quiet) {
          fmt::print("{}\n", progress_line(s));
        }
        std::fflush(stdout);
        if (!s.error().empty()) fmt::print(stderr, "taskfarm: job {} failed: {}\n", id, s.error());
        if (s.state() == v1::JOB_DONE) return kExitOk;
        if (s.state() == v1::JOB_CANCELLED) fmt::print(stderr, "taskfarm: job {} was cancelled\n", id);
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
      // sleep_for resumes after a signal: wait in slices and look at the stop flag.
      for (int i = 0; i < (tty ? 4 : 5) && !stop_requested(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (stop_requested()) return stopped_waiting(id, tty && !quiet);
    }
  } catch (const Interrupted&) {
    return stopped_waiting(id, tty && !quiet);
  }
}

struct StatusFilter {
  std::vector<std::string> states;
  std::string name;  // shell pattern
  bool matches(const v1::JobStatus& s) const {
    if (!states.empty() && std::find(states.begin(), states.end(), job_state_name(s.state())) ==
                               states.end()) {
      return false;
    }
    return name.empty() || fnmatch(name.c_str(), s.name().c_str(), 0) == 0;
  }
};

int print_status(client::JobClient& c, const std::string& job, const StatusFilter& filter,
                 bool json) {
  auto reply = c.status(job);
  // Newest first (smallest age), then only what the filters let through.
  auto* jobs = reply.mutable_jobs();
  std::stable_sort(jobs->begin(), jobs->end(), [](const v1::JobStatus& a, const v1::JobStatus& b) {
    return a.age_s() < b.age_s();
  });
  v1::StatusReply shown;
  for (auto& s : *jobs) {
    if (filter.matches(s)) *shown.add_jobs() = std::move(s);
  }
  if (json) {
    fmt::print("{}\n", json_with_numbers(shown));
    return kExitOk;
  }
  fmt::print("{:<16}  {:<20} {:<9} {:>19} {:>12} {:>9}\n", "JOB", "NAME", "STATE", "DONE/TOTAL",
             "TASKS/S", "AGE");
  for (const auto& s : shown.jobs()) {
    fmt::print("{:<16}  {:<20} {:<9} {:>19} {:>12.1f} {:>8.1f}s\n", printable(s.job_id()),
               printable(s.name(), jobs::kMaxJobNameBytes), job_state_name(s.state()),
               fmt::format("{}/{}", s.done(), s.total()), s.tasks_per_s(), s.age_s());
    if (!s.reason().empty()) fmt::print("{:<16}  waiting: {}\n", "", printable(s.reason(), 400));
  }
  return kExitOk;
}

int print_workers(client::JobClient& c, bool json) {
  const auto reply = c.workers();
  if (json) {
    fmt::print("{}\n", json_with_numbers(reply));
    return kExitOk;
  }
  fmt::print("{:<24} {:<16} {:<28} {:>5} {:>5} {:>6}  {}\n", "WORKER", "HOST", "DEVICE", "SLOTS",
             "BUSY", "HELD", "JOBS");
  for (const auto& w : reply.workers()) {
    std::string jobs;
    for (const auto& j : w.jobs()) {
      if (!jobs.empty()) jobs += ", ";
      jobs += fmt::format("{} ({})", j.name().empty() ? j.job_id() : j.name(), j.tasks());
    }
    if (jobs.empty()) jobs = w.leaving() ? "- (leaving)" : "-";
    fmt::print("{:<24} {:<16} {:<28} {:>5} {:>5} {:>6}  {}\n", w.id(), w.host(), w.device(),
               w.slots(), w.busy(), w.held(), jobs);
  }
  if (reply.workers_size() == 0) fmt::print("(no workers connected)\n");
  return kExitOk;
}

int cancel_job(client::JobClient& c, const std::string& job) {
  const std::string id = c.cancel(job);
  const auto reply = c.status(id);
  if (reply.jobs_size() == 0) {
    fmt::print("cancelled job {}\n", id);
    return kExitOk;
  }
  const auto& s = reply.jobs(0);
  fmt::print("cancelled job '{}' ({}) at {}/{} tasks ({} failed); its queued tasks are dropped and "
             "running ones discarded\n",
             s.name(), id, s.done(), s.total(), s.failed());
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
  StatusFilter filter;
  auto* submit = app.add_subcommand("submit", "submit a job file; prints the job id");
  submit->add_option("FILE", file, "job file (JSON)")->required();
  submit->add_flag("--wait", wait, "wait for the job, show progress, print the report");
  submit->add_option("--report", report_path, "with --wait: write the JSON report to FILE");
  submit->add_flag("-q,--quiet", quiet, "with --wait: no progress or table");
  int64_t max_job_mb = kDefaultMaxJobBytes >> 20;
  submit->add_option("--max-job-mb", max_job_mb,
                     "largest job file read, in MiB (the service has its own --max-job-mb)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  auto* status = app.add_subcommand("status", "list jobs (newest first), or show one");
  status->add_option("JOB", job, "job id or name");
  status->add_option("--state", filter.states,
                     "only jobs in this state: queued, running, done, failed, cancelled, "
                     "interrupted (repeatable)")
      ->check(CLI::IsMember({"queued", "running", "done", "failed", "cancelled", "interrupted"}));
  status->add_option("--name", filter.name, "only jobs whose name matches this shell pattern");
  status->add_flag("--json", json, "print JSON (numbers as numbers)");
  auto* wait_cmd = app.add_subcommand("wait", "wait for a job and print its report");
  wait_cmd->add_option("JOB", job, "job id or name")->required();
  wait_cmd->add_option("--report", report_path, "write the JSON report to FILE");
  wait_cmd->add_flag("-q,--quiet", quiet, "no progress or table");
  auto* cancel = app.add_subcommand("cancel", "stop a job and discard its results");
  cancel->add_option("JOB", job, "job id or name")->required();
  auto* workers = app.add_subcommand("workers", "list the workers connected to the ventilator");
  workers->add_flag("--json", json, "print JSON");
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
  bool key_force = false;
  auto* keygen = app.add_subcommand("keygen", "write a CurveZMQ key pair: DIR/NAME.key and DIR/NAME.pub");
  keygen->add_option("NAME", key_name, "key name, e.g. head or worker-7")->required();
  keygen->add_option("--dir", key_dir, "directory for the two files")->capture_default_str();
  keygen->add_flag("--force", key_force, "replace an existing pair of that name");

  return cli_main(app, argc, argv, [&]() -> int {
    if (*keygen) {
      fmt::print("{}\n", write_key_pair(key_dir, key_name, key_force));
      return kExitOk;
    }
    v1::JobSpec spec;
    if (*submit) spec = jobs::load_job_file(file, max_job_mb << 20);  // fails before connecting
    client::JobClient c(connect_endpoint(server, kSubmitPort),
                        static_cast<int64_t>(timeout_s * 1000), curve);
    if (*submit) {
      const std::string id = c.submit(spec);
      if (!wait) {
        fmt::print("{}\n", id);
        return kExitOk;
      }
      if (!quiet) fmt::print("submitted {}\n", id);
      std::fflush(stdout);
      return wait_for(c, id, report_path, quiet);
    }
    if (*status) return print_status(c, job, filter, json);
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
      f.pending = [&c, id = f.job_id] {
        const auto st = c.status(id);
        return st.jobs_size() == 1 && (st.jobs(0).state() == v1::JOB_QUEUED ||
                                       st.jobs(0).state() == v1::JOB_RUNNING);
      };
      return client::fetch_results(f, curve);
    }
    if (*wait_cmd) return wait_for(c, job, report_path, quiet);
    if (*workers) return print_workers(c, json);
    return cancel_job(c, job);
  });
}
