// libFuzzer target: one frame off the network. Decodes it as every socket does
// (taskfarm::decode), checks that re-encoding is stable, then hands the envelope to the pure
// logic that consumes that kind of message in the real processes:
//   tasks        -> the worker's run_task on the CPU kernels (cheap sizes only)
//   results,
//   batch_start  -> the sink's JobAggregator (accounting, report, JSON and table)
//   hello, credit, heartbeat, goodbye, ack, ... -> the ventilator's Dispatcher
//   submit       -> the job service's validate_job, then the job's tasks
// Crashes, sanitizer reports and uncaught exceptions are findings; rejections are not.
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/protocol.h"
#include "job_checks.h"
#include "kernels/kernel.h"
#include "common/report.h"
#include "sink/aggregator.h"
#include "ventilator/dispatcher.h"
#include "worker/executor.h"

namespace {

using namespace taskfarm;

using fuzz::fail;

std::string bytes_of(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

// Sizes small enough to run a kernel within the fuzzer's time budget; others are only
// validated (what a worker does first with any task).
bool cheap(const v1::Task& t) {
  const std::string& k = t.kernel();
  const int64_t s = t.size();
  if (k == "sleep") return false;
  if (k == "sgemm") return s <= 48;
  if (k == "mandelbrot") return s <= 96;
  if (k == "montecarlo_pi") return s <= (1 << 16);
  return s <= (1 << 14);  // noop, saxpy, reduce, sort, unknown kernels
}

void as_worker(const v1::TaskBatch& batch) {
  const auto& registry = kernels::KernelRegistry::instance();
  const worker::TaskRunner runner = [&](std::string_view kernel, const kernels::TaskInput& in) {
    return registry.run_cpu(kernel, in);
  };
  for (const auto& t : batch.tasks()) {
    const kernels::TaskInput in = worker::task_input(t);
    const auto invalid = registry.validate(t.kernel(), in);
    if (invalid || !cheap(t)) continue;
    const v1::Result r = worker::run_task(t, runner);
    if (r.task_id() != t.task_id() || r.job_id() != t.job_id()) fail("result names another task");
    if (r.status() == v1::STATUS_UNSPECIFIED) fail("result without a status");
  }
}

// The sink's checks before it trusts a BatchStart (sink/sink.cpp on_batch_start); totals are
// capped further here only to keep each run fast (one bit per task).
void as_sink(const v1::Envelope& env) {
  v1::BatchStart start;
  if (env.has_batch_start()) {
    start = env.batch_start();
    if (start.total() == 0 || start.total() > UINT32_MAX) return;
    if (start.total() > (uint64_t{1} << 20)) start.set_total(uint64_t{1} << 20);
  } else {
    start.set_job_id(env.results().results_size() ? env.results().results(0).job_id() : 1);
    start.set_name("fuzz");
    start.set_total(1000);
    start.set_max_attempts(3);
  }
  sink::JobAggregator job(start);
  if (env.has_results()) {
    const auto& batch = env.results();
    job.touch_worker(batch.worker());
    const int64_t now = int64_t{1'700'000'000} * 1'000'000'000;
    for (const auto& r : batch.results()) {
      if (r.job_id() != job.job_id()) continue;
      const auto before = job.done();
      const auto outcome = job.add(r, batch.worker(), now);
      if ((outcome == sink::Outcome::kFinal) != (job.done() == before + 1)) {
        fail("a final result must count exactly once");
      }
    }
  }
  if (job.done() > job.total()) fail("more results than tasks");
  const v1::Report rep = job.report();
  if (rep.tasks_ok() + rep.tasks_failed() != job.done()) fail("report counts disagree");
  (void)report_json(rep);
  (void)report_table(rep);
  (void)json_with_numbers(rep);
}

void as_ventilator(const v1::Envelope& env) {
  ManualClock clock;
  ventilator::DispatchPolicy policy;
  policy.worker_timeout_ms = 1000;
  policy.task_timeout_ms = 5000;
  ventilator::Dispatcher d(policy, clock);
  uint64_t job_id = 7;
  if (env.has_ack()) job_id = env.ack().job_id();
  if (env.has_goodbye() && env.goodbye().returned_size()) {
    job_id = env.goodbye().returned(0).job_id();
  }
  d.add_job(job_id, 300);
  v1::WorkerInfo info;
  info.set_id("w0");
  info.set_slots(2);
  d.on_hello("w0", info, 50);  // a worker already holding tasks
  for (auto& a : d.assign()) (void)a;
  const std::string from = "w0";
  switch (env.body_case()) {
    case v1::Envelope::kHello:
      d.on_hello(from, env.hello().worker(), env.hello().credit());
      d.on_hello("w1", env.hello().worker(), env.hello().credit());
      break;
    case v1::Envelope::kCredit:
      d.on_credit(from, env.credit().credit());
      d.on_credit("unknown", env.credit().credit());
      break;
    case v1::Envelope::kHeartbeat: d.on_heartbeat(from); break;
    case v1::Envelope::kGoodbye: d.on_goodbye(from, env.goodbye()); break;
    case v1::Envelope::kAck: (void)d.on_ack(env.ack()); break;
    default: break;  // welcome, reconnect, job_accepted, batch_end, kill carry no state to abuse
  }
  // Let time pass so leases expire and everything is re-issued, then drive to completion.
  for (int round = 0; round < 3; ++round) {
    for (const auto& a : d.assign()) {
      v1::Ack ack;
      ack.set_job_id(job_id);
      for (const auto& t : a.tasks) ack.add_done(t.task_id);
      (void)d.on_ack(ack);
    }
    clock.advance_ms(2000);
    d.on_heartbeat(from);
    (void)d.expire();
  }
  if (d.job_acked(job_id) > 300) fail("more tasks acknowledged than the job has");
}

// The job service (ventilator --serve): a submitted job is validated like a job file.
void as_job_service(const v1::SubmitJob& submit) {
  v1::JobSpec spec = submit.job();
  try {
    jobs::validate_job(spec, "submitted job");
  } catch (const SetupError&) {
    return;
  }
  fuzz::check_accepted_job(spec);
}

}  // namespace

// protobuf logs every string field with invalid UTF-8 at ERROR level, the dispatcher every lost
// worker: noise at fuzzing speed.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  taskfarm::log::set_level(taskfarm::log::Level::kOff);
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Decoded d = decode(data, size);
  if (!d) {
    if (d.error.empty()) fail("rejection without a reason");
    return 0;
  }
  v1::Envelope& env = *d.envelope;
  if (body_name(env) == "none") fail("accepted an envelope without a body");
  // Re-encoding what was decoded is stable (what a relay or a re-send does).
  const std::string once = bytes_of(encode(env));
  Decoded again = decode(once.data(), once.size());
  if (!again) fail("re-encoded envelope does not decode");
  if (bytes_of(encode(*again.envelope)) != once) fail("encoding is not stable");

  switch (env.body_case()) {
    case v1::Envelope::kTasks: as_worker(env.tasks()); break;
    case v1::Envelope::kResults:
    case v1::Envelope::kBatchStart: as_sink(env); break;
    case v1::Envelope::kSubmit: as_job_service(env.submit()); break;
    default: as_ventilator(env); break;
  }
  return 0;
}
