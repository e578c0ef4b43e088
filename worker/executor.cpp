#include "worker/executor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <atomic>
#include <new>
#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include <fmt/core.h>

#include "common/clock.h"
#include "common/errors.h"
#include "kernels/inputs.h"
#include "worker/task_input.h"

namespace taskfarm::worker {

v1::Result run_task(const v1::Task& task, const TaskRunner& runner) {
  v1::Result r;
  run_task(task, runner, r);
  return r;
}

void run_task(const v1::Task& task, const TaskRunner& runner, v1::Result& r,
              const std::atomic<int>* cancelled, uint64_t max_output_bytes) {
  r.Clear();
  r.set_job_id(task.job_id());
  r.set_task_id(task.task_id());
  r.set_attempt(task.attempt());
  r.set_kernel(task.kernel());
  r.set_sent_ns(task.sent_ns());
  kernels::Params params;
  std::vector<std::string> argv;
  kernels::TaskInput in = task_input(task, &params, &argv);
  in.cancelled = cancelled;
  std::string output;
  in.output = &output;
  in.max_output_bytes = max_output_bytes;
  const auto& clock = SystemClock::instance();
  r.set_started_ns(clock.wall_ns());
  try {
    const kernels::KernelOutput out = runner(task.kernel(), in);
    if (output.size() > max_output_bytes) {
      throw kernels::KernelError(fmt::format(
          "{}: output of {:.1f} MiB is larger than the worker's limit of {} MiB (--max-output-mb)",
          task.kernel(), static_cast<double>(output.size()) / (1 << 20), max_output_bytes >> 20));
    }
    r.set_status(v1::STATUS_OK);
    r.set_checksum(out.checksum);
    r.set_value(out.value);
    r.set_bytes(out.bytes);
    r.set_flops(out.flops);
    if (!output.empty()) {
      r.set_output(std::move(output));
      if (task.kernel() == "mandelbrot") {  // a band of rows of the job's image
        r.set_output_row(kernels::band_begin(static_cast<uint64_t>(task.size()), task.count(),
                                             task.index()));
        r.set_output_width(static_cast<uint64_t>(task.size()));
      }
    }
  } catch (const kernels::KernelError& e) {
    r.set_status(v1::STATUS_FAILED);
    r.set_error(e.what());
    r.set_retryable(e.retryable());
  } catch (const std::bad_alloc&) {
    r.set_status(v1::STATUS_FAILED);
    r.set_error("out of memory");
    r.set_retryable(true);
  } catch (const std::exception& e) {
    r.set_status(v1::STATUS_FAILED);
    r.set_error(e.what());
    r.set_retryable(true);
  }
  r.set_finished_ns(clock.wall_ns());
}

Executor::Executor(int threads, std::function<TaskRunner()> make_runner,
                   uint64_t max_output_bytes)
    : running_slots_(static_cast<size_t>(threads)), max_output_bytes_(max_output_bytes) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) throw SetupError("eventfd failed");
  for (int i = 0; i < threads; ++i) threads_.emplace_back(&Executor::loop, this, make_runner, i);
  std::unique_lock lock(mu_);
  started_cv_.wait(lock, [&] { return ready_ == threads || !start_error_.empty(); });
  if (!start_error_.empty()) {
    const std::string why = start_error_;
    stopping_ = true;
    cv_.notify_all();
    lock.unlock();
    for (auto& t : threads_) t.join();
    threads_.clear();
    close(event_fd_);
    throw SetupError(why);
  }
}

Executor::~Executor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  if (event_fd_ >= 0) close(event_fd_);
}

