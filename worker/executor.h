// Runs tasks on a pool of threads, each with its own kernel runner (a CPU slot, or a CUDA stream
// with its buffers). The event loop submits tasks and collects results; a notification file
// descriptor (eventfd) lets it poll for completions next to its ZeroMQ sockets.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <google/protobuf/arena.h>

#include <memory>

#include "common/protocol.h"
#include "kernels/kernel.h"

namespace taskfarm::worker {

// Runs one task. Returns: the output. Throws: KernelError (or anything: reported as failed).
using TaskRunner = std::function<kernels::KernelOutput(std::string_view kernel,
                                                       const kernels::TaskInput& in)>;

// A message of tasks as it arrived, decoded once onto an arena. The executor queues pointers
// into it; it is freed when its last task has run.
struct TaskBatchHolder {
  google::protobuf::Arena arena;
  v1::Envelope* envelope = nullptr;  // on `arena`, with a TaskBatch body
};
using SharedBatch = std::shared_ptr<TaskBatchHolder>;

// Returns: a holder with an empty envelope on its arena, ready to decode into.
SharedBatch make_batch();

using Results = google::protobuf::RepeatedPtrField<v1::Result>;

class Executor {
 public:
  // Starts `threads` threads; each calls `make_runner` once to build its own runner. Task
  // outputs above `max_output_bytes` fail the task.
  // Throws: whatever make_runner throws in the first thread (e.g. no usable device).
  Executor(int threads, std::function<TaskRunner()> make_runner,
           uint64_t max_output_bytes = uint64_t{64} << 20);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues every task of the batch under one lock.
  void submit_all(SharedBatch batch);
  // Removes the tasks no thread has started. Returns: their ids.
  std::vector<v1::TaskRef> take_unstarted();
  // Removes the unstarted tasks of a job. Returns: how many.
  size_t drop_job(uint64_t job_id);
  // Asks the running tasks of a job (0: of every job; `commands_only`: only exec tasks) to
  // stop: exec tasks are killed, kernels that check TaskInput::cancelled return. A cancelled
  // task that did not finish is not reported: take_aborted() hands it back.
  // Returns: how many were asked.
  size_t cancel_running(uint64_t job_id, bool commands_only = false);
  // Returns: the tasks that stopped because they were cancelled (and clears the list).
  std::vector<v1::TaskRef> take_aborted();
  // Takes out of `ids` the tasks of `job_id` this executor holds: queued, running, or
  // finished and not collected yet (their results are still to come).
  void erase_pending(uint64_t job_id, std::unordered_set<uint64_t>& ids) const;
  // Removes the unstarted copies of these tasks and stops the running ones (see
  // cancel_running). Returns: how many unstarted ones were dropped.
  size_t cancel_tasks(uint64_t job_id, const std::vector<uint64_t>& task_ids);
  // Returns: how long tasks took since the last call, per kernel and size (and clears them).
  std::vector<v1::TaskTiming> take_timings();
  // Moves finished results into `out` and clears the notification.
  void collect(Results& out);
  // Returns: tasks queued or running.
  size_t pending() const;
  // Returns: a file descriptor that is readable while results wait to be collected.
  int notify_fd() const { return event_fd_; }
  // Exponential average of task run time in nanoseconds (0 before the first task).
  int64_t average_task_ns() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void loop(std::function<TaskRunner()> make_runner, int index);

  mutable std::mutex mu_;  // guards queue_, done_, running_, stopping_, avg_ns_, start_error_
  std::condition_variable cv_;
  std::condition_variable started_cv_;
  struct Queued {
    SharedBatch batch;     // keeps `task` alive
    const v1::Task* task;
  };
  std::deque<Queued> queue_;
  Results done_;
  // What each thread runs now; the kernel reads `cancelled` while it runs.
  struct Running {
    uint64_t job_id = 0, task_id = 0;
    bool active = false;
    bool command = false;  // an exec task
    std::atomic<int> cancelled{0};
  };
  std::vector<Running> running_slots_;  // one per thread; guarded by mu_ but `cancelled`
  std::vector<v1::TaskRef> aborted_;
  std::map<std::pair<std::string, int64_t>, v1::TaskTiming> timings_;  // since take_timings
  uint64_t max_output_bytes_;
  size_t running_ = 0;
  bool stopping_ = false;
  int64_t avg_ns_ = 0;
  int ready_ = 0;
  std::string start_error_;
  int event_fd_ = -1;
  std::vector<std::thread> threads_;
};

// Returns: the result of running `task` with `runner` (never throws; failures become results).
v1::Result run_task(const v1::Task& task, const TaskRunner& runner);
// The same into `out` (cleared first), reusing its memory; `cancelled` is what the kernel
// sees as TaskInput::cancelled, and outputs larger than `max_output_bytes` fail the task.
void run_task(const v1::Task& task, const TaskRunner& runner, v1::Result& out,
              const std::atomic<int>* cancelled = nullptr,
              uint64_t max_output_bytes = uint64_t{64} << 20);

}  // namespace taskfarm::worker
