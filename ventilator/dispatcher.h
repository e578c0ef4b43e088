// Dispatch bookkeeping of the ventilator, without sockets: which worker holds which task
// (its lease), credit-based flow control, capability routing (a task goes only to a worker that
// offers its kernel), re-issue of the tasks of lost workers, retry limits.
// Driven by an injectable clock so that tests can expire leases without sleeping.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"
#include "common/range_set.h"

namespace taskfarm::ventilator {

struct DispatchPolicy {
  int64_t worker_timeout_ms = 3000;  // silence after which a worker is declared lost
  int64_t task_timeout_ms = 0;       // re-issue a task held longer than this (0: never)
  uint32_t max_attempts = kDefaultMaxAttempts;  // attempts before a task is reported failed
  uint64_t window = 200000;          // most unresolved tasks per job (bounded memory)
  uint32_t max_batch = 1024;         // most tasks per message to one worker
  uint64_t max_batch_bytes = 8 << 20;  // and about this many payload bytes (at least one task)
};

// One task handed to a worker.
struct Issue {
  uint64_t job_id;
  uint64_t task_id;
  uint32_t attempt;
};

// A group of tasks for one worker, to be sent in one message.
struct Assignment {
  std::string worker;  // routing id
  std::vector<Issue> tasks;
};

// A task given up after max_attempts: the ventilator reports it failed to the sink.
struct GiveUp {
  Issue task;
  std::string error;
};

// The shape of a job for dispatching: its entries in task-id order.
struct JobShape {
  struct Entry {
    std::string kernel;       // only workers offering it get these tasks ("": any worker)
    uint64_t count = 0;
    uint64_t task_bytes = 0;  // inline payload of each task
  };
  uint64_t id = 0;
  int32_t priority = 0;
  uint32_t max_attempts = 0;  // 0: the policy's
  std::vector<Entry> entries;
  // Restarts (issue 14): the job's acknowledged tasks, owned by the caller until remove_job.
  // Fresh task ids skip them; the dispatcher adds every task it sees acknowledged. nullptr:
  // none yet (the dispatcher keeps its own set).
  RangeSet* done = nullptr;
  uint64_t failed = 0;  // of those, the ones that failed
};

class Dispatcher {
 public:
  explicit Dispatcher(DispatchPolicy policy, const Clock& clock = SystemClock::instance());

  // ---- jobs
  void add_job(const JobShape& shape);
  // One entry that any worker may run. `max_attempts` 0 means the policy's; `task_bytes` is the
  // inline payload of each task.
  void add_job(uint64_t job_id, uint64_t total, int32_t priority = 0, uint32_t max_attempts = 0,
               uint64_t task_bytes = 0);
  // Stops dispatching the job and forgets its tasks.
  void remove_job(uint64_t job_id);
  // Returns: whether every task of the job has a final result acknowledged by the sink.
  bool job_done(uint64_t job_id) const;
  // Returns: tasks of the job the sink reported failed.
  uint64_t job_failed(uint64_t job_id) const;
  uint64_t job_acked(uint64_t job_id) const;
  // Returns: tasks issued and not yet acknowledged (all jobs): the in-flight window.
  size_t unresolved() const;
  // Returns: why the job's remaining tasks are not being handed out ("no worker connected",
  // "no connected worker offers kernel 'x'", "workers busy with higher-priority jobs"), or ""
  // when they are (or none remain).
  std::string waiting_reason(uint64_t job_id) const;

  // ---- workers (keyed by ZeroMQ routing id)
  // Registers a worker (or the same process again, after a partition: it keeps its tasks).
  // Returns: tasks given up because of it (none today: kept for the protocol's symmetry).
  std::vector<GiveUp> on_hello(const std::string& worker, const v1::WorkerInfo& info,
                               uint32_t credit);
  // Returns: false when the worker is unknown (it must say Hello again).
  bool on_credit(const std::string& worker, uint32_t credit);
  bool on_heartbeat(const std::string& worker);
  // The worker is leaving: takes no more tasks; `returned` were never started.
  void on_goodbye(const std::string& worker, const v1::Goodbye& goodbye);
  // The worker cannot be reached (send failed): its tasks are re-issued at once, unless it is
  // leaving (then after the worker timeout, so the acks of its last results can arrive).
  std::vector<GiveUp> on_unreachable(const std::string& worker);
  size_t workers() const { return workers_.size(); }
  std::vector<std::string> worker_ids() const;
  // Returns: whether a connected worker offers `kernel`.
  bool offered(const std::string& kernel) const;

  // ---- sink
  // Closes the leases of finished tasks and re-issues those the sink asks to retry.
  // Returns: tasks given up because a retry was asked for after their last attempt (a sink
  // that disagrees with the job's max_attempts).
  std::vector<GiveUp> on_ack(const v1::Ack& ack);

  // ---- dispatch
  // Returns: tasks to send now, at most one assignment per worker with credit.
  std::vector<Assignment> assign();
  // Puts back tasks that could not be sent (not counted as an attempt).
  void unsend(const Assignment& assignment);

