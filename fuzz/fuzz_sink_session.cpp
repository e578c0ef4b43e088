// libFuzzer target: a whole session of the sink. The input is a program of operations on the
// real state machine (sink::SinkCore, the class the sink process runs) with a results
// directory: job starts with entries that keep mandelbrot images, result batches with
// forged or honest bands, cancels, raw frames, acks flushed, jobs finished, the sink stopped,
// and (with a --state journal) the sink killed and started again on its journal.
// Findings: crashes, sanitizer reports, uncaught exceptions, and broken invariants (an ack for
// a task outside its job, a message the sink publishes that does not decode, a restarted sink
// that counts fewer tasks of a job than it had acknowledged).
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/log.h"
#include "common/protocol.h"
#include "job_checks.h"
#include "kernels/inputs.h"
#include "sink/sink_core.h"

namespace {

using namespace taskfarm;
using fuzz::fail;

const char* const kKernels[] = {"mandelbrot", "noop", "saxpy", "sleep", ""};

std::string results_dir() {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("taskfarm-fuzz-sink-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  return dir;
}

v1::BatchStart make_start(FuzzedDataProvider& in, uint64_t id) {
  v1::BatchStart s;
  s.set_job_id(id);
  s.set_name(in.ConsumeRandomLengthString(16));
  s.set_max_attempts(in.ConsumeIntegralInRange<uint32_t>(0, 5));
  auto* spec = s.mutable_spec();
  spec->set_keep_output(in.ConsumeBool());
  spec->set_max_attempts(s.max_attempts());
  const int entries = in.ConsumeIntegralInRange(0, 3);
  uint64_t total = 0;
  for (int i = 0; i < entries; ++i) {
    auto* t = spec->add_tasks();
    t->set_kernel(kKernels[in.ConsumeIntegralInRange<size_t>(0, std::size(kKernels) - 1)]);
    t->set_count(in.ConsumeIntegralInRange<uint64_t>(0, 40));
    t->set_size(in.ConsumeIntegralInRange<int64_t>(-1, 96));
    total += t->count();
  }
  // Mostly honest totals, sometimes not.
  s.set_total(in.ConsumeBool() ? total : in.ConsumeIntegral<uint64_t>());
  return s;
}

v1::Result make_result(FuzzedDataProvider& in, const std::map<uint64_t, v1::BatchStart>& jobs) {
  v1::Result r;
  uint64_t job = in.ConsumeIntegralInRange<uint64_t>(1, 5);
  r.set_job_id(job);
  const auto it = jobs.find(job);
  const uint64_t total = it == jobs.end() ? 8 : std::max<uint64_t>(1, it->second.total());
  r.set_task_id(in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, std::min<uint64_t>(total, 1 << 20) - 1)
                                 : in.ConsumeIntegral<uint64_t>());
  r.set_attempt(in.ConsumeIntegralInRange<uint32_t>(0, 6));
  r.set_status(static_cast<v1::Status>(in.ConsumeIntegralInRange(0, 3)));
  r.set_retryable(in.ConsumeBool());
  r.set_error(in.ConsumeRandomLengthString(32));
  // The kernel of the task's entry, mostly.
  std::string kernel = kKernels[in.ConsumeIntegralInRange<size_t>(0, std::size(kKernels) - 1)];
  int64_t size = 0;
  uint64_t count = 1, index = 0;
  if (it != jobs.end() && in.ConsumeBool()) {
    uint64_t first = 0;
    for (const auto& t : it->second.spec().tasks()) {
      if (r.task_id() < first + t.count()) {
        kernel = t.kernel();
        size = t.size();
        count = t.count();
        index = r.task_id() - first;
        break;
      }
      first += t.count();
    }
  }
  r.set_kernel(kernel);
  r.set_checksum(in.ConsumeIntegral<uint64_t>());
  r.set_sent_ns(in.ConsumeIntegral<int64_t>());
  r.set_started_ns(in.ConsumeIntegral<int64_t>());
  r.set_finished_ns(in.ConsumeIntegral<int64_t>());
  r.set_bytes(in.ConsumeIntegral<uint64_t>());
  r.set_flops(in.ConsumeIntegral<uint64_t>());
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: break;  // no output
    case 1: {       // an honest band, or one off by a little
      const auto width = static_cast<uint64_t>(std::max<int64_t>(size, 0));
      const uint64_t row = kernels::band_begin(width, count, index);
      const uint64_t rows = kernels::band_begin(width, count, index + 1) - row;
      r.set_output_width(width + in.ConsumeIntegralInRange<uint64_t>(0, 1));
      r.set_output_row(row + in.ConsumeIntegralInRange<uint64_t>(0, 1));
      r.set_output(std::string(rows * width + in.ConsumeIntegralInRange<uint64_t>(0, 1), 'x'));
      break;
    }
    default:  // anything
      r.set_output_width(in.ConsumeIntegral<uint64_t>());
      r.set_output_row(in.ConsumeIntegral<uint64_t>());
      r.set_output(in.ConsumeRandomLengthString(512));
  }
  return r;
}

