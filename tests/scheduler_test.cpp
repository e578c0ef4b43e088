// The scheduler on simulated mixed pools: the real Dispatcher, driven by a discrete-event model
// of workers (slots, per-kernel task times, credit, timing reports, acks) on a manual clock.
// A mixed pool must finish within 1.10x of the ideal split (the linear program of
// ventilator/split.h on the true task times) and never after its fastest worker alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <functional>
#include <limits>
#include <deque>
#include <map>
#include <set>

#include "ventilator/dispatcher.h"
#include "ventilator/split.h"

namespace taskfarm::ventilator {
namespace {

struct SimWorker {
  std::string id;
  uint32_t slots;
  std::map<std::string, double> task_ms;  // by kernel: one task on one slot
  int slow_after = -1;       // after this many tasks its tasks take `slow_factor` times as long
  double slow_factor = 1;    // (a straggler: a node that throttles, a neighbour that wakes up)
};

struct SimEntry {
  std::string kernel;
  uint64_t count;
  int64_t size = 1000;
};

struct Outcome {
  double makespan_ms = 0;
  std::map<std::string, std::map<std::string, int>> ran;  // worker -> kernel -> tasks
  uint64_t backups = 0;
};

// Runs the job on the workers. Message latency: `latency_ms` for every hop.
Outcome simulate(const std::vector<SimWorker>& workers, const std::vector<SimEntry>& entries,
                 double latency_ms = 0.2) {
  ManualClock clock;
  Dispatcher d(DispatchPolicy{}, clock);
  JobShape shape;
  shape.id = 1;
  std::vector<std::string> kernel_of;  // by task id
  for (const auto& e : entries) {
    shape.entries.push_back({e.kernel, e.count, 0, e.size});
    for (uint64_t i = 0; i < e.count; ++i) kernel_of.push_back(e.kernel);
  }
  d.add_job(shape);
  struct Running {
    double end;
    uint64_t task;
  };
  struct State {
    std::deque<uint64_t> queue;
    std::vector<Running> running;
    int started = 0;
  };
  std::map<std::string, State> state;
  for (const auto& w : workers) {
    v1::WorkerInfo info;
    info.set_id(w.id);
    info.set_slots(w.slots);
    for (const auto& [k, ms] : w.task_ms) info.add_kernels(k);
    // Generous credit: the ventilator, not the worker, must bound the queue.
    (void)d.on_hello(w.id, info, 64 * w.slots);
  }
  const auto start = clock.steady_ns();
  std::set<uint64_t> final_tasks;
  Outcome out;
  auto now_ms = [&] { return static_cast<double>(clock.steady_ns() - start) * 1e-6; };
  // Deliveries in flight: (time, what).
  std::multimap<double, std::function<void()>> events;
  for (int step = 0; step < 10'000'000 && !d.job_done(1); ++step) {
    for (const auto& a : d.assign()) {
      std::vector<uint64_t> ids;
      for (const auto& t : a.tasks) ids.push_back(t.task_id);
      const std::string w = a.worker;
      events.emplace(now_ms() + latency_ms, [&, w, ids] {
        for (uint64_t id : ids) state[w].queue.push_back(id);
      });
    }
    // Start what fits.
    for (const auto& w : workers) {
      State& s = state[w.id];
      while (s.running.size() < w.slots && !s.queue.empty()) {
        const uint64_t id = s.queue.front();
        s.queue.pop_front();
        double ms = w.task_ms.at(kernel_of[id]);
        if (w.slow_after >= 0 && s.started >= w.slow_after) ms *= w.slow_factor;
        ++s.started;
        s.running.push_back({now_ms() + ms, id});
      }
    }
    // The next thing to happen: a delivery or a task's end.
    double next = std::numeric_limits<double>::infinity();
    if (!events.empty()) next = events.begin()->first;
    for (const auto& [id, s] : state) {
      for (const auto& r : s.running) next = std::min(next, r.end);
    }
    if (!std::isfinite(next)) {
      ADD_FAILURE() << "stuck at " << now_ms() << " ms with " << d.job_acked(1) << " acked";
      break;
    }
    clock.set_ns(start + static_cast<int64_t>(next * 1e6) + 1);
    while (!events.empty() && events.begin()->first <= now_ms()) {
      auto f = std::move(events.begin()->second);
      events.erase(events.begin());
      f();
    }
    for (const auto& w : workers) {
      State& s = state[w.id];
      for (auto it = s.running.begin(); it != s.running.end();) {
        if (it->end > now_ms()) {
          ++it;
          continue;
        }
        const uint64_t id = it->task;
        it = s.running.erase(it);
        ++out.ran[w.id][kernel_of[id]];
        const std::string wid = w.id;
        double ms = w.task_ms.at(kernel_of[id]);
        if (w.slow_after >= 0 && s.started > w.slow_after) ms *= w.slow_factor;
        // The worker reports the time and new credit; the sink acknowledges the result.
        events.emplace(now_ms() + latency_ms, [&, wid, id, ms] {
          (void)d.on_timings(wid, {Timing{kernel_of[id], 1000, 1, static_cast<uint64_t>(ms * 1e6)}});
          (void)d.on_credit(wid, 1);
        });
        events.emplace(now_ms() + 2 * latency_ms, [&, id] {
          v1::Ack ack;
          ack.set_job_id(1);
          ack.add_done(id);
          (void)d.on_ack(ack);
          // A finished task's other copy is dropped where it still waits or runs.
          for (const auto& c : d.take_cancels()) {
            State& other = state[c.worker];
            std::erase(other.queue, c.task_id);
            std::erase_if(other.running, [&](const Running& r) { return r.task == c.task_id; });
            (void)d.on_credit(c.worker, 1);
          }
          final_tasks.insert(id);
        });
      }
    }
    for (const auto& w : workers) (void)d.on_heartbeat(w.id);
  }
  out.makespan_ms = now_ms();
  out.backups = d.backups();
  return out;
}

// The ideal: the split that minimises the makespan, from the true task times.
double ideal_ms(const std::vector<SimWorker>& workers, const std::vector<SimEntry>& entries) {
  std::vector<std::vector<double>> cost;
  for (const auto& w : workers) {
    std::vector<double> row;
    for (const auto& e : entries) {
      auto t = w.task_ms.find(e.kernel);
      row.push_back(t == w.task_ms.end() ? kCannotRun : t->second / w.slots);
    }
    cost.push_back(row);
  }
  std::vector<double> count;
  for (const auto& e : entries) count.push_back(static_cast<double>(e.count));
  return plan_split(cost, std::vector<double>(workers.size(), 0.0), count).makespan;
}

void expect_near_ideal(const std::vector<SimWorker>& pool, const std::vector<SimEntry>& job,
                       const char* what) {
  const double ideal = ideal_ms(pool, job);
  const Outcome mix = simulate(pool, job);
  double fastest = std::numeric_limits<double>::infinity();
  for (const auto& w : pool) {
    bool runs_all = true;
    for (const auto& e : job) runs_all &= w.task_ms.count(e.kernel) > 0;
    if (runs_all) fastest = std::min(fastest, simulate({w}, job).makespan_ms);
  }
  std::string split;
  for (const auto& [w, kernels] : mix.ran) {
    for (const auto& [k, n] : kernels) split += w + ":" + k + "=" + std::to_string(n) + " ";
  }
  printf("%s: mix %.1f ms = %.3f x ideal (%.1f ms), fastest alone %.1f ms (%.3f)\n", what,
         mix.makespan_ms, mix.makespan_ms / ideal, ideal, fastest, mix.makespan_ms / fastest);
  EXPECT_LE(mix.makespan_ms, 1.10 * ideal)
      << what << ": mix " << mix.makespan_ms << " ms, ideal " << ideal << " ms; " << split;
  EXPECT_LE(mix.makespan_ms, fastest)
      << what << ": mix " << mix.makespan_ms << " ms, fastest alone " << fastest << " ms; " << split;
}

// GPU-friendly: matrix products the GPU does 30x faster, vector work it does 6x faster.
TEST(Scheduler, GpuFriendlyMixIsWithinTenPercentOfTheIdealSplit) {
  const std::vector<SimWorker> pool = {
      {"gpu", 4, {{"sgemm", 1.0}, {"saxpy", 0.5}}},
      {"cpu", 8, {{"sgemm", 30.0}, {"saxpy", 3.0}}},
  };
  expect_near_ideal(pool, {{"sgemm", 400}, {"saxpy", 2000}}, "sgemm + saxpy");
}

// CPU-friendly: many tiny tasks, which a GPU worker runs slower than CPU threads.
TEST(Scheduler, TinyTasksWhereTheCpuIsFasterStayNearTheIdealSplit) {
  const std::vector<SimWorker> pool = {
      {"gpu", 4, {{"noop", 0.20}}},
      {"cpu", 8, {{"noop", 0.05}}},
  };
  expect_near_ideal(pool, {{"noop", 20000}}, "tiny tasks");
}

// Both, and a kernel only one worker has.
TEST(Scheduler, ThreeKernelsOnThreeWorkersStayNearTheIdealSplit) {
  const std::vector<SimWorker> pool = {
      {"gpu", 4, {{"sgemm", 2.0}, {"saxpy", 0.5}, {"plugin.k", 1.0}}},
      {"cpu-a", 4, {{"sgemm", 40.0}, {"saxpy", 2.0}}},
      {"cpu-b", 2, {{"sgemm", 40.0}, {"saxpy", 2.0}}},
  };
  const Outcome o = simulate(pool, {{"sgemm", 200}, {"saxpy", 1500}, {"plugin.k", 300}});
  EXPECT_EQ(o.ran.at("cpu-a").count("plugin.k"), 0u);
  EXPECT_EQ(o.ran.at("cpu-b").count("plugin.k"), 0u);
  const std::vector<SimEntry> job = {{"sgemm", 200}, {"saxpy", 1500}, {"plugin.k", 300}};
  EXPECT_LE(o.makespan_ms, 1.10 * ideal_ms(pool, job));
}

// Long tasks on a slow worker next to a fast one: the slow one must not grab what it offers
// credit for (its window), and the last tasks go to the fast one.
TEST(Scheduler, ASlowWorkerDoesNotHoldTheTail) {
  const std::vector<SimWorker> pool = {
      {"fast", 2, {{"sleep", 20.0}}},
      {"slow", 2, {{"sleep", 200.0}}},
  };
  expect_near_ideal(pool, {{"sleep", 100}}, "long tasks, 10x slower worker");
}

// A worker that turns 20x slower mid-batch: at the end its last tasks run again elsewhere
// (backup copies) and the batch does not wait for them.
TEST(Scheduler, BackupCopiesRescueTheTasksOfAWorkerThatSlowedDown) {
  std::vector<SimWorker> pool = {
      {"steady", 2, {{"sleep", 10.0}}},
      {"flaky", 2, {{"sleep", 10.0}}, /*slow_after=*/60, /*slow_factor=*/20},
  };
  const Outcome o = simulate(pool, {{"sleep", 200}});
  EXPECT_GT(o.backups, 0u);
  // 200 tasks of 10 ms on 4 slots is 500 ms; the flaky worker's last tasks would take 200 ms
  // each: without copies the batch would end after ~1000 ms of steady work plus them.
  EXPECT_LT(o.makespan_ms, 1000.0) << o.backups << " backups";
  printf("straggler: %.1f ms with %llu backup copies\n", o.makespan_ms,
         static_cast<unsigned long long>(o.backups));
}

// Equal workers: the scheduler costs nothing against plain credit.
TEST(Scheduler, EqualWorkersSplitEvenly) {
  const std::vector<SimWorker> pool = {
      {"a", 4, {{"sleep", 5.0}}},
      {"b", 4, {{"sleep", 5.0}}},
  };
  const Outcome o = simulate(pool, {{"sleep", 800}});
  EXPECT_NEAR(o.ran.at("a").at("sleep"), 400, 40);
  expect_near_ideal(pool, {{"sleep", 800}}, "equal workers");
}

}  // namespace
}  // namespace taskfarm::ventilator
