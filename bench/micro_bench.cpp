// Micro-benchmarks (Google Benchmark) of taskfarm's per-task hot paths, each measured the way
// the running process uses it: batches of 1024 tasks or results, as on the wire.
//
//   micro_bench [--benchmark_filter=REGEX] [--benchmark_format=json] ...
//
// items_per_second is tasks (or results) per second; bytes_per_second counts wire bytes.
#include <benchmark/benchmark.h>
#include <google/protobuf/arena.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/histogram.h"
#include "common/protocol.h"
#include "kernels/kernel.h"
#include "sink/aggregator.h"
#include "ventilator/dispatcher.h"
#include "jobs/job.h"
#include "worker/executor.h"

namespace {

using namespace taskfarm;

constexpr int kBatch = 1024;  // tasks per TaskBatch / results per ResultBatch, as dispatched
constexpr uint64_t kJobId = 0x5eed5eed5eed5eedull;
constexpr int64_t kNowNs = 1'780'000'000'000'000'000;  // a wall-clock time in 2026

jobs::Job make_job(uint64_t count, const std::string& payload = {}) {
  v1::JobSpec spec;
  spec.set_name("bench");
  auto* t = spec.add_tasks();
  t->set_kernel("noop");
  t->set_count(count);
  t->set_seed(1);
  if (!payload.empty()) t->set_payload(payload);
  return jobs::Job(kJobId, std::move(spec));
}

// The ventilator's dispatch loop body for one assignment (Ventilator::Impl::dispatch).
void fill_batch(const jobs::Job& job, uint64_t first, int n, v1::Envelope& env) {
  env.Clear();
  auto* batch = env.mutable_tasks();
  for (int i = 0; i < n; ++i) {
    auto* task = batch->add_tasks();
    job.fill(first + static_cast<uint64_t>(i), task);
    task->set_attempt(1);
    task->set_sent_ns(kNowNs);
  }
}

v1::WorkerInfo worker_info() {
  v1::WorkerInfo info;
  info.set_id("bench-worker-1");
  info.set_host("benchhost");
  info.set_device("cpu");
  info.set_slots(1);
  return info;
}

worker::TaskRunner noop_runner() {
  return [](std::string_view kernel, const kernels::TaskInput& in) {
    return kernels::KernelRegistry::instance().run_cpu(kernel, in);
  };
}

// The worker's side for one batch: results of running every task, as Worker::send_results sends.
v1::Envelope result_batch(const v1::Envelope& tasks) {
  v1::Envelope env;
  auto* batch = env.mutable_results();
  *batch->mutable_worker() = worker_info();
  const auto runner = noop_runner();
  for (const auto& t : tasks.tasks().tasks()) *batch->add_results() = worker::run_task(t, runner);
  return env;
}

// ---------------------------------------------------------------- ventilator

void BM_TaskBatch_Build(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope env;
  uint64_t first = 0;
  for (auto _ : state) {
    fill_batch(job, first, kBatch, env);
    benchmark::DoNotOptimize(env);
    first = (first + kBatch) % (1'000'000 - kBatch);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_TaskBatch_Build);

void BM_TaskBatch_Encode(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope env;
  fill_batch(job, 500'000, kBatch, env);
  size_t bytes = 0;
  for (auto _ : state) {
    zmq::message_t msg = encode(env);
    bytes = msg.size();
    benchmark::DoNotOptimize(msg.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["bytes_per_task"] = static_cast<double>(bytes) / kBatch;
}
BENCHMARK(BM_TaskBatch_Encode);

// Build + encode: the ventilator's whole CPU cost per batch sent, sockets aside.
void BM_TaskBatch_BuildEncode(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope env;
  uint64_t first = 0;
  for (auto _ : state) {
    fill_batch(job, first, kBatch, env);
    zmq::message_t msg = encode(env);
    benchmark::DoNotOptimize(msg.data());
    first = (first + kBatch) % (1'000'000 - kBatch);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_TaskBatch_BuildEncode);

// The same with the TaskBatch kept across batches: Envelope::Clear() deletes its oneof body,
// so fill_batch() allocates 1024 Task objects per batch; a TaskBatch of its own keeps them.
// (A candidate for Ventilator::Impl::dispatch; see bench/RESULTS.md.)
void BM_TaskBatch_BuildEncode_Reused(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope env;
  v1::TaskBatch batch;
  uint64_t first = 0;
  for (auto _ : state) {
    batch.Clear();  // keeps the Task objects for the next batch
    for (int i = 0; i < kBatch; ++i) {
      auto* task = batch.add_tasks();
      job.fill(first + static_cast<uint64_t>(i), task);
      task->set_attempt(1);
      task->set_sent_ns(kNowNs);
    }
    env.set_allocated_tasks(&batch);
    zmq::message_t msg = encode(env);
    (void)env.release_tasks();  // hand it back without deleting it
    benchmark::DoNotOptimize(msg.data());
    first = (first + kBatch) % (1'000'000 - kBatch);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_TaskBatch_BuildEncode_Reused);

// One credit / assign / ack cycle of the dispatcher (leases opened and closed), including
// building the sink's Ack message. The worker has timed the no-op kernel (1 µs a task, as a
// real worker reports), so the scheduler lets it queue about policy.queue_ms of tasks per
// cycle; items are the tasks actually assigned.
void BM_Dispatcher_AssignAck(benchmark::State& state) {
  ventilator::DispatchPolicy policy;
  ventilator::Dispatcher d(policy);
  d.add_job(kJobId, uint64_t{1} << 40);
  d.on_hello("w1", worker_info(), 0);
  (void)d.on_timings("w1", {ventilator::Timing{"", 0, 1000, 1'000'000}});
  v1::Ack ack;
  int64_t tasks = 0;
  for (auto _ : state) {
    d.on_credit("w1", kBatch);
    auto assignments = d.assign();
    ack.Clear();
    ack.set_job_id(kJobId);
    for (const auto& a : assignments) {
      for (const auto& t : a.tasks) ack.add_done(t.task_id);
    }
    tasks += ack.done_size();
    d.on_ack(ack);
  }
  if (tasks == 0) state.SkipWithError("the dispatcher assigned nothing");
  state.SetItemsProcessed(tasks);
  state.counters["tasks_per_cycle"] =
      benchmark::Counter(static_cast<double>(tasks) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_Dispatcher_AssignAck);

// ---------------------------------------------------------------- worker

void BM_TaskBatch_Decode(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope env;
  fill_batch(job, 500'000, kBatch, env);
  const zmq::message_t frame = encode(env);
  for (auto _ : state) {
    Decoded d = decode(frame);
    benchmark::DoNotOptimize(d.envelope);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_TaskBatch_Decode);

// run_task with the CPU noop kernel: the executor's per-task overhead (Result, clocks, strings).
void BM_RunTask_Noop(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Task task;
  job.fill(123'456, &task);
  task.set_attempt(1);
  task.set_sent_ns(kNowNs);
  const auto runner = noop_runner();
  for (auto _ : state) {
    v1::Result r = worker::run_task(task, runner);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunTask_Noop);

void BM_ResultBatch_Encode(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope tasks;
  fill_batch(job, 500'000, kBatch, tasks);
  v1::Envelope env = result_batch(tasks);
  size_t bytes = 0;
  for (auto _ : state) {
    zmq::message_t msg = encode(env);
    bytes = msg.size();
    benchmark::DoNotOptimize(msg.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["bytes_per_result"] = static_cast<double>(bytes) / kBatch;
}
BENCHMARK(BM_ResultBatch_Encode);

// ---------------------------------------------------------------- sink

void BM_ResultBatch_Decode(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope tasks;
  fill_batch(job, 500'000, kBatch, tasks);
  v1::Envelope env = result_batch(tasks);
  const zmq::message_t frame = encode(env);
  for (auto _ : state) {
    Decoded d = decode(frame);
    benchmark::DoNotOptimize(d.envelope);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_ResultBatch_Decode);

// The same on a protobuf arena whose first block is reused: no malloc per Result. (A candidate
// for Sink::Impl::handle; see bench/RESULTS.md.)
void BM_ResultBatch_Decode_Arena(benchmark::State& state) {
  const auto job = make_job(1'000'000);
  v1::Envelope tasks;
  fill_batch(job, 500'000, kBatch, tasks);
  v1::Envelope env = result_batch(tasks);
  const zmq::message_t frame = encode(env);
  std::vector<char> block(512 << 10);
  for (auto _ : state) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block.data();
    options.initial_block_size = block.size();
    google::protobuf::Arena arena(options);
    auto* parsed = google::protobuf::Arena::CreateMessage<v1::Envelope>(&arena);
    const bool ok = parsed->ParseFromArray(frame.data(), static_cast<int>(frame.size()));
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_ResultBatch_Decode_Arena);

void BM_ResultDigest_Add(benchmark::State& state) {
  ResultDigest digest;
  uint64_t id = 0;
  for (auto _ : state) {
    digest.add(id, true, id * 0x9E3779B97F4A7C15ull);
    benchmark::DoNotOptimize(digest);
    ++id;
  }
  benchmark::DoNotOptimize(digest.value());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResultDigest_Add);

void BM_LatencyHistogram_Record(benchmark::State& state) {
  LatencyHistogram h;
  // Latencies between ~50 us and ~5 ms, in nanoseconds: spread over many buckets.
  std::vector<int64_t> values(4096);
  uint64_t x = 88172645463325252ull;
  for (auto& v : values) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = 50'000 + static_cast<int64_t>(x % 5'000'000);
  }
  LatencyHistogram* escaped = &h;  // the clobber below must see h's memory
  benchmark::DoNotOptimize(escaped);
  size_t i = 0;
  for (auto _ : state) {
    h.record(values[i++ & 4095]);
    benchmark::ClobberMemory();  // keep every bucket update
  }
  benchmark::DoNotOptimize(h.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LatencyHistogram_Record);

// JobAggregator::add per result: exactly-once bit, worker and kernel maps, digest, latency.
void BM_JobAggregator_Add(benchmark::State& state) {
  constexpr uint64_t kTotal = uint64_t{1} << 24;
  v1::BatchStart start;
  start.set_job_id(kJobId);
  start.set_name("bench");
  start.set_total(kTotal);
  start.set_max_attempts(3);
  const auto job = make_job(1'000'000);
  v1::Envelope tasks;
  fill_batch(job, 0, kBatch, tasks);
  const v1::Envelope results = result_batch(tasks);
  const auto& batch = results.results();
  std::optional<sink::JobAggregator> agg(start);
  v1::Result r = batch.results(0);
  uint64_t id = 0;
  for (auto _ : state) {
    if (id == kTotal) {  // every task has its final result: start a fresh job
      state.PauseTiming();
      agg.emplace(start);
      id = 0;
      state.ResumeTiming();
    }
    r.set_task_id(id);
    const auto outcome = agg->add(r, batch.worker(), kNowNs + 200'000);
    benchmark::DoNotOptimize(outcome);
    ++id;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_JobAggregator_Add);

// The sink's whole CPU path per ResultBatch: decode, aggregate each result, build and encode
// the Ack (Sink::Impl::on_results + flush_acks), sockets aside.
void BM_Sink_ResultBatch(benchmark::State& state) {
  constexpr uint64_t kTotal = uint64_t{1} << 24;
  v1::BatchStart start;
  start.set_job_id(kJobId);
  start.set_total(kTotal);
  const auto job = make_job(kTotal);
  v1::Envelope tasks;
  fill_batch(job, 0, kBatch, tasks);
  v1::Envelope results = result_batch(tasks);
  std::optional<sink::JobAggregator> agg(start);
  std::vector<zmq::message_t> frames;  // distinct task ids, so every result counts
  for (int b = 0; b < 64; ++b) {
    for (int i = 0; i < kBatch; ++i) {
      results.mutable_results()->mutable_results(i)->set_task_id(
          static_cast<uint64_t>(b) * kBatch + static_cast<uint64_t>(i));
    }
    frames.push_back(encode(results));
  }
  size_t next = 0;
  for (auto _ : state) {
    if (next == frames.size()) {
      state.PauseTiming();
      agg.emplace(start);
      next = 0;
      state.ResumeTiming();
    }
    Decoded d = decode(frames[next++]);
    const auto& rb = d.envelope->results();
    agg->touch_worker(rb.worker());
    v1::Envelope ack_env;
    auto* ack = ack_env.mutable_ack();
    ack->set_job_id(kJobId);
    for (const auto& r : rb.results()) {
      if (agg->add(r, rb.worker(), kNowNs + 200'000) == sink::Outcome::kFinal) {
        ack->add_done(r.task_id());
      }
    }
    zmq::message_t msg = encode(ack_env);
    benchmark::DoNotOptimize(msg.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_Sink_ResultBatch);

// ---------------------------------------------------------------- inline payloads

// One task carrying an inline payload of range(0) bytes: built from the job (a copy of the
// payload), encoded (a second copy) and decoded (a third): the serialization ceiling on MB/s.
void BM_PayloadTask_BuildEncodeDecode(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  const auto job = make_job(1000, std::string(size, 'p'));
  v1::Envelope env;
  for (auto _ : state) {
    fill_batch(job, 7, 1, env);
    zmq::message_t msg = encode(env);
    Decoded d = decode(msg);
    benchmark::DoNotOptimize(d.envelope);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}
BENCHMARK(BM_PayloadTask_BuildEncodeDecode)->Arg(1 << 10)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
