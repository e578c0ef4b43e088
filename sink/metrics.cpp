#include "sink/metrics.h"

#include <algorithm>

namespace taskfarm::sink {

void SinkMetrics::add(const v1::Report& rep, std::map<std::string, Kernel>& kernels,
                      std::map<std::string, Worker>& workers) {
  for (const auto& k : rep.kernels()) {
    Kernel& t = kernels[k.kernel()];
    t.ok += k.tasks() - std::min(k.tasks(), k.failed());
    t.failed += k.failed();
    t.busy_s += k.busy_s();
  }
  for (const auto& w : rep.workers()) {
    Worker& t = workers[w.id()];
    t.host = w.host();
    t.device = w.device();
    t.tasks += w.tasks();
    t.busy_s += w.busy_s();
    t.gpu_mem_bytes = static_cast<uint64_t>(w.gpu_mem_mb() * 1024 * 1024);
  }
}

void SinkMetrics::fold(const JobAggregator& job) {
  const v1::Report rep = job.report();
  add(rep, kernels_, workers_);
  retried_ += rep.retried();
  duplicates_ += rep.duplicates_dropped();
  latency_ns_.merge(job.latency());
}

v1::MetricsSinkStats SinkMetrics::stats(const std::vector<const JobAggregator*>& active,
                                        uint64_t rejected, uint64_t late_results) const {
  v1::MetricsSinkStats out;
  auto kernels = kernels_;
  auto workers = workers_;
  uint64_t retried = retried_, duplicates = duplicates_;
  LatencyHistogram latency = latency_ns_;
  for (const JobAggregator* job : active) {
    v1::Report rep = job->report();
    add(rep, kernels, workers);
    retried += rep.retried();
    duplicates += rep.duplicates_dropped();
    latency.merge(job->latency());
    *out.add_jobs() = std::move(rep);
  }
  for (const auto& [name, k] : kernels) {
    auto* m = out.add_kernels();
    m->set_kernel(name);
    m->set_ok(k.ok);
    m->set_failed(k.failed);
    m->set_busy_s(k.busy_s);
  }
  for (const auto& [id, w] : workers) {
    auto* m = out.add_workers();
    m->set_id(id);
    m->set_host(w.host);
    m->set_device(w.device);
    m->set_tasks(w.tasks);
    m->set_busy_s(w.busy_s);
    m->set_gpu_mem_bytes(w.gpu_mem_bytes);
  }
  out.set_retried(retried);
  out.set_duplicates(duplicates);
  out.set_late_results(late_results);
  out.set_rejected_messages(rejected);
  // Cumulative counts at each bound; a bucket counts below a bound when its upper edge is
  // (the histogram's buckets are within 1.6% of their values).
  const auto& bounds = latency_bounds_s();
  std::vector<uint64_t> counts(bounds.size(), 0);
  latency.for_each_bucket([&](uint64_t upper_ns, uint64_t n) {
    const double s = static_cast<double>(upper_ns) * 1e-9;
    const auto i = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), s) -
                                       bounds.begin());
    if (i < bounds.size()) counts[i] += n;
  });
  for (size_t i = 1; i < bounds.size(); ++i) counts[i] += counts[i - 1];
  for (size_t i = 0; i < bounds.size(); ++i) {
    out.add_latency_bounds_s(bounds[i]);
    out.add_latency_counts(counts[i]);
  }
  out.set_latency_count(latency.count());
  out.set_latency_sum_s(static_cast<double>(latency.sum()) * 1e-9);
  return out;
}

}  // namespace taskfarm::sink
