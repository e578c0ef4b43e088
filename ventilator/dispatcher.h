// Dispatch bookkeeping of the ventilator, without sockets: which worker holds which task
// (its lease), credit-based flow control, capability routing (a task goes only to a worker that
// offers its kernel), a scheduler that knows the devices, re-issue of the tasks of lost workers,
// retry limits, and backup copies of stragglers at the end of a batch.
// Driven by an injectable clock so that tests can expire leases without sleeping.
//
// The scheduler (StarPU's history-based models and dmda, MapReduce's backup tasks):
// - workers report how long their tasks take, per kernel and size class; the dispatcher keeps
//   an estimate per (worker, class) and each worker's backlog (the estimated work it holds);
// - a plan, re-solved every few milliseconds, splits the remaining tasks of each priority level
//   over the workers as the linear program of ventilator/split.h would (the ideal split);
// - a worker with credit takes tasks of the groups its plan gives it first (the ones where it
//   matters most first), never a task it would finish after the plan's end while others would
//   finish it sooner, and never more queued work than a few milliseconds (or one task) per slot,
//   whatever credit it offers; a (worker, class) without an estimate is explored with one task
//   per slot;
// - when nothing is left to hand out, an idle worker runs a copy of the oldest task a slower
//   worker still holds, if it would finish it sooner (or the holder is overdue); the copy is
//   the task's next attempt (never its last), the first result wins and the other copy is
//   cancelled.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <deque>
#include <map>
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
  double queue_ms = 2.0;             // queued work per slot a worker may hold beyond one task
  bool backups = true;               // copies of stragglers at the end of a batch
};

// One task handed to a worker.
struct Issue {
  uint64_t job_id;
  uint64_t task_id;
  uint32_t attempt;
  bool backup = false;  // a copy of a task another worker still runs
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

// A copy of a task that is no longer needed (its other copy finished): tell `worker`.
struct Cancel {
  std::string worker;  // routing id
  uint64_t job_id;
  uint64_t task_id;
};

// The shape of a job for dispatching: its entries in task-id order.
struct JobShape {
  struct Entry {
    std::string kernel;       // only workers offering it get these tasks ("": any worker)
    uint64_t count = 0;
    uint64_t task_bytes = 0;  // inline payload of each task
    int64_t size = 0;         // the kernel's size: tasks of one kernel and size class cost alike
  };
  uint64_t id = 0;
  int32_t priority = 0;
  uint32_t max_attempts = 0;  // 0: the policy's
  std::vector<Entry> entries;
  uint32_t min_workers = 0;   // dispatch only once this many workers are connected
  RangeSet done = {};         // tasks already acknowledged (a job resumed after a restart)
  uint64_t failed = 0;        // of those, the ones that failed
};

// How long tasks of one kernel and size class took on a worker: what it reports.
struct Timing {
  std::string kernel;
  int64_t size = 0;
  uint32_t count = 0;
  uint64_t busy_ns = 0;
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
  // "no connected worker offers kernel 'x'", "waiting for 3 workers (1 connected)", "workers
  // busy with higher-priority jobs"), or "" when they are (or none remain).
  std::string waiting_reason(uint64_t job_id) const;

  // ---- workers (keyed by ZeroMQ routing id)
  // Registers a worker (or the same process again, after a partition: it keeps its tasks).
  // Returns: tasks given up because of it (none today: kept for the protocol's symmetry).
  std::vector<GiveUp> on_hello(const std::string& worker, const v1::WorkerInfo& info,
                               uint32_t credit);
  // Returns: the worker's id in reports: its own, or "id~N" when another registered worker
  // had it first; "" for an unknown worker.
  const std::string& worker_name(const std::string& worker) const;
  // Returns: false when the worker is unknown (it must say Hello again).
  bool on_credit(const std::string& worker, uint32_t credit);
  bool on_heartbeat(const std::string& worker);
  // How long the worker's recent tasks took. Returns: false when the worker is unknown.
  bool on_timings(const std::string& worker, const std::vector<Timing>& timings);
  // The worker is leaving: takes no more tasks; `returned` were never started.
  void on_goodbye(const std::string& worker, const v1::Goodbye& goodbye);
  // The worker cannot be reached (send failed): its tasks are re-issued at once, unless it is
  // leaving (then after the worker timeout, so the acks of its last results can arrive).
  std::vector<GiveUp> on_unreachable(const std::string& worker);
  size_t workers() const { return workers_.size(); }
  std::vector<std::string> worker_ids() const;
  // Returns: whether a connected worker offers `kernel`.
  bool offered(const std::string& kernel) const;
  // For observability: one line per worker.
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
  // Returns: per job, the tasks leased to `worker` (holding the task or a copy of it) that the
  // sink has not acknowledged.
  std::map<uint64_t, std::vector<uint64_t>> leases_of(const std::string& worker) const;
  // `worker` holds none of these tasks of the job (neither a result nor the task, after a
  // restart of the sink): they are issued again with the same attempt, as a goodbye's
  // unstarted tasks are.
  void not_held(const std::string& worker, uint64_t job_id, const std::vector<uint64_t>& ids);
  // Returns: the worker's estimate of one task of `kernel` at `size`, in ms (0: none yet).
  double estimate_ms(const std::string& worker, const std::string& kernel, int64_t size) const;

