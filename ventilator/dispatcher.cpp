#include "ventilator/dispatcher.h"

#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <tuple>

#include "common/log.h"
#include "ventilator/split.h"
#include "common/text.h"

namespace taskfarm::ventilator {
namespace {

// Before any worker has timed a class, its tasks are planned as taking this long.
constexpr double kUnknownTaskMs = 1.0;
// Plans are re-solved at least this often (and at once after a worker or job comes or goes).
constexpr int64_t kReplanNs = 20'000'000;
// A worker takes a task it would finish up to this much after the plan's end (estimates err).
constexpr double kPlanSlack = 1.10;
constexpr double kPlanSlackMs = 0.5;
// A backup copy goes to a worker that would finish the task this much sooner than its holder
// (twice as fast and 2 ms sooner), or when its holder is overdue (three times its estimate
// and 10 ms late: scheduling noise on a busy machine is not a straggler).
constexpr double kBackupGain = 2.0;
constexpr double kBackupSlackMs = 2.0;
constexpr double kOverdueFactor = 3.0;
constexpr double kOverdueSlackMs = 10.0;
constexpr int64_t kBackupScanNs = 10'000'000;
// Tasks a worker may hold waiting per slot beyond the running one (besides queue_ms of small
// ones): a quarter of a task, to hide the round trip between one task and the next without
// committing a slow worker to work a faster one would finish sooner.
constexpr double kQueuedTasks = 0.25;

uint64_t count_in(const RangeSet& set, uint64_t first, uint64_t end) {
  uint64_t n = 0;
  for (const auto& [b, e] : set.range_map()) {
    if (e <= first || b >= end) continue;
    n += std::min(e, end) - std::max(b, first);
  }
  return n;
}

}  // namespace

Dispatcher::Group& Dispatcher::Job::group_of(uint64_t task_id) {
  // Last group whose first id is <= task_id (groups are few: a linear scan from the back).
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
    if (it->first <= task_id) return *it;
  }
  return groups.front();
}

bool Dispatcher::Job::has_last_chance() const {
  for (const auto& g : groups) {
    if (!g.last_chance.empty()) return true;
  }
  return false;
}

uint32_t Dispatcher::intern(const std::string& kernel) {
  auto [it, added] = kernel_ids_.try_emplace(kernel, static_cast<uint32_t>(kernel_names_.size()));
  if (added) kernel_names_.push_back(kernel);
  return it->second;
}

uint64_t Dispatcher::class_of(uint32_t kernel, int64_t size) {
  // Sizes within a factor of two cost about the same: the class is the size's bit width.
  const int size_class = size <= 0 ? 0 : std::bit_width(static_cast<uint64_t>(size));
  return (uint64_t{kernel} << 8) | static_cast<uint64_t>(size_class);
}

bool Dispatcher::can_run(const Worker& w, const Group& g) {
  return g.kernel == kAnyKernel || w.offers_all ||
         (g.kernel < w.kernels.size() && w.kernels[g.kernel]);
}

double Dispatcher::estimate(const Worker& w, uint64_t cls) const {
  auto it = w.estimates.find(cls);
  return it != w.estimates.end() && it->second.samples > 0 ? it->second.ms : -1;
}

double Dispatcher::prior(uint64_t cls, const Worker* w) const {
  // The best time any worker has for the class, scaled by how much slower (or faster) `w` is
  // than that worker on the classes both have timed: a CPU worker that is 30x slower on the
  // kernels it shares with a GPU worker is not assumed as fast as the GPU on a new one.
  double best = -1;
  const Worker* by = nullptr;
  for (const auto& [id, o] : workers_) {
    const double e = estimate(o, cls);
    if (e > 0 && (best < 0 || e < best)) {
      best = e;
      by = &o;
    }
  }
  if (best < 0 || w == nullptr || by == w) return best;
  double log_ratio = 0;
  int shared = 0;
  for (const auto& [c, mine] : w->estimates) {
    const double theirs = estimate(*by, c);
    if (mine.samples == 0 || theirs <= 0 || mine.ms <= 0) continue;
    log_ratio += std::log(mine.ms / theirs);
    ++shared;
  }
  return shared == 0 ? best : best * std::exp(log_ratio / shared);
}

Dispatcher::Worker* Dispatcher::holder(uint32_t slot) {
  if (slot == last_slot_) return last_worker_;  // acks come in runs of one worker's tasks
  auto w = by_slot_.find(slot);
  if (w == by_slot_.end()) return nullptr;
  last_slot_ = slot;
  last_worker_ = &w->second->second;
  return last_worker_;
}

void Dispatcher::hold(Worker& w, Entry& e, const Group& g, int64_t now) {
  double cost = estimate(w, g.cls);
  bool exploring = false;
  if (cost <= 0) {
    const double p = prior(g.cls, &w);
    cost = p > 0 ? p : kUnknownTaskMs;
    exploring = true;
    ++w.exploring[g.cls];
  }
  e.state = State::kAssigned;
  e.slot = w.slot;
  e.since_ns = now;
  e.cost_ms = static_cast<float>(exploring ? -cost : cost);  // negative: an exploration
  w.backlog_ms += cost;
  ++w.held;
}