void Executor::loop(std::function<TaskRunner()> make_runner, int index) {
  TaskRunner runner;
  try {
    runner = make_runner();
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    if (start_error_.empty()) start_error_ = e.what();
    started_cv_.notify_all();
    return;
  }
  {
    std::lock_guard lock(mu_);
    ++ready_;
  }
  started_cv_.notify_all();
  // Fault injection for tests: crash the whole process on one task id, or fail one task.
  const char* crash_env = std::getenv("TASKFARM_TEST_CRASH_TASK");
  const long long crash_task = crash_env ? std::atoll(crash_env) : -1;
  const char* fail_env = std::getenv("TASKFARM_TEST_FAIL_TASK");
  const long long fail_task = fail_env ? std::atoll(fail_env) : -1;
  // Heterogeneity for tests on one CPU: TASKFARM_TEST_SLOWDOWN=sgemm=30,saxpy=2 makes this
  // worker's tasks of each named kernel take that many times as long (it waits the rest);
  // `sleep:20000=3` names one size of a kernel.
  std::map<std::string, double, std::less<>> slowdown;
  if (const char* s = std::getenv("TASKFARM_TEST_SLOWDOWN")) {
    std::string spec(s);
    for (size_t at = 0; at < spec.size();) {
      const size_t comma = std::min(spec.find(',', at), spec.size());
      const std::string item = spec.substr(at, comma - at);
      const size_t eq = item.find('=');
      if (eq != std::string::npos) slowdown[item.substr(0, eq)] = std::atof(item.c_str() + eq + 1);
      at = comma + 1;
    }
  }
  v1::Result r;  // reused: swapped into done_, whose cleared elements come back here
  for (;;) {
    Queued queued;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping
      queued = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      Running& slot = running_slots_[static_cast<size_t>(index)];
      slot.job_id = queued.task->job_id();
      slot.task_id = queued.task->task_id();
      slot.command = queued.task->argv_size() > 0;
      slot.active = true;
      slot.cancelled.store(0);
    }
    const v1::Task& task = *queued.task;
    if (crash_task >= 0 && task.task_id() == static_cast<uint64_t>(crash_task)) {
      kill(getpid(), SIGKILL);  // die like a segfaulting kernel, without a core dump
    }
    Running& slot = running_slots_[static_cast<size_t>(index)];
    run_task(task, runner, r, &slot.cancelled, max_output_bytes_);
    if (!slowdown.empty()) {
      auto f = slowdown.find(fmt::format("{}:{}", task.kernel(), task.size()));
      if (f == slowdown.end()) f = slowdown.find(task.kernel());
      if (f != slowdown.end() && f->second > 1) {
        const int64_t took = r.finished_ns() - r.started_ns();
        std::this_thread::sleep_for(std::chrono::nanoseconds(
            static_cast<int64_t>(static_cast<double>(took) * (f->second - 1))));
        r.set_finished_ns(SystemClock::instance().wall_ns());
      }
    }
    if (fail_task >= 0 && task.task_id() == static_cast<uint64_t>(fail_task)) {
      r.set_status(v1::STATUS_FAILED);
      r.set_error("injected failure (TASKFARM_TEST_FAIL_TASK)");
      r.set_retryable(false);
    }
    const int64_t took = r.finished_ns() - r.started_ns();
    bool first;
    {
      std::lock_guard lock(mu_);
      --running_;
      slot.active = false;
      if (slot.cancelled.load() != 0 && r.status() != v1::STATUS_OK) {
        // Stopped on request: not this task's fault, so not a result (and not an attempt).
        v1::TaskRef ref;
        ref.set_job_id(task.job_id());
        ref.set_task_id(task.task_id());
        aborted_.push_back(std::move(ref));
        first = done_.empty() && aborted_.size() == 1;
      } else {
        avg_ns_ = avg_ns_ == 0 ? took : (avg_ns_ * 7 + took) / 8;
        v1::TaskTiming& t = timings_[{task.kernel(), task.size()}];
        t.set_count(t.count() + 1);
        t.set_busy_ns(t.busy_ns() + static_cast<uint64_t>(std::max<int64_t>(0, took)));
        first = done_.empty() && aborted_.empty();
        done_.Add()->Swap(&r);  // reuses a cleared element when the pool has one
      }
    }
    // One wake-up per batch of results: collect() takes all of them.
    if (first) {
      const uint64_t one = 1;
      [[maybe_unused]] auto n = write(event_fd_, &one, sizeof one);
    }
  }
}