  // Declares silent workers lost and re-issues their tasks (and tasks past task_timeout).
  // Returns: tasks given up after max_attempts.
  std::vector<GiveUp> expire();

  // ---- for the dashboard and /metrics (issue 16)
  struct WorkerSummary {
    std::string routing_id;
    const v1::WorkerInfo* info;  // valid until the next call that changes the dispatcher
    int64_t credit;
    uint64_t held;
    int64_t last_seen_ns;
    bool leaving;
  };
  std::vector<WorkerSummary> worker_summaries() const;
  // Returns: tasks of the job issued and not acknowledged yet (some may wait to be re-issued).
  uint64_t job_in_flight(uint64_t job_id) const;

  // ---- restarts (issue 14)
  // Returns: per job, the tasks leased to `worker` that the sink has not acknowledged.
  std::map<uint64_t, std::vector<uint64_t>> leases_of(const std::string& worker) const;
  // `worker` holds none of these tasks of the job (neither a result nor the task): they are
  // issued again with the same attempt, like the unstarted tasks of a goodbye.
  void not_held(const std::string& worker, uint64_t job_id, const std::vector<uint64_t>& ids);

  // Counters for logs and the report.
  uint64_t reissued() const { return reissued_; }
  uint64_t workers_lost() const { return workers_lost_; }

 private:
  static constexpr uint32_t kAnyKernel = 0;  // interned id of "" : every worker runs it

  struct Worker {
    v1::WorkerInfo info;
    int64_t credit = 0;
    int64_t last_seen_ns = 0;
    bool leaving = false;
    uint64_t held = 0;
    uint32_t slot = 0;  // never reused, so a stale entry never points at a new worker
    std::vector<bool> kernels;  // by interned kernel id: what it offers
    bool offers_all = false;    // it listed no kernels (an older worker): anything goes
    // Last attempts run alone, so a poison task cannot take innocent tasks down with it:
    bool draining = false;  // reserved to run a last attempt: gets nothing new until idle
    bool isolated = false;  // running a last attempt alone
  };
  enum class State : uint8_t { kQueued, kAssigned, kGivenUp };
  struct Entry {
    State state;
    uint32_t attempt;
    uint32_t slot;  // holder's Worker::slot when assigned
    int64_t since_ns;
  };
  // The tasks of one job entry: they share a kernel, so the same workers can run them.
  struct Group {
    uint32_t kernel = kAnyKernel;
    uint64_t first = 0, end = 0;  // task ids [first, end)
    uint64_t next_fresh = 0;      // the next task never issued
    uint64_t task_bytes = 0;
    std::deque<uint64_t> requeued;     // task ids to issue again (stale ids skipped)
    std::deque<uint64_t> last_chance;  // re-issues on their final attempt: run alone
    bool has_work() const { return !requeued.empty() || next_fresh < end; }
  };
  struct Job {
    uint64_t id;
    uint64_t total;
    int32_t priority;
    uint32_t max_attempts;
    uint64_t acked = 0;
    uint64_t failed = 0;
    RangeSet* done = nullptr;             // acknowledged tasks: JobShape::done, or own_done
    std::unique_ptr<RangeSet> own_done;
    std::unordered_map<uint64_t, Entry> open;  // issued, not yet acknowledged
    std::vector<Group> groups;                 // in task-id order
    Group& group_of(uint64_t task_id);
    bool has_last_chance() const;
  };

  uint32_t intern(const std::string& kernel);
  // Moves the group's next fresh task past tasks acknowledged already (restarts).
  static void skip_done(const Job& job, Group& g);
  static bool can_run(const Worker& w, const Group& g);
  // Queues a task for another attempt (alone when it is the last one).
  void requeue(Job& job, uint64_t task_id, Entry& e);
  // Forgets that the entry's holder holds it.
  void release(const Entry& e);
  // Hands a last-chance task to an idle worker. Returns: whether one was handed out.
  bool assign_last_chance(Worker& w, const std::string& id, int64_t now, std::vector<Assignment>& out);
  // Re-issues (or gives up) one task whose holder is lost.
  void lose(Job& job, uint64_t task_id, Entry& e, const std::string& why,
            std::vector<GiveUp>& give_ups);
  std::vector<GiveUp> drop_worker(const std::string& worker, const std::string& why);
  // Returns: the job and group `w` should take a task from next, or nulls.
  std::pair<Job*, Group*> pick(const Worker& w);

  DispatchPolicy policy_;
  const Clock& clock_;
  std::map<std::string, Worker> workers_;
  std::unordered_map<uint32_t, std::string> slot_to_worker_;
  uint32_t next_slot_ = 1;
  std::map<uint64_t, Job> jobs_;
  std::unordered_map<std::string, uint32_t> kernel_ids_{{"", kAnyKernel}};
  std::vector<std::string> kernel_names_{""};
  uint64_t reissued_ = 0, workers_lost_ = 0;
};

}  // namespace taskfarm::ventilator