void Dispatcher::release_backup(Entry& e) {
  if (e.backup_slot == 0) return;
  if (Worker* w = holder(e.backup_slot)) {
    w->backlog_ms = std::max(0.0, w->backlog_ms - e.backup_cost_ms);
    if (--w->held == 0) w->draining = w->isolated = false;
  }
  e.backup_slot = 0;
  e.backup_cost_ms = 0;
}

void Dispatcher::release(Entry& e) {
  if (e.state != State::kAssigned) return;
  release_backup(e);
  Worker* w = holder(e.slot);
  if (w == nullptr) return;
  const double cost = std::fabs(e.cost_ms);
  w->backlog_ms = std::max(0.0, w->backlog_ms - cost);
  w->completed_ms = std::max(0.0, w->completed_ms - cost);
  // Explorations are counted until the class's first timing arrives (on_timings) or the
  // worker holds nothing.
  if (--w->held == 0) {
    w->draining = w->isolated = false;
    w->exploring.clear();  // nothing held: nothing being explored
    w->backlog_ms = w->completed_ms = 0;  // no drift between estimates and what ran
  }
}

void Dispatcher::requeue(Job& job, uint64_t task_id, Entry& e) {
  e.state = State::kQueued;
  Group& g = job.group_of(task_id);
  if (e.attempt >= job.max_attempts && job.max_attempts > 1) {
    g.last_chance.push_back(task_id);
  } else {
    g.requeued.push_back(task_id);
  }
}

Dispatcher::Dispatcher(DispatchPolicy policy, const Clock& clock)
    : policy_(policy), clock_(clock) {}

void Dispatcher::add_job(const JobShape& shape) {
  Job job;
  job.id = shape.id;
  job.priority = shape.priority;
  job.max_attempts = shape.max_attempts > 0 ? shape.max_attempts : policy_.max_attempts;
  job.min_workers = shape.min_workers;
  job.done = shape.done;
  uint64_t first = 0;
  for (const auto& e : shape.entries) {
    if (e.count == 0) continue;
    Group g;
    g.kernel = intern(e.kernel);
    g.cls = class_of(g.kernel, e.size);
    g.first = g.next_fresh = first;
    g.end = first + e.count;
    g.unissued = e.count - count_in(job.done, g.first, g.end);
    g.task_bytes = e.task_bytes;
    first = g.end;
    job.groups.push_back(std::move(g));
  }
  job.total = first;
  job.acked = std::min(job.done.size(), job.total);
  job.failed = shape.failed;
  if (job.groups.empty()) job.groups.push_back(Group{});  // an empty job: done at once
  jobs_.insert_or_assign(shape.id, std::move(job));
  replan_ = true;
}

void Dispatcher::add_job(uint64_t job_id, uint64_t total, int32_t priority,
                         uint32_t max_attempts, uint64_t task_bytes) {
  JobShape shape;
  shape.id = job_id;
  shape.priority = priority;
  shape.max_attempts = max_attempts;
  shape.entries = {{"", total, task_bytes, 0}};
  add_job(shape);
}

void Dispatcher::remove_job(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  for (auto& [id, e] : it->second.open) release(e);
  jobs_.erase(it);
  replan_ = true;
}

bool Dispatcher::job_done(uint64_t job_id) const {
  auto it = jobs_.find(job_id);
  return it != jobs_.end() && it->second.acked == it->second.total;
}
uint64_t Dispatcher::job_failed(uint64_t job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.failed;
}
uint64_t Dispatcher::job_acked(uint64_t job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.acked;
}

size_t Dispatcher::unresolved() const {
  size_t n = 0;
  for (const auto& [id, job] : jobs_) n += job.open.size();
  return n;
}

bool Dispatcher::min_workers_met(const Job& job) const {
  if (job.min_workers == 0) return true;
  size_t live = 0;
  for (const auto& [id, w] : workers_) live += w.leaving ? 0 : 1;
  return live >= job.min_workers;
}

// ------------------------------------------------------------------ workers

std::vector<GiveUp> Dispatcher::on_hello(const std::string& worker, const v1::WorkerInfo& info,
                                         uint32_t credit) {
  std::vector<GiveUp> give_ups;
  auto it = workers_.find(worker);
  if (it == workers_.end()) {
    Worker w;
    w.slot = next_slot_++;
    it = workers_.emplace(worker, std::move(w)).first;
    by_slot_[it->second.slot] = it;
  }
  // The same process (routing ids are per process) may register again, e.g. after a
  // partition: it still holds its tasks, so they stay leased to it; only credit restarts.
  Worker& w = it->second;
  w.info = info;
  // Reports and logs name workers by id: a second worker with the id of a connected one gets
  // "id~2" (or ~3, ...); the worker takes that name (Welcome) and registers with it after.
  w.info.set_id(unique_name(worker, info.id()));
  w.credit = credit;
  w.leaving = false;
  w.last_seen_ns = clock_.steady_ns();
  w.slots = info.slots();
  w.offers_all = info.kernels().empty();
  w.kernels.assign(kernel_names_.size(), false);
  for (const auto& k : info.kernels()) {
    if (k.empty() || k.size() > 64) continue;
    const uint32_t id = intern(k);
    if (id >= w.kernels.size()) w.kernels.resize(id + 1, false);
    w.kernels[id] = true;
  }
  replan_ = true;
  return give_ups;
}

