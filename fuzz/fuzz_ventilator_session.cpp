// libFuzzer target: a whole session of the ventilator. The input is a program of operations on
// the real state machine (ventilator::VentilatorCore, the class the ventilator process runs):
// clients submit, query and cancel jobs (or send raw requests), workers say hello, grant
// credit, beat and leave, the sink accepts, acknowledges (or refuses) and ends jobs, and time
// passes. Findings: crashes, sanitizer reports, uncaught exceptions, and broken invariants
// (a task sent for a job that is not running, an attempt above the job's limit, more tasks
// acknowledged than a job has, a reply to a request of another kind).
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/protocol.h"
#include "job_checks.h"
#include "ventilator/ventilator_core.h"

namespace {

using namespace taskfarm;
using namespace taskfarm::ventilator;
using fuzz::fail;

const char* const kKernels[] = {"noop", "sleep", "saxpy", "mandelbrot", "sort", "fft"};

struct Recorder final : VentilatorOutbox {
  VentilatorCore* core = nullptr;
  std::set<std::string> reachable;                 // workers whose sends succeed
  std::map<uint64_t, std::set<uint64_t>> issued;   // job -> tasks sent at least once
  std::vector<v1::Envelope> to_sink_log;

  bool to_worker(const std::string& worker, v1::Envelope& env) override {
    if (!reachable.count(worker)) return false;
    if (env.has_tasks()) {
      for (const auto& t : env.tasks().tasks()) {
        const JobRecord* job = core->jobs().get(t.job_id());
        if (!job || job->state != v1::JOB_RUNNING) fail("task sent for a job that is not running");
        if (t.task_id() >= job->total) fail("task id outside its job");
        if (t.attempt() == 0 || t.attempt() > job->max_attempts) fail("attempt out of range");
        issued[t.job_id()].insert(t.task_id());
      }
    }
    return true;
  }
  void to_sink(v1::Envelope& env) override { to_sink_log.push_back(env); }
  void announce_to_sink(v1::Envelope& env) override {
    if (env.batch_start().total() == 0) fail("announced an empty job");
    if (!env.batch_start().spec().tasks_size()) fail("announced a job without its entries");
    for (const auto& t : env.batch_start().spec().tasks()) {
      if (!t.payload().empty()) fail("payloads announced to the sink");
    }
  }
};

v1::JobSpec make_spec(FuzzedDataProvider& in) {
  v1::JobSpec spec;
  spec.set_name(in.ConsumeRandomLengthString(12));
  spec.set_priority(in.ConsumeIntegralInRange<int32_t>(-2, 2));
  spec.set_max_attempts(in.ConsumeIntegralInRange<uint32_t>(0, 4));
  const int entries = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < entries; ++i) {
    auto* t = spec.add_tasks();
    t->set_kernel(kKernels[in.ConsumeIntegralInRange<size_t>(0, std::size(kKernels) - 1)]);
    t->set_count(in.ConsumeIntegralInRange<uint64_t>(0, 300));
    t->set_size(in.ConsumeIntegralInRange<int64_t>(-1, 64));
    if (in.ConsumeBool()) t->set_payload(in.ConsumeRandomLengthString(64));
  }
  return spec;
}