  // One registered worker as `taskfarm workers` shows it.
  struct WorkerView {
    v1::WorkerInfo info;
    uint64_t held = 0;                          // tasks leased to it, running or queued there
    std::map<uint64_t, uint64_t> held_by_job;   // job id -> tasks of that job it holds
    double idle_s = 0;                          // since it was last heard from
    bool leaving = false;
  };
  // Returns: every registered worker, in routing-id order. Scans the open leases: O(tasks in
  // flight), for occasional requests only.
  std::vector<WorkerView> worker_table() const;

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
  // Returns: copies of finished tasks still held by another worker (and clears the list).
  std::vector<Cancel> take_cancels();

  // Declares silent workers lost and re-issues their tasks (and tasks past task_timeout).
  // Returns: tasks given up after max_attempts.
  std::vector<GiveUp> expire();

  // Counters for logs and the report.
  uint64_t reissued() const { return reissued_; }
  uint64_t workers_lost() const { return workers_lost_; }
  uint64_t backups() const { return backups_; }

 private:
  static constexpr uint32_t kAnyKernel = 0;  // interned id of "" : every worker runs it

  struct Estimate {
    double ms = 0;  // one task on one slot
    uint32_t samples = 0;
  };
  struct Worker {
    v1::WorkerInfo info;
    int64_t credit = 0;
    int64_t last_seen_ns = 0;
    bool leaving = false;
    uint64_t held = 0;
    uint32_t slot = 0;   // never reused, so a stale entry never points at a new worker
    uint32_t slots = 0;  // tasks it runs at once (0: it did not say: credit alone rules)
    std::vector<bool> kernels;  // by interned kernel id: what it offers
    bool offers_all = false;    // it listed no kernels (an older worker): anything goes
    std::unordered_map<uint64_t, Estimate> estimates;  // by class
    std::unordered_map<uint64_t, uint32_t> exploring;  // classes without an estimate: in flight
    double backlog_ms = 0;    // estimated work of the tasks it holds, on one slot
    double completed_ms = 0;  // of which it reported done (timings) before the sink's acks
    // Last attempts run alone, so a poison task cannot take innocent tasks down with it:
    bool draining = false;  // reserved to run a last attempt: gets nothing new until idle
    bool isolated = false;  // running a last attempt alone
    // Returns: how long until it has run what it holds (as far as we know), in ms.
    double queue_wall_ms() const {
      return std::max(0.0, backlog_ms - completed_ms) / std::max<uint32_t>(slots, 1);
    }
  };
  enum class State : uint8_t { kQueued, kAssigned, kGivenUp };
  struct Entry {
    State state;
    uint32_t attempt;
    uint32_t slot;         // holder's Worker::slot when assigned
    uint32_t backup_slot;  // a second holder running a copy (0: none)
    float cost_ms;         // the holder's estimate when it got it (its share of the backlog)
    float backup_cost_ms;
    int64_t since_ns;
  };
  // The tasks of one job entry: they share a kernel, so the same workers can run them.
  struct Group {
    uint32_t kernel = kAnyKernel;
    uint64_t cls = 0;             // kernel and size class: what estimates are kept by
    uint64_t first = 0, end = 0;  // task ids [first, end)
    uint64_t next_fresh = 0;      // the next task never issued
    uint64_t unissued = 0;        // fresh tasks left (some may be done already, after a restart)
    uint64_t task_bytes = 0;
    std::deque<uint64_t> requeued;     // task ids to issue again (stale ids skipped)
    std::deque<uint64_t> last_chance;  // re-issues on their final attempt: run alone
    bool has_work() const { return !requeued.empty() || unissued > 0; }
    uint64_t pending() const { return requeued.size() + unissued; }
  };
  struct Job {
    uint64_t id;
    uint64_t total;
    int32_t priority;
    uint32_t max_attempts;
    uint32_t min_workers = 0;
    uint64_t acked = 0;
    uint64_t failed = 0;
    std::unordered_map<uint64_t, Entry> open;  // issued, not yet acknowledged
    std::vector<Group> groups;                 // in task-id order
    RangeSet done;                             // acknowledged before it was added (resumed)
    Group& group_of(uint64_t task_id);
    bool has_last_chance() const;
  };
  // The plan for one priority level: the ideal split of its remaining tasks.
  struct LevelPlan {
    double end_ms = 0;  // when the level's work should be over, in ms after `at_ns`
    // (worker slot, job id, group index) -> the fraction of the group's tasks it should run
    std::map<std::tuple<uint32_t, uint64_t, size_t>, double> share;
  };