std::string Dispatcher::unique_name(const std::string& worker, const std::string& id) const {
  auto taken = [&](const std::string& name) {
    for (const auto& [other, w] : workers_) {
      if (other != worker && w.info.id() == name) return true;
    }
    return false;
  };
  if (!taken(id)) return id;
  for (uint32_t n = 2;; ++n) {
    const std::string suffix = fmt::format("~{}", n);
    size_t keep = std::min(id.size(), kMaxWorkerIdBytes - suffix.size());  // ids stay bounded
    while (keep > 0 && keep < id.size() && (static_cast<unsigned char>(id[keep]) & 0xC0) == 0x80) {
      --keep;  // not inside a UTF-8 character
    }
    std::string name = id.substr(0, keep) + suffix;
    if (!taken(name)) return name;
  }
}

const std::string& Dispatcher::worker_name(const std::string& worker) const {
  static const std::string none;
  auto it = workers_.find(worker);
  return it == workers_.end() ? none : it->second.info.id();
}

bool Dispatcher::offered(const std::string& kernel) const {
  auto k = kernel_ids_.find(kernel);
  for (const auto& [id, w] : workers_) {
    if (w.leaving) continue;
    if (w.offers_all || kernel.empty()) return true;
    if (k != kernel_ids_.end() && k->second < w.kernels.size() && w.kernels[k->second]) return true;
  }
  return false;
}

std::string Dispatcher::waiting_reason(uint64_t job_id) const {
  auto j = jobs_.find(job_id);
  if (j == jobs_.end()) return "";
  const Job& job = j->second;
  bool work = false;
  for (const auto& g : job.groups) work |= g.has_work() || !g.last_chance.empty();
  if (!work) return "";
  size_t live = 0;
  for (const auto& [id, w] : workers_) live += w.leaving ? 0 : 1;
  if (live < job.min_workers) {
    return fmt::format("waiting for {} workers ({} connected)", job.min_workers, live);
  }
  if (live == 0) return "no worker connected";
  for (const auto& g : job.groups) {
    if ((g.has_work() || !g.last_chance.empty()) && !offered(kernel_names_[g.kernel])) {
      return fmt::format("no connected worker offers kernel '{}'", kernel_names_[g.kernel]);
    }
  }
  for (const auto& [id, other] : jobs_) {
    if (other.priority <= job.priority || other.open.empty()) continue;
    if (job.open.empty()) return "workers busy with higher-priority jobs";
  }
  return "";
}

bool Dispatcher::on_credit(const std::string& worker, uint32_t credit) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return false;
  it->second.credit += credit;
  it->second.last_seen_ns = clock_.steady_ns();
  return true;
}

bool Dispatcher::on_heartbeat(const std::string& worker) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return false;
  it->second.last_seen_ns = clock_.steady_ns();
  return true;
}

bool Dispatcher::on_timings(const std::string& worker, const std::vector<Timing>& timings) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return false;
  Worker& w = it->second;
  for (const auto& t : timings) {
    if (t.count == 0 || t.kernel.size() > 64) continue;
    auto k = kernel_ids_.find(t.kernel);
    if (k == kernel_ids_.end()) continue;  // a kernel no job of ours runs
    const uint64_t cls = class_of(k->second, t.size);
    const double sample = static_cast<double>(t.busy_ns) / t.count * 1e-6;
    if (!std::isfinite(sample) || sample < 0 || sample > 86'400'000.0) continue;
    Estimate& e = w.estimates[cls];
    // An average weighted towards recent tasks: machines speed up (caches) and slow down
    // (thermal limits, neighbours); a batch of many tasks counts more than one.
    const double weight = std::min(0.5, 0.1 * t.count);
    e.ms = e.samples == 0 ? sample : (1 - weight) * e.ms + weight * sample;
    e.samples += t.count;
    // Done, though not acknowledged yet: its slots are free for what comes next.
    w.completed_ms = std::min(w.backlog_ms, w.completed_ms + static_cast<double>(t.busy_ns) * 1e-6);
    if (auto x = w.exploring.find(cls); x != w.exploring.end()) {
      w.exploring.erase(x);  // known now: the plan takes over
      replan_ = true;
    }
  }
  return true;
}

double Dispatcher::estimate_ms(const std::string& worker, const std::string& kernel,
                               int64_t size) const {
  auto it = workers_.find(worker);
  auto k = kernel_ids_.find(kernel);
  if (it == workers_.end() || k == kernel_ids_.end()) return 0;
  const double e = estimate(it->second, class_of(k->second, size));
  return e > 0 ? e : 0;
}

void Dispatcher::on_goodbye(const std::string& worker, const v1::Goodbye& goodbye) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  Worker& w = it->second;
  w.leaving = true;
  w.credit = 0;
  w.last_seen_ns = clock_.steady_ns();
  replan_ = true;
  for (const auto& ref : goodbye.returned()) {
    auto j = jobs_.find(ref.job_id());
    if (j != jobs_.end()) give_back(w, j->second, ref.task_id());
  }
}