void run(FuzzedDataProvider& in) {
  ManualClock clock;
  CoreOptions opt;
  opt.policy.worker_timeout_ms = 1000;
  opt.policy.task_timeout_ms = in.ConsumeBool() ? 3000 : 0;
  opt.policy.window = in.ConsumeIntegralInRange<uint64_t>(1, 500);
  opt.policy.max_batch = in.ConsumeIntegralInRange<uint32_t>(1, 64);
  opt.table_limits.max_unfinished = in.ConsumeIntegralInRange<size_t>(1, 6);
  opt.table_limits.keep_finished = in.ConsumeIntegralInRange<size_t>(0, 4);
  opt.job_limits.max_tasks = in.ConsumeIntegralInRange<uint64_t>(1, 1000);
  opt.heartbeat_ms = 100;
  Recorder out;
  VentilatorCore core(opt, clock, out);
  out.core = &core;
  std::vector<uint64_t> ids;  // jobs the service accepted
  auto pick_job = [&]() -> uint64_t {
    if (ids.empty() || in.ConsumeBool()) return in.ConsumeIntegralInRange<uint64_t>(0, 3);
    return ids[in.ConsumeIntegralInRange<size_t>(0, ids.size() - 1)];
  };
  auto worker = [&] { return "w" + std::to_string(in.ConsumeIntegralInRange(0, 3)); };
  auto request = [&](v1::Envelope& req) {
    const v1::Envelope reply = core.on_request(req);
    if (req.has_submit()) {
      if (!reply.has_submit_reply()) fail("submit without a submit reply");
      if (reply.submit_reply().error().empty()) {
        ids.push_back(std::stoull(reply.submit_reply().job_id(), nullptr, 16));
      }
    }
    if (req.has_status() && !reply.has_status_reply()) fail("status without a status reply");
    if (req.has_cancel() && !reply.has_cancel_reply()) fail("cancel without a cancel reply");
  };
  while (in.remaining_bytes() > 0) {
    switch (in.ConsumeIntegralInRange(0, 12)) {
      case 0: {  // a client submits
        v1::Envelope req;
        *req.mutable_submit()->mutable_job() = make_spec(in);
        request(req);
        break;
      }
      case 1: {  // a raw request
        const std::string bytes = in.ConsumeRandomLengthString(512);
        Decoded d = decode(bytes.data(), bytes.size());
        if (d) request(*d.envelope);
        break;
      }
      case 2: {  // status or cancel, by id or name
        v1::Envelope req;
        const uint64_t id = pick_job();
        const std::string key = in.ConsumeBool() ? job_hex(id) : in.ConsumeRandomLengthString(8);
        if (in.ConsumeBool()) {
          req.mutable_status()->set_job(in.ConsumeBool() ? key : "");
        } else {
          req.mutable_cancel()->set_job(key);
        }
        request(req);
        break;
      }
      case 3: {  // a worker says hello
        const std::string w = worker();
        out.reachable.insert(w);
        v1::Envelope env;
        env.mutable_hello()->mutable_worker()->set_id(w);
        env.mutable_hello()->mutable_worker()->set_slots(in.ConsumeIntegralInRange<uint32_t>(0, 8));
        env.mutable_hello()->set_credit(in.ConsumeIntegralInRange<uint32_t>(0, 100));
        core.on_worker_message(w, env);
        break;
      }
      case 4: {  // credit or heartbeat
        v1::Envelope env;
        if (in.ConsumeBool()) {
          env.mutable_credit()->set_credit(in.ConsumeIntegral<uint32_t>());
        } else {
          env.mutable_heartbeat()->set_epoch(in.ConsumeIntegral<uint64_t>());
        }
        core.on_worker_message(worker(), env);
        break;
      }
      case 5: {  // a worker leaves, handing back tasks (its own or not)
        v1::Envelope env;
        const int n = in.ConsumeIntegralInRange(0, 8);
        for (int i = 0; i < n; ++i) {
          auto* ref = env.mutable_goodbye()->add_returned();
          ref->set_job_id(pick_job());
          ref->set_task_id(in.ConsumeIntegralInRange<uint64_t>(0, 400));
        }
        env.mutable_goodbye();
        core.on_worker_message(worker(), env);
        break;
      }
      case 6: {  // a worker becomes unreachable
        const std::string w = worker();
        out.reachable.erase(w);
        break;
      }
      case 7: {  // the sink accepts (or refuses) a job
        v1::Envelope env;
        env.mutable_job_accepted()->set_job_id(pick_job());
        if (in.ConsumeIntegralInRange(0, 7) == 0) env.mutable_job_accepted()->set_error("full");
        core.on_sink_message(env);
        break;
      }
      case 8: {  // the sink acknowledges tasks: mostly ones that were sent
        v1::Envelope env;
        const uint64_t job = pick_job();
        auto* ack = env.mutable_ack();
        ack->set_job_id(job);
        const auto& sent = out.issued[job];
        const int n = in.ConsumeIntegralInRange(0, 32);
        for (int i = 0; i < n; ++i) {
          uint64_t id = in.ConsumeIntegralInRange<uint64_t>(0, 400);
          if (!sent.empty() && in.ConsumeBool()) {
            auto it = sent.lower_bound(id);
            id = it == sent.end() ? *sent.begin() : *it;
          }
          switch (in.ConsumeIntegralInRange(0, 3)) {
            case 0: ack->add_done(id); break;
            case 1: ack->add_done(id); ack->add_failed(id); break;
            default: ack->add_retry(id);
          }
        }
        core.on_sink_message(env);
        if (const JobRecord* rec = core.jobs().get(job)) {
          if (core.dispatcher().job_acked(job) > rec->total) fail("more tasks acked than exist");
        }
        break;
      }
      case 9: {  // the sink ends a job
        v1::Envelope env;
        env.mutable_batch_end()->set_job_id(pick_job());
        env.mutable_batch_end()->set_tasks_failed(in.ConsumeIntegralInRange<uint64_t>(0, 3));
        env.mutable_batch_end()->set_state(static_cast<v1::JobState>(in.ConsumeIntegralInRange(0, 7)));
        core.on_sink_message(env);
        break;
      }
      case 10:
        clock.advance_ms(in.ConsumeIntegralInRange(0, 5000));
        core.tick();
        break;
      case 11:
        core.dispatch();
        break;
      default: {  // a job is interrupted
        if (JobRecord* job = core.jobs().get(pick_job())) core.end_early(*job, v1::JOB_INTERRUPTED);
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(log::Level::kOff);
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  run(in);
  return 0;
}