  uint32_t intern(const std::string& kernel);
  static uint64_t class_of(uint32_t kernel, int64_t size);
  std::string unique_name(const std::string& worker, const std::string& id) const;
  static bool can_run(const Worker& w, const Group& g);
  // Returns: the worker's estimate for the class in ms, or a prior (negative: none known).
  double estimate(const Worker& w, uint64_t cls) const;
  // Returns: a guess of `w`'s time for a class it has not timed (negative: nobody has).
  double prior(uint64_t cls, const Worker* w = nullptr) const;
  Worker* holder(uint32_t slot);
  // Queues a task for another attempt (alone when it is the last one).
  void requeue(Job& job, uint64_t task_id, Entry& e);
  // Forgets that the entry's holders hold it.
  void release(Entry& e);
  void release_backup(Entry& e);
  void hold(Worker& w, Entry& e, const Group& g, int64_t now);
  // Hands a last-chance task to an idle worker. Returns: whether one was handed out.
  bool assign_last_chance(Worker& w, const std::string& id, int64_t now, std::vector<Assignment>& out);
  // Hands an idle worker a copy of a straggler. Returns: whether it did.
  bool assign_backup(Worker& w, const std::string& id, int64_t now, std::vector<Assignment>& out);
  // Re-issues (or gives up) one task whose holder is lost.
  void lose(Job& job, uint64_t task_id, Entry& e, const std::string& why,
            std::vector<GiveUp>& give_ups);
  std::vector<GiveUp> drop_worker(const std::string& worker, const std::string& why);
  // `w` no longer holds the task (a goodbye's unstarted task, or not held after a restart of
  // the sink): its copy's other holder carries on, or it is issued again, same attempt.
  void give_back(Worker& w, Job& job, uint64_t task_id);
  // Returns: the next fresh task id of the group that is not done yet, or nullopt.
  std::optional<uint64_t> next_fresh(Job& job, Group& g);
  // Re-solves the plans when they are old or something changed.
  void plan(int64_t now);
  // Returns: the group `w` should take a task from next (and its job), or nulls.
  // What pick() found when a single group was the worker's only choice (else group is null).
  struct Sole {
    Job* job = nullptr;
    Group* group = nullptr;
    double est = 0;  // the worker's estimate for it, ms (<= 0: none)
    const LevelPlan* lp = nullptr;
    double since_ms = 0;  // of the plan, when picked
  };
  std::pair<Job*, Group*> pick(Worker& w, int64_t now, Sole* sole = nullptr);
  // Returns: whether a task of `g` (e ms on `w`) would end after the plan's end on `w` while
  // another worker would finish it sooner: the slow worker leaves the tail to the fast one.
  bool leaves_tail(const Worker& w, const Group& g, double e, const LevelPlan* lp,
                   double since_plan_ms) const;
  // Returns: whether `w` holds as much queued work as it may (est: its estimate of the next).
  bool queue_full(const Worker& w, double est) const;
  bool min_workers_met(const Job& job) const;

  DispatchPolicy policy_;
  const Clock& clock_;
  std::map<std::string, Worker> workers_;
  // Each worker by its slot: its routing id (the key) and its state. Map nodes do not move.
  std::unordered_map<uint32_t, std::map<std::string, Worker>::iterator> by_slot_;
  uint32_t last_slot_ = 0;  // holder()'s last answer (0: none; slots start at 1)
  Worker* last_worker_ = nullptr;
  uint32_t next_slot_ = 1;
  std::map<uint64_t, Job> jobs_;
  std::unordered_map<std::string, uint32_t> kernel_ids_{{"", kAnyKernel}};
  std::vector<std::string> kernel_names_{""};
  std::map<int32_t, LevelPlan> plans_;  // by priority
  int64_t planned_at_ns_ = 0;
  bool replan_ = true;
  std::vector<Cancel> cancels_;
  uint64_t reissued_ = 0, workers_lost_ = 0, backups_ = 0;
};

}  // namespace taskfarm::ventilator