void Dispatcher::give_back(Worker& w, Job& job, uint64_t task_id) {
  auto e = job.open.find(task_id);
  if (e == job.open.end() || e->second.state != State::kAssigned) return;
  Entry& entry = e->second;
  if (entry.backup_slot == w.slot) {
    release_backup(entry);  // its copy: the other holder still runs the task
  } else if (entry.slot == w.slot) {
    if (entry.backup_slot != 0) {
      // The copy carries on as the task.
      Worker* b = holder(entry.backup_slot);
      const uint32_t backup = entry.backup_slot;
      const float cost = entry.backup_cost_ms;
      entry.backup_slot = 0;
      entry.backup_cost_ms = 0;
      release(entry);
      if (b != nullptr) {
        entry.state = State::kAssigned;
        entry.slot = backup;
        entry.cost_ms = cost;
      } else {
        requeue(job, task_id, entry);
      }
    } else {
      release(entry);
      requeue(job, task_id, entry);  // not the task's fault: same attempt again
    }
  }
}

std::map<uint64_t, std::vector<uint64_t>> Dispatcher::leases_of(const std::string& worker) const {
  std::map<uint64_t, std::vector<uint64_t>> out;
  auto w = workers_.find(worker);
  if (w == workers_.end() || w->second.held == 0) return out;
  const uint32_t slot = w->second.slot;
  for (const auto& [jid, job] : jobs_) {
    for (const auto& [tid, e] : job.open) {
      if (e.state == State::kAssigned && (e.slot == slot || e.backup_slot == slot)) {
        out[jid].push_back(tid);
      }
    }
  }
  for (auto& [jid, ids] : out) std::sort(ids.begin(), ids.end());
  return out;
}

void Dispatcher::not_held(const std::string& worker, uint64_t job_id,
                          const std::vector<uint64_t>& ids) {
  auto w = workers_.find(worker);
  auto j = jobs_.find(job_id);
  if (w == workers_.end() || j == jobs_.end()) return;
  for (uint64_t id : ids) give_back(w->second, j->second, id);
  replan_ = true;
}

std::vector<GiveUp> Dispatcher::on_unreachable(const std::string& worker) {
  // A worker that said goodbye closes its connection right after its last results: give the
  // sink's acks for them until the usual timeout before re-issuing anything.
  auto it = workers_.find(worker);
  if (it == workers_.end() || it->second.leaving) return {};
  log::warn("worker {} lost: its connection closed, re-issuing its {} tasks", it->second.info.id(),
            it->second.held);
  ++workers_lost_;
  return drop_worker(worker, "connection closed");
}

std::vector<Dispatcher::WorkerView> Dispatcher::worker_table() const {
  std::vector<WorkerView> out;
  std::unordered_map<uint32_t, size_t> by_slot;
  const int64_t now = clock_.steady_ns();
  for (const auto& [id, w] : workers_) {
    by_slot[w.slot] = out.size();
    WorkerView v;
    v.info = w.info;
    v.held = w.held;
    v.idle_s = static_cast<double>(now - w.last_seen_ns) * 1e-9;
    v.leaving = w.leaving;
    out.push_back(std::move(v));
  }
  for (const auto& [job_id, job] : jobs_) {
    for (const auto& [task_id, e] : job.open) {
      if (e.state != State::kAssigned) continue;
      if (auto it = by_slot.find(e.slot); it != by_slot.end()) ++out[it->second].held_by_job[job_id];
    }
  }
  return out;
}

std::vector<Dispatcher::WorkerSummary> Dispatcher::worker_summaries() const {
  std::vector<WorkerSummary> out;
  out.reserve(workers_.size());
  for (const auto& [id, w] : workers_) {
    out.push_back({id, &w.info, w.credit, w.held, w.last_seen_ns, w.leaving});
  }
  return out;
}

uint64_t Dispatcher::job_in_flight(uint64_t job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.open.size();
}

std::vector<std::string> Dispatcher::worker_ids() const {
  std::vector<std::string> ids;
  ids.reserve(workers_.size());
  for (const auto& [id, w] : workers_) ids.push_back(id);
  return ids;
}

void Dispatcher::lose(Job& job, uint64_t task_id, Entry& e, const std::string& why,
                      std::vector<GiveUp>& give_ups) {
  if (e.attempt >= job.max_attempts) {
    e.state = State::kGivenUp;
    give_ups.push_back(GiveUp{
        Issue{job.id, task_id, e.attempt},
        fmt::format("{} on attempt {} of {}; giving up", why, e.attempt, job.max_attempts)});
    return;
  }
  ++e.attempt;
  requeue(job, task_id, e);
  ++reissued_;
}

