#include "ventilator/dispatcher.h"

#include <fmt/core.h>

#include <algorithm>

#include "common/log.h"

namespace taskfarm::ventilator {

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

bool Dispatcher::can_run(const Worker& w, const Group& g) {
  return g.kernel == kAnyKernel || w.offers_all ||
         (g.kernel < w.kernels.size() && w.kernels[g.kernel]);
}

void Dispatcher::release(const Entry& e) {
  if (e.state != State::kAssigned) return;
  auto w = slot_to_worker_.find(e.slot);
  if (w == slot_to_worker_.end()) return;
  Worker& holder = workers_.at(w->second);
  if (--holder.held == 0) holder.draining = holder.isolated = false;
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

void Dispatcher::skip_done(const Job& job, Group& g) {
  const auto& ranges = job.done->range_map();
  // Cheap in the common case: every acknowledged task was issued before the fresh ones.
  if (ranges.empty() || ranges.rbegin()->second <= g.next_fresh) return;
  g.next_fresh = std::min(g.end, job.done->next_missing(g.next_fresh));
}

Dispatcher::Dispatcher(DispatchPolicy policy, const Clock& clock)
    : policy_(policy), clock_(clock) {}

void Dispatcher::add_job(const JobShape& shape) {
  Job job;
  job.id = shape.id;
  job.priority = shape.priority;
  job.max_attempts = shape.max_attempts > 0 ? shape.max_attempts : policy_.max_attempts;
  uint64_t first = 0;
  for (const auto& e : shape.entries) {
    if (e.count == 0) continue;
    Group g;
    g.kernel = intern(e.kernel);
    g.first = g.next_fresh = first;
    g.end = first + e.count;
    g.task_bytes = e.task_bytes;
    first = g.end;
    job.groups.push_back(std::move(g));
  }
  job.total = first;
  if (job.groups.empty()) job.groups.push_back(Group{});  // an empty job: done at once
  if (shape.done) {
    job.done = shape.done;
  } else {
    job.own_done = std::make_unique<RangeSet>();
    job.done = job.own_done.get();
  }
  for (const auto& [begin, end] : job.done->range_map()) {
    if (begin < job.total) job.acked += std::min(end, job.total) - begin;
  }
  job.failed = shape.failed;
  for (auto& g : job.groups) skip_done(job, g);
  jobs_.insert_or_assign(shape.id, std::move(job));
}

void Dispatcher::add_job(uint64_t job_id, uint64_t total, int32_t priority,
                         uint32_t max_attempts, uint64_t task_bytes) {
  add_job(JobShape{job_id, priority, max_attempts, {{"", total, task_bytes}}});
}

void Dispatcher::remove_job(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  for (auto& [id, e] : it->second.open) release(e);
  jobs_.erase(it);
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

std::vector<GiveUp> Dispatcher::on_hello(const std::string& worker, const v1::WorkerInfo& info,
                                         uint32_t credit) {
  std::vector<GiveUp> give_ups;
  auto it = workers_.find(worker);
  if (it == workers_.end()) {
    Worker w;
    w.slot = next_slot_++;
    slot_to_worker_[w.slot] = worker;
    it = workers_.emplace(worker, std::move(w)).first;
  }
  // The same process (routing ids are per process) may register again, e.g. after a
  // partition: it still holds its tasks, so they stay leased to it; only credit restarts.
  Worker& w = it->second;
  w.info = info;
  w.credit = credit;
  w.leaving = false;
  w.last_seen_ns = clock_.steady_ns();
  w.offers_all = info.kernels().empty();
  w.kernels.assign(kernel_names_.size(), false);
  for (const auto& k : info.kernels()) {
    if (k.empty() || k.size() > 64) continue;
    const uint32_t id = intern(k);
    if (id >= w.kernels.size()) w.kernels.resize(id + 1, false);
    w.kernels[id] = true;
  }
  return give_ups;
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

void Dispatcher::on_goodbye(const std::string& worker, const v1::Goodbye& goodbye) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  Worker& w = it->second;
  w.leaving = true;
  w.credit = 0;
  w.last_seen_ns = clock_.steady_ns();
  for (const auto& ref : goodbye.returned()) {
    auto j = jobs_.find(ref.job_id());
    if (j == jobs_.end()) continue;
    auto e = j->second.open.find(ref.task_id());
    if (e == j->second.open.end() || e->second.state != State::kAssigned ||
        e->second.slot != w.slot) {
      continue;
    }
    release(e->second);
    requeue(j->second, ref.task_id(), e->second);  // never started: same attempt again
  }
}

std::vector<GiveUp> Dispatcher::on_unreachable(const std::string& worker) {
  // A worker that said goodbye closes its connection right after its last results: give the
  // sink's acks for them until the usual timeout before re-issuing anything.
  auto it = workers_.find(worker);
  if (it != workers_.end() && it->second.leaving) return {};
  return drop_worker(worker, "connection closed");
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

std::map<uint64_t, std::vector<uint64_t>> Dispatcher::leases_of(const std::string& worker) const {
  std::map<uint64_t, std::vector<uint64_t>> out;
  auto w = workers_.find(worker);
  if (w == workers_.end() || w->second.held == 0) return out;
  for (const auto& [jid, job] : jobs_) {
    for (const auto& [tid, e] : job.open) {
      if (e.state == State::kAssigned && e.slot == w->second.slot) out[jid].push_back(tid);
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
  for (uint64_t id : ids) {
    auto e = j->second.open.find(id);
    if (e == j->second.open.end() || e->second.state != State::kAssigned ||
        e->second.slot != w->second.slot) {
      continue;
    }
    release(e->second);
    requeue(j->second, id, e->second);  // lost with the sink, not the task's fault: same attempt
  }
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
        if (e.state == State::kAssigned && e.slot == slot) {
          lose(job, tid, e, fmt::format("worker {} lost ({})", name, why), give_ups);
        }
      }
    }
  }
  slot_to_worker_.erase(slot);
  workers_.erase(it);
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
      // A duplicate ack, or a task this dispatcher never issued: one finished by a worker of
      // the ventilator's previous life (restarts). Not to be issued now.
      if (id < job.total && job.done->insert(id)) {
        ++job.acked;
        skip_done(job, job.group_of(id));
      }
      continue;
    }
    release(e->second);
    job.open.erase(e);
    if (job.done->insert(id)) ++job.acked;
  }
  for (uint64_t id : ack.failed()) {
    (void)id;
    ++job.failed;
  }
  for (uint64_t id : ack.retry()) {
    auto e = job.open.find(id);
    if (e == job.open.end() || e->second.state != State::kAssigned) continue;
    release(e->second);
    lose(job, id, e->second, "the sink asked for another attempt", give_ups);
  }
  return give_ups;
}

std::pair<Dispatcher::Job*, Dispatcher::Group*> Dispatcher::pick(const Worker& w) {
  // Highest priority first; among equals, the job with the fewest open tasks (fair share).
  // Only groups whose kernel the worker offers count.
  Job* best = nullptr;
  Group* best_group = nullptr;
  for (auto& [id, job] : jobs_) {
    if (best && (job.priority < best->priority ||
                 (job.priority == best->priority && job.open.size() >= best->open.size()))) {
      continue;
    }
    const bool window_full = job.open.size() >= policy_.window;
    for (auto& g : job.groups) {
      if (!can_run(w, g) || !g.has_work()) continue;
      if (window_full && g.requeued.empty()) continue;  // only re-issues fit in a full window
      best = &job;
      best_group = &g;
      break;
    }
  }
  return {best, best_group};
}

std::vector<Assignment> Dispatcher::assign() {
  std::vector<Assignment> out;
  // Most credit first: the idlest worker gets work first.
  std::vector<std::pair<int64_t, std::map<std::string, Worker>::iterator>> order;
  for (auto it = workers_.begin(); it != workers_.end(); ++it) {
    if (it->second.credit > 0 && !it->second.leaving) order.emplace_back(it->second.credit, it);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  const int64_t now = clock_.steady_ns();
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
    while (static_cast<int64_t>(a.tasks.size()) < want) {
      auto [job, group] = pick(w);
      if (!job) break;
      if (!a.tasks.empty() && bytes + group->task_bytes > policy_.max_batch_bytes) break;
      bytes += group->task_bytes;
      uint64_t id;
      Entry* e;
      if (!group->requeued.empty()) {
        id = group->requeued.front();
        group->requeued.pop_front();
        auto f = job->open.find(id);
        if (f == job->open.end() || f->second.state != State::kQueued) continue;  // stale
        e = &f->second;
      } else {
        id = group->next_fresh++;
        skip_done(*job, *group);
        e = &job->open.emplace(id, Entry{State::kQueued, 1, 0, 0}).first->second;
      }
      e->state = State::kAssigned;
      e->slot = w.slot;
      e->since_ns = now;
      a.tasks.push_back(Issue{job->id, id, e->attempt});
    }
    if (a.tasks.empty()) continue;  // nothing this worker can run; others may have some
    w.credit -= static_cast<int64_t>(a.tasks.size());
    w.held += a.tasks.size();
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
      f->second.state = State::kAssigned;
      f->second.slot = w.slot;
      f->second.since_ns = now;
      w.isolated = true;
      w.draining = false;
      --w.credit;
      ++w.held;
      out.push_back(Assignment{id, {Issue{job.id, tid, f->second.attempt}}});
      return true;
    }
    }
  }
  return false;
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
    release(e->second);
    e->second.state = State::kQueued;
    Group& g = j->second.group_of(t.task_id);
    auto& queue = t.attempt >= j->second.max_attempts && j->second.max_attempts > 1
                      ? g.last_chance
                      : g.requeued;
    queue.push_front(t.task_id);
    if (it != workers_.end()) ++it->second.credit;
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
    log::warn("worker {} lost: silent for {:.1f} s, re-issuing its {} tasks", w.info.id(),
              static_cast<double>(now - w.last_seen_ns) * 1e-9, w.held);
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
