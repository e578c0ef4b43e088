#include "sink/aggregator.h"

#include <fmt/core.h>

#include <algorithm>
#include <iterator>

#include "common/text.h"

namespace taskfarm::sink {

JobAggregator::JobAggregator(const v1::BatchStart& start)
    : job_id_(start.job_id()),
      name_(start.name()),
      total_(start.total()),
      max_attempts_(start.max_attempts() == 0 ? kDefaultMaxAttempts : start.max_attempts()) {}

JobAggregator::WorkerStats& JobAggregator::worker_stats(const v1::WorkerInfo& worker) {
  if (!last_worker_ || last_worker_id_ != worker.id()) {
    auto it = workers_.find(worker.id());
    if (it == workers_.end()) {
      const bool room = workers_.size() < kMaxListedWorkers;
      it = workers_.try_emplace(room ? worker.id() : std::string(kOtherWorkers)).first;
      if (it->second.info.id().empty()) {
        it->second.info = worker;
        if (!room) it->second.info.set_id(std::string(kOtherWorkers));
      }
    }
    last_worker_ = &it->second;  // std::map nodes never move
    last_worker_id_ = worker.id();
  }
  return *last_worker_;
}

JobAggregator::KernelStats& JobAggregator::kernel_stats(const std::string& kernel) {
  if (!last_kernel_ || last_kernel_name_ != kernel) {
    last_kernel_ = &kernels_[kernel];
    last_kernel_name_ = kernel;
  }
  return *last_kernel_;
}

void JobAggregator::touch_worker(const v1::WorkerInfo& worker) {
  if (worker.id().empty()) return;  // the ventilator's give-ups
  WorkerStats& ws = worker_stats(worker);
  if (ws.info.id() == worker.id()) ws.info = worker;  // not the "(other workers)" line
}

Outcome JobAggregator::add(const v1::Result& r, const v1::WorkerInfo& worker,
                           int64_t recv_wall_ns) {
  const uint64_t id = r.task_id();
  if (id >= total_) return Outcome::kInvalid;
  if (final_.contains(id)) {
    ++duplicates_;
    return Outcome::kDuplicate;
  }
  const bool ok = r.status() == v1::STATUS_OK;
  // Busy time from the worker's clock; nonsense timestamps (a hostile peer) count as zero.
  const int64_t busy = r.started_ns() > 0 && r.finished_ns() >= r.started_ns()
                           ? std::min<int64_t>(r.finished_ns() - r.started_ns(), kMaxBusyNs)
                           : 0;
  // Give-ups come from the ventilator, not from a worker (empty id): no worker line for them.
  WorkerStats* ws = worker.id().empty() ? nullptr : &worker_stats(worker);
  if (ws) ws->busy_ns += busy;
  if (!ok && r.retryable() && r.attempt() < max_attempts_) return Outcome::kRetry;

  final_.insert(id);
  auto& ks = kernel_stats(r.kernel());
  ++ks.tasks;
  ks.busy_ns += busy;
  if (ok) {
    ++ok_;
    if (ws) ++ws->tasks;
    bytes_ += r.bytes();
    flops_ += r.flops();
    ks.bytes += r.bytes();
    ks.flops += r.flops();
  } else {
    ++failed_;
    ++ks.failed;
    if (failures_.size() < kMaxListedFailures) {
      v1::TaskFailure f;
      f.set_task_id(static_cast<uint32_t>(id));
      f.set_kernel(r.kernel());
      f.set_attempts(r.attempt());
      f.set_error(r.error());
      failures_.push_back(std::move(f));
    }
  }
  if (r.attempt() > 1) ++retried_;
  digest_.add(id, ok, r.checksum());
  if (r.sent_ns() > 0) {
    first_sent_ns_ = std::min(first_sent_ns_, r.sent_ns());
    latency_ns_.record(recv_wall_ns - r.sent_ns());
  }
  last_recv_ns_ = std::max(last_recv_ns_, recv_wall_ns);
  return Outcome::kFinal;
}

v1::Report JobAggregator::report() const {
  v1::Report rep;
  rep.set_job(name_);
  rep.set_job_id(fmt::format("{:016x}", job_id_));
  rep.set_tasks_total(static_cast<uint32_t>(total_));
  rep.set_tasks_ok(static_cast<uint32_t>(ok_));
  rep.set_tasks_failed(static_cast<uint32_t>(failed_));
  rep.set_retried(static_cast<uint32_t>(retried_));
  rep.set_duplicates_dropped(static_cast<uint32_t>(duplicates_));
  const double elapsed =
      last_recv_ns_ > first_sent_ns_ ? static_cast<double>(last_recv_ns_ - first_sent_ns_) * 1e-9 : 0;
  rep.set_elapsed_s(elapsed);
  if (elapsed > 0) {
    rep.set_tasks_per_s(static_cast<double>(ok_ + failed_) / elapsed);
    rep.set_mb_per_s(static_cast<double>(bytes_) / elapsed * 1e-6);
    rep.set_gflop_per_s(static_cast<double>(flops_) / elapsed * 1e-9);
  }
  auto* lat = rep.mutable_latency_us();
  lat->set_p50(static_cast<double>(latency_ns_.quantile(0.50)) * 1e-3);
  lat->set_p90(static_cast<double>(latency_ns_.quantile(0.90)) * 1e-3);
  lat->set_p99(static_cast<double>(latency_ns_.quantile(0.99)) * 1e-3);
  lat->set_max(static_cast<double>(latency_ns_.max()) * 1e-3);
  rep.set_result_digest(digest_.hex());
  for (const auto& [id, ws] : workers_) {
    auto* w = rep.add_workers();
    w->set_id(id);
    w->set_host(ws.info.host());
    w->set_device(ws.info.device());
    w->set_tasks(static_cast<uint32_t>(ws.tasks));
    w->set_busy_s(static_cast<double>(ws.busy_ns) * 1e-9);
    w->set_gpu_mem_mb(static_cast<double>(ws.info.gpu_mem_bytes()) / (1 << 20));
  }
  for (const auto& [name, ks] : kernels_) {
    auto* k = rep.add_kernels();
    k->set_kernel(name);
    k->set_tasks(static_cast<uint32_t>(ks.tasks));
    k->set_failed(static_cast<uint32_t>(ks.failed));
    const double busy = static_cast<double>(ks.busy_ns) * 1e-9;
    k->set_busy_s(busy);
    if (busy > 0) {
      k->set_mb_per_s(static_cast<double>(ks.bytes) / busy * 1e-6);
      k->set_gflop_per_s(static_cast<double>(ks.flops) / busy * 1e-9);
    }
  }
  for (const auto& f : failures_) *rep.add_failures() = f;
  return rep;
}

}  // namespace taskfarm::sink