std::vector<GiveUp> Dispatcher::drop_worker(const std::string& worker, const std::string& why) {
  std::vector<GiveUp> give_ups;
  auto it = workers_.find(worker);
  if (it == workers_.end()) return give_ups;
  const uint32_t slot = it->second.slot;
  const std::string name = it->second.info.id();
  if (it->second.held > 0) {
    for (auto& [jid, job] : jobs_) {
      for (auto& [tid, e] : job.open) {
        if (e.state != State::kAssigned) continue;
        if (e.backup_slot == slot) {
          release_backup(e);  // only its copy was lost
        } else if (e.slot == slot && e.backup_slot != 0) {
          // The copy on another worker carries on as the task: nothing is lost.
          const uint32_t backup = e.backup_slot;
          const float cost = e.backup_cost_ms;
          e.backup_slot = 0;
          e.backup_cost_ms = 0;
          e.slot = backup;
          e.cost_ms = cost;
          e.since_ns = clock_.steady_ns();
        } else if (e.slot == slot) {
          lose(job, tid, e, fmt::format("worker {} lost ({})", name, why), give_ups);
        }
      }
    }
  }
  by_slot_.erase(slot);
  if (last_slot_ == slot) last_slot_ = 0, last_worker_ = nullptr;
  workers_.erase(it);
  replan_ = true;
  return give_ups;
}

std::vector<GiveUp> Dispatcher::on_ack(const v1::Ack& ack) {
  std::vector<GiveUp> give_ups;
  auto j = jobs_.find(ack.job_id());
  if (j == jobs_.end()) return give_ups;
  Job& job = j->second;
  for (uint64_t id : ack.done()) {
    auto e = job.open.find(id);
    if (e == job.open.end()) {
      // A duplicate ack, or (restarts) a task this dispatcher has not issued yet that a worker
      // of the ventilator's previous life finished: not to be issued now.
      if (id < job.total) {
        Group& g = job.group_of(id);
        if (id >= g.next_fresh && g.unissued > 0 && job.done.insert(id)) {
          ++job.acked;
          --g.unissued;
        }
      }
      continue;
    }
    if (e->second.state == State::kAssigned && e->second.backup_slot != 0) {
      // Two copies ran: whichever is still going is not needed any more.
      for (uint32_t s : {e->second.slot, e->second.backup_slot}) {
        auto w = by_slot_.find(s);
        if (w != by_slot_.end()) cancels_.push_back(Cancel{w->second->first, job.id, id});
      }
    }
    release(e->second);
    job.open.erase(e);
    ++job.acked;
  }
  for (uint64_t id : ack.failed()) {
    (void)id;
    ++job.failed;
  }
  for (uint64_t id : ack.retry()) {
    auto e = job.open.find(id);
    if (e == job.open.end() || e->second.state != State::kAssigned) continue;
    if (e->second.backup_slot != 0) {
      // One copy failed; the other is not trusted to do better: both go, the task retries.
      for (uint32_t s : {e->second.slot, e->second.backup_slot}) {
        auto w = by_slot_.find(s);
        if (w != by_slot_.end()) cancels_.push_back(Cancel{w->second->first, job.id, id});
      }
    }
    release(e->second);
    lose(job, id, e->second, "the sink asked for another attempt", give_ups);
  }
  return give_ups;
}

std::vector<Cancel> Dispatcher::take_cancels() { return std::exchange(cancels_, {}); }

// ------------------------------------------------------------------ the scheduler

void Dispatcher::plan(int64_t now) {
  if (!replan_ && now - planned_at_ns_ < kReplanNs) return;
  planned_at_ns_ = now;
  replan_ = false;
  plans_.clear();
  std::vector<Worker*> pool;
  for (auto& [id, w] : workers_) {
    if (!w.leaving) pool.push_back(&w);
  }
  if (pool.empty()) return;
  std::map<int32_t, std::vector<std::pair<Job*, size_t>>> levels;
  for (auto& [id, job] : jobs_) {
    if (!min_workers_met(job)) continue;
    for (size_t g = 0; g < job.groups.size(); ++g) {
      if (job.groups[g].pending() > 0) levels[job.priority].emplace_back(&job, g);
    }
  }
  for (auto& [priority, groups] : levels) {
    std::vector<std::vector<double>> cost(pool.size(), std::vector<double>(groups.size()));
    std::vector<double> backlog(pool.size()), count(groups.size());
    for (size_t w = 0; w < pool.size(); ++w) {
      backlog[w] = pool[w]->queue_wall_ms();
      for (size_t g = 0; g < groups.size(); ++g) {
        const Group& grp = groups[g].first->groups[groups[g].second];
        if (!can_run(*pool[w], grp)) {
          cost[w][g] = kCannotRun;
          continue;
        }
        double e = estimate(*pool[w], grp.cls);
        if (e <= 0) e = prior(grp.cls, pool[w]);
        if (e <= 0) e = kUnknownTaskMs;
        cost[w][g] = e / std::max<uint32_t>(pool[w]->slots, 1);
      }
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      count[g] = static_cast<double>(groups[g].first->groups[groups[g].second].pending());
    }
    const SplitPlan split = plan_split(cost, backlog, count);
    if (!split.feasible) continue;  // a kernel nobody offers: no plan, no guard
    LevelPlan& lp = plans_[priority];
    lp.end_ms = split.makespan;
    for (size_t w = 0; w < pool.size(); ++w) {
      for (size_t g = 0; g < groups.size(); ++g) {
        if (split.tasks[w][g] <= 0 || count[g] <= 0) continue;
        lp.share[{pool[w]->slot, groups[g].first->id, groups[g].second}] =
            split.tasks[w][g] / count[g];
      }
    }
  }
}