SharedBatch make_batch() {
  auto batch = std::make_shared<TaskBatchHolder>();
  batch->envelope = google::protobuf::Arena::CreateMessage<v1::Envelope>(&batch->arena);
  return batch;
}

void Executor::submit_all(SharedBatch batch) {
  const auto& tasks = batch->envelope->tasks().tasks();
  {
    std::lock_guard lock(mu_);
    for (const auto& t : tasks) queue_.push_back(Queued{batch, &t});
  }
  if (tasks.size() == 1) {
    cv_.notify_one();
  } else {
    cv_.notify_all();
  }
}

std::vector<v1::TaskRef> Executor::take_unstarted() {
  std::lock_guard lock(mu_);
  std::vector<v1::TaskRef> out;
  out.reserve(queue_.size());
  for (const auto& q : queue_) {
    v1::TaskRef ref;
    ref.set_job_id(q.task->job_id());
    ref.set_task_id(q.task->task_id());
    out.push_back(std::move(ref));
  }
  queue_.clear();
  return out;
}

size_t Executor::drop_job(uint64_t job_id) {
  std::lock_guard lock(mu_);
  const size_t before = queue_.size();
  std::erase_if(queue_, [job_id](const Queued& q) { return q.task->job_id() == job_id; });
  return before - queue_.size();
}

size_t Executor::cancel_running(uint64_t job_id, bool commands_only) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (Running& slot : running_slots_) {
    if (!slot.active || (job_id != 0 && slot.job_id != job_id)) continue;
    if (commands_only && !slot.command) continue;
    slot.cancelled.store(1);
    ++n;
  }
  return n;
}

size_t Executor::cancel_tasks(uint64_t job_id, const std::vector<uint64_t>& task_ids) {
  std::lock_guard lock(mu_);
  auto named = [&](uint64_t id) {
    return std::find(task_ids.begin(), task_ids.end(), id) != task_ids.end();
  };
  const size_t before = queue_.size();
  std::erase_if(queue_, [&](const Queued& q) {
    return q.task->job_id() == job_id && named(q.task->task_id());
  });
  for (Running& slot : running_slots_) {
    if (slot.active && slot.job_id == job_id && named(slot.task_id)) slot.cancelled.store(1);
  }
  return before - queue_.size();
}

std::vector<v1::TaskTiming> Executor::take_timings() {
  std::lock_guard lock(mu_);
  std::vector<v1::TaskTiming> out;
  out.reserve(timings_.size());
  for (auto& [key, t] : timings_) {
    t.set_kernel(key.first);
    t.set_size(key.second);
    out.push_back(std::move(t));
  }
  timings_.clear();
  return out;
}

std::vector<v1::TaskRef> Executor::take_aborted() {
  std::lock_guard lock(mu_);
  return std::exchange(aborted_, {});
}

void Executor::erase_pending(uint64_t job_id, std::unordered_set<uint64_t>& ids) const {
  std::lock_guard lock(mu_);
  for (const auto& q : queue_) {
    if (q.task->job_id() == job_id) ids.erase(q.task->task_id());
  }
  for (const Running& slot : running_slots_) {
    if (slot.active && slot.job_id == job_id) ids.erase(slot.task_id);
  }
  for (const auto& r : done_) {
    if (r.job_id() == job_id) ids.erase(r.task_id());
  }
}

void Executor::collect(Results& out) {
  uint64_t count;
  [[maybe_unused]] auto n = read(event_fd_, &count, sizeof count);
  std::lock_guard lock(mu_);
  if (out.empty()) {
    out.Swap(&done_);  // O(1); done_ inherits out's cleared elements for reuse
  } else {
    for (auto& r : done_) out.Add()->Swap(&r);
    done_.Clear();
  }
}

size_t Executor::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_ + static_cast<size_t>(done_.size()) + aborted_.size();
}

int64_t Executor::average_task_ns() const {
  std::lock_guard lock(mu_);
  return avg_ns_;
}

}  // namespace taskfarm::worker