void run(FuzzedDataProvider& in) {
  sink::SinkOptions opt;
  opt.serve = in.ConsumeBool();
  opt.keep_workers = in.ConsumeBool();
  opt.quiet = true;
  opt.results_dir = results_dir();
  if (in.ConsumeBool()) {  // a journal, fresh for each input
    opt.state_dir = results_dir() + "/state";
    std::filesystem::remove_all(opt.state_dir);
  }
  opt.max_jobs = in.ConsumeIntegralInRange<uint64_t>(1, 4);
  opt.max_tasks_per_job = in.ConsumeIntegralInRange<uint64_t>(1, 1 << 20);
  ManualClock clock;
  std::map<uint64_t, v1::BatchStart> jobs;  // as sent: to check the acks against
  std::map<uint64_t, std::set<uint64_t>> acked;  // tasks acknowledged final, by job
  const sink::SinkCore::Publish publish = [&](std::string_view topic, v1::Envelope& env) {
    if (topic != kTopicAck && topic != kTopicCtl) fail("published on an unknown topic");
    const zmq::message_t bytes = encode(env);  // what the sink's socket sends
    const Decoded d = decode(bytes.data(), bytes.size());
    if (!d) fail("the sink published a message that does not decode");
    if (env.has_ack()) {
      auto it = jobs.find(env.ack().job_id());
      if (it == jobs.end()) fail("ack for a job never started");
      for (uint64_t id : env.ack().done()) {
        if (id >= it->second.total()) fail("ack for a task outside its job");
        acked[env.ack().job_id()].insert(id);
      }
    }
    // Acks mean durable: a sink started again on its journal has every acknowledged task.
    if (env.has_job_accepted() && env.job_accepted().error().empty() &&
        env.job_accepted().final_tasks() < acked[env.job_accepted().job_id()].size()) {
      fail("a restarted sink counts fewer tasks than it had acknowledged");
    }
  };
  std::optional<sink::SinkCore> core_slot;
  core_slot.emplace(opt, clock, publish);
  sink::SinkCore* core = &*core_slot;
  while (in.remaining_bytes() > 0) {
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0: {  // a raw frame
        const std::string frame = in.ConsumeRandomLengthString(2048);
        core->on_frame(frame.data(), frame.size(), in.ConsumeBool());
        break;
      }
      case 1: {  // a job starts
        const uint64_t id = in.ConsumeIntegralInRange<uint64_t>(1, 5);
        v1::Envelope env;
        *env.mutable_batch_start() = make_start(in, id);
        if (!jobs.count(id)) jobs[id] = env.batch_start();
        const std::string frame = encode(env).to_string();
        core->on_frame(frame.data(), frame.size(), false);
        break;
      }
      case 2: {  // a batch of results
        v1::Envelope env;
        auto* batch = env.mutable_results();
        batch->mutable_worker()->set_id(in.ConsumeRandomLengthString(8));
        batch->mutable_worker()->set_gpu_mem_bytes(in.ConsumeIntegral<uint64_t>());
        const int n = in.ConsumeIntegralInRange(1, 8);
        for (int i = 0; i < n; ++i) *batch->add_results() = make_result(in, jobs);
        const std::string frame = encode(env).to_string();
        core->on_frame(frame.data(), frame.size(), false);
        break;
      }
      case 3: {  // cancelled or interrupted
        v1::Envelope env;
        env.mutable_cancel_job()->set_job_id(in.ConsumeIntegralInRange<uint64_t>(0, 6));
        env.mutable_cancel_job()->set_state(static_cast<v1::JobState>(in.ConsumeIntegralInRange(0, 7)));
        const std::string frame = encode(env).to_string();
        core->on_frame(frame.data(), frame.size(), false);
        break;
      }
      case 4:
        core->flush_acks();
        break;
      case 5:
        clock.advance_ms(in.ConsumeIntegralInRange(0, 10000));
        core->progress();
        if (core->finish_complete_jobs() && !opt.serve) return;  // one-shot: the batch is over
        break;
      case 6:  // killed and started again (what it did not commit is lost, and never acked)
        if (opt.state_dir.empty()) break;
        core_slot.reset();
        core_slot.emplace(opt, clock, publish);
        core = &*core_slot;
        break;
      default:
        (void)core->stop();
        return;
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