bool Dispatcher::leaves_tail(const Worker& w, const Group& g, double e, const LevelPlan* lp,
                             double since_plan_ms) const {
  if (!lp || w.slots == 0 || e <= 0) return false;
  const double remaining = std::max(0.0, lp->end_ms - since_plan_ms);
  const double finish = w.queue_wall_ms() + e;
  if (finish <= remaining * kPlanSlack + kPlanSlackMs) return false;
  double sooner = std::numeric_limits<double>::infinity();
  for (const auto& [oid, o] : workers_) {
    if (&o == &w || o.leaving || !can_run(o, g)) continue;
    const double oe = estimate(o, g.cls);
    if (oe > 0) sooner = std::min(sooner, o.queue_wall_ms() + oe);
  }
  return sooner < finish;
}

bool Dispatcher::queue_full(const Worker& w, double est) const {
  return w.slots > 0 && est > 0 &&
         w.queue_wall_ms() > est + std::max(policy_.queue_ms, kQueuedTasks * est);
}

std::pair<Dispatcher::Job*, Dispatcher::Group*> Dispatcher::pick(Worker& w, int64_t now,
                                                                 Sole* sole) {
  if (sole) sole->group = nullptr;
  const double since_plan_ms = static_cast<double>(now - planned_at_ns_) * 1e-6;
  // Priority levels from the highest: a lower one only gets what the higher ones leave.
  int64_t level = INT64_MAX;
  bool higher_candidates = false;  // groups of a higher level this worker could run
  for (;;) {
    size_t candidates = 0;
    // The next level down that has work.
    int64_t next = INT64_MIN;
    for (const auto& [id, job] : jobs_) {
      if (job.priority < level && job.priority > next) next = job.priority;
    }
    if (next == INT64_MIN) return {nullptr, nullptr};
    level = next;
    const auto plan_it = plans_.find(static_cast<int32_t>(level));
    const LevelPlan* lp = plan_it == plans_.end() ? nullptr : &plan_it->second;
    Job* best_job = nullptr;
    size_t best_g = 0;
    std::tuple<int, double, size_t, size_t> best_key{};
    // Classes of this level the worker has not timed. One task of each finds out; only a
    // worker with nothing it knows to do spreads all its slots over them (a fresh job).
    uint32_t unknown_classes = 0;
    bool known_work = false;
    {
      std::vector<uint64_t> seen;
      for (const auto& [id, job] : jobs_) {
        if (job.priority != level) continue;
        for (const auto& g : job.groups) {
          if (!g.has_work() || !can_run(w, g)) continue;
          if (estimate(w, g.cls) > 0) {
            known_work = true;
          } else if (std::find(seen.begin(), seen.end(), g.cls) == seen.end()) {
            seen.push_back(g.cls);
          }
        }
      }
      unknown_classes = static_cast<uint32_t>(std::max<size_t>(1, seen.size()));
    }
    int best_rank = 0;
    for (auto& [id, job] : jobs_) {
      if (job.priority != level || !min_workers_met(job)) continue;
      const bool window_full = job.open.size() >= policy_.window;
      for (size_t gi = 0; gi < job.groups.size(); ++gi) {
        Group& g = job.groups[gi];
        if (!can_run(w, g) || !g.has_work()) continue;
        if (window_full && g.requeued.empty()) continue;  // only re-issues fit a full window
        ++candidates;
        const double est = estimate(w, g.cls);
        double share = 0;
        if (lp) {
          auto s = lp->share.find({w.slot, job.id, gi});
          if (s != lp->share.end()) share = s->second;
        }
        int rank;
        if (w.slots == 0) {
          rank = 1;  // a worker that does not say its slots: credit alone rules
        } else {
          double e = est;
          if (e <= 0) {
            // Not timed on this worker yet: it finds out with one real task of the class
            // (several classes at once, at most one task per slot in all), before anything
            // else: guesses from other workers are only the plan's stopgap.
            uint32_t exploring = 0;
            for (const auto& [cls, n] : w.exploring) exploring += n;
            auto mine = w.exploring.find(g.cls);
            const uint32_t per_class =
                known_work ? 1 : std::max<uint32_t>(1, w.slots / unknown_classes);
            if (exploring >= w.slots ||
                (mine != w.exploring.end() && mine->second >= per_class)) {
              continue;
            }
            e = -1;
          }
          if (e <= 0) {
            rank = 0;
          } else {
            // Not a task it would finish after the plan's end when another worker would
            // finish it sooner (dmda's rule): the slow worker leaves the tail to the fast one.
            if (leaves_tail(w, g, e, lp, since_plan_ms)) continue;
            rank = share > 0 ? 1 : 2;
          }
        }
        // Order: explorations, then the groups the plan gives this worker (where it matters
        // most first), then the others; among equals the job with the fewest tasks out.
        const std::tuple<int, double, size_t, size_t> key{rank, -std::round(share * 8),
                                                          job.open.size(), gi};
        if (!best_job || key < best_key) {
          best_job = &job;
          best_g = gi;
          best_key = key;
          best_rank = rank;
        }
      }
    }
    if (best_job) {
      // Queued work is bounded by time, not by the credit the worker offers: a task per slot
      // and a little more (policy_.queue_ms of small tasks, a quarter of a long one). A worker
      // full for the group it should run next waits: it does not take a worse one instead.
      Group& g = best_job->groups[best_g];
      const double est = estimate(w, g.cls);
      if (queue_full(w, est)) return {nullptr, nullptr};
      // The only group this worker could take, and not an exploration: until it runs out or
      // the guards say stop, the next task comes from it too (see assign).
      if (sole && candidates == 1 && !higher_candidates && best_rank != 0) {
        *sole = Sole{best_job, &g, est, lp, since_plan_ms};
      }
      return {best_job, &g};
    }
    higher_candidates |= candidates > 0;
  }
}

std::optional<uint64_t> Dispatcher::next_fresh(Job& job, Group& g) {
  while (g.next_fresh < g.end) {
    const uint64_t id = job.done.size() == 0 ? g.next_fresh : job.done.next_missing(g.next_fresh);
    if (id >= g.end) break;
    g.next_fresh = id + 1;
    --g.unissued;
    return id;
  }
  g.next_fresh = g.end;
  g.unissued = 0;
  return std::nullopt;
}

std::vector<Assignment> Dispatcher::assign() {
  std::vector<Assignment> out;
  const int64_t now = clock_.steady_ns();
  plan(now);
  // Most credit first: the idlest worker gets work first.
  std::vector<std::pair<int64_t, std::map<std::string, Worker>::iterator>> order;
  for (auto it = workers_.begin(); it != workers_.end(); ++it) {
    if (it->second.credit > 0 && !it->second.leaving) order.emplace_back(it->second.credit, it);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  // A last attempt needs an idle worker that can run it: reserve the least busy one if none
  // is idle.
  bool last_chance_waiting = false;
  for (auto& [jid, job] : jobs_) last_chance_waiting |= job.has_last_chance();
  if (last_chance_waiting) {
    auto runs_one = [&](const Worker& w) {
      for (auto& [jid, job] : jobs_) {
        for (const auto& g : job.groups) {
          if (!g.last_chance.empty() && can_run(w, g)) return true;
        }
      }
      return false;
    };
    bool reserved = false;
    Worker* least = nullptr;
    for (auto& [id, w] : workers_) {
      if (w.leaving || w.isolated || !runs_one(w)) continue;
      reserved |= w.draining || w.held == 0;
      if (!least || w.held < least->held) least = &w;
    }
    if (!reserved && least) least->draining = true;
  }
  for (auto& [credit, it] : order) {
    Worker& w = it->second;
    if (w.isolated) continue;
    if (last_chance_waiting && w.held == 0 && assign_last_chance(w, it->first, now, out)) continue;
    if (w.draining) continue;
    Assignment a;
    a.worker = it->first;
    const int64_t want = std::min<int64_t>(w.credit, policy_.max_batch);
    uint64_t bytes = 0;  // payload bytes in this message so far
    Sole sole;
    while (static_cast<int64_t>(a.tasks.size()) < want) {
      Job* job = sole.job;
      Group* group = sole.group;
      // The only group pick() found stays the choice while the checks pick() would make of
      // it still pass (no scan of every job per task); else pick() again.
      if (!group || !group->has_work() || job->open.size() >= policy_.window ||
          queue_full(w, sole.est) || leaves_tail(w, *group, sole.est, sole.lp, sole.since_ms)) {
        std::tie(job, group) = pick(w, now, &sole);
      }
      if (!job) break;
      if (!a.tasks.empty() && bytes + group->task_bytes > policy_.max_batch_bytes) break;
      uint64_t id;
      Entry* e;
      if (!group->requeued.empty()) {
        id = group->requeued.front();
        group->requeued.pop_front();
        auto f = job->open.find(id);
        if (f == job->open.end() || f->second.state != State::kQueued) continue;  // stale
        e = &f->second;
      } else {
        const auto fresh = next_fresh(*job, *group);
        if (!fresh) continue;
        id = *fresh;
        e = &job->open.emplace(id, Entry{State::kQueued, 1, 0, 0, 0, 0, 0}).first->second;
      }
      bytes += group->task_bytes;
      hold(w, *e, *group, now);
      a.tasks.push_back(Issue{job->id, id, e->attempt});
    }
    if (a.tasks.empty()) {
      if (policy_.backups && w.held < w.slots) (void)assign_backup(w, it->first, now, out);
      continue;  // nothing this worker should run now; others may have some
    }
    w.credit -= static_cast<int64_t>(a.tasks.size());
    out.push_back(std::move(a));
  }
  return out;
}

bool Dispatcher::assign_last_chance(Worker& w, const std::string& id, int64_t now,
                                    std::vector<Assignment>& out) {
  for (auto& [jid, job] : jobs_) {
    for (auto& g : job.groups) {
      while (can_run(w, g) && !g.last_chance.empty()) {
        const uint64_t tid = g.last_chance.front();
        g.last_chance.pop_front();
        auto f = job.open.find(tid);
        if (f == job.open.end() || f->second.state != State::kQueued) continue;  // stale
        hold(w, f->second, g, now);
        w.isolated = true;
        w.draining = false;
        --w.credit;
        out.push_back(Assignment{id, {Issue{job.id, tid, f->second.attempt}}});
        return true;
      }
    }
  }
  return false;
}

bool Dispatcher::assign_backup(Worker& w, const std::string& id, int64_t now,
                               std::vector<Assignment>& out) {
  // Only at the end: nothing left that this worker could run instead.
  for (const auto& [jid, job] : jobs_) {
    for (const auto& g : job.groups) {
      if (can_run(w, g) && (g.has_work() || !g.last_chance.empty())) return false;
    }
  }
  Worker* self = &w;
  Job* best_job = nullptr;
  uint64_t best_task = 0;
  int64_t oldest = INT64_MAX;
  for (auto& [jid, job] : jobs_) {
    if (job.open.size() > 4096) continue;  // not the end of this job: nothing to gain yet
    for (auto& [tid, e] : job.open) {
      // A copy is an attempt (it may crash its worker as the first did), and not the last
      // one, which runs alone.
      if (e.state != State::kAssigned || e.backup_slot != 0 || e.slot == w.slot ||
          e.attempt + 1 >= job.max_attempts || e.since_ns >= oldest) {
        continue;
      }
      const Group& g = job.group_of(tid);
      if (!can_run(w, g)) continue;
      const double mine = estimate(w, g.cls);
      Worker* h = holder(e.slot);
      if (mine <= 0 || h == nullptr) continue;
      const double theirs = estimate(*h, g.cls);
      if (theirs <= 0) continue;
      // It would finish sooner here, by a margin: the holder's remaining time against ours;
      // or the holder is overdue (twice its estimate): something is wrong over there.
      const double elapsed = static_cast<double>(now - e.since_ns) * 1e-6;
      const bool slower = theirs - elapsed > mine * kBackupGain + kBackupSlackMs;
      const bool overdue = elapsed > kOverdueFactor * theirs + mine + kOverdueSlackMs;
      if (!slower && !overdue) continue;
      best_job = &job;
      best_task = tid;
      oldest = e.since_ns;
    }
  }
  if (!best_job) return false;
  Entry& e = best_job->open.at(best_task);
  const double cost = estimate(*self, best_job->group_of(best_task).cls);
  ++e.attempt;
  e.backup_slot = w.slot;
  e.backup_cost_ms = static_cast<float>(cost);
  w.backlog_ms += cost;
  ++w.held;
  --w.credit;
  ++backups_;
  out.push_back(Assignment{id, {Issue{best_job->id, best_task, e.attempt, /*backup=*/true}}});
  return true;
}

void Dispatcher::unsend(const Assignment& a) {
  auto it = workers_.find(a.worker);
  // Back to the front of the queue in their original order.
  for (auto t_it = a.tasks.rbegin(); t_it != a.tasks.rend(); ++t_it) {
    const Issue& t = *t_it;
    auto j = jobs_.find(t.job_id);
    if (j == jobs_.end()) continue;
    auto e = j->second.open.find(t.task_id);
    if (e == j->second.open.end() || e->second.state != State::kAssigned) continue;
    if (it != workers_.end()) ++it->second.credit;
    if (t.backup) {
      if (it != workers_.end() && e->second.backup_slot == it->second.slot) release_backup(e->second);
      continue;
    }
    release(e->second);
    e->second.state = State::kQueued;
    Group& g = j->second.group_of(t.task_id);
    auto& queue = t.attempt >= j->second.max_attempts && j->second.max_attempts > 1
                      ? g.last_chance
                      : g.requeued;
    queue.push_front(t.task_id);
  }
}

std::vector<GiveUp> Dispatcher::expire() {
  std::vector<GiveUp> give_ups;
  const int64_t now = clock_.steady_ns();
  std::vector<std::string> lost;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_seen_ns > ms_to_ns(policy_.worker_timeout_ms)) lost.push_back(id);
  }
  for (const auto& id : lost) {
    const auto& w = workers_.at(id);
    log::warn("worker {} lost: silent for {:.1f} s, re-issuing its {} tasks",
              printable(w.info.id()), static_cast<double>(now - w.last_seen_ns) * 1e-9, w.held);
    ++workers_lost_;
    auto g = drop_worker(id, fmt::format("silent for {:.1f} s",
                                         static_cast<double>(policy_.worker_timeout_ms) * 1e-3));
    give_ups.insert(give_ups.end(), g.begin(), g.end());
  }
  if (policy_.task_timeout_ms > 0) {
    for (auto& [jid, job] : jobs_) {
      for (auto& [tid, e] : job.open) {
        if (e.state != State::kAssigned || now - e.since_ns <= ms_to_ns(policy_.task_timeout_ms)) {
          continue;
        }
        release(e);
        lose(job, tid, e,
             fmt::format("task timed out after {:.1f} s",
                         static_cast<double>(policy_.task_timeout_ms) * 1e-3),
             give_ups);
      }
    }
  }
  return give_ups;
}

}  // namespace taskfarm::ventilator
