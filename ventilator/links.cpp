#include "ventilator/links.h"

#include <fmt/core.h>

#include "common/log.h"
#include "common/text.h"

namespace taskfarm::ventilator {

// ------------------------------------------------------------------ WorkerLink

WorkerLink::WorkerLink(zmq::context_t& ctx, const Curve& curve, const std::string& bind)
    : socket_(ctx, zmq::socket_type::router) {
  configure_socket(socket_, kMaxWorkerMessageBytes, 1000);  // linger: deliver the final kills
  socket_.set(zmq::sockopt::router_mandatory, 1);  // report unreachable workers, never drop
  socket_.set(zmq::sockopt::sndhwm, 100000);
  curve.make_server(socket_);
  endpoint_ = bind_socket(socket_, bind, "task");
}

bool WorkerLink::send(const std::string& worker, v1::Envelope& env) {
  return try_send_to(socket_, worker, encode(env));
}

bool WorkerLink::send_tasks(const Assignment& a, JobTable& jobs, int64_t sent_ns) {
  batch_scratch_.Clear();  // keeps the Task objects for reuse
  const Job* job = nullptr;
  uint64_t job_id = 0;
  for (const auto& t : a.tasks) {
    if (!job || t.job_id != job_id) job = jobs.get(job_id = t.job_id)->job.get();
    auto* task = batch_scratch_.add_tasks();
    job->fill(t.task_id, task);
    task->set_attempt(t.attempt);
    task->set_sent_ns(sent_ns);
  }
  // Lend the batch to the envelope; take it back even if sending throws.
  struct GiveBack {
    v1::Envelope& envelope;
    ~GiveBack() { (void)envelope.release_tasks(); }
  } give_back{scratch_};
  scratch_.set_allocated_tasks(&batch_scratch_);
  return send(a.worker, scratch_);
}

// ------------------------------------------------------------------ SinkLink

SinkLink::SinkLink(zmq::context_t& ctx, const Curve& curve, const std::string& results,
                   const std::string& control)
    : to_sink_(ctx, zmq::socket_type::push), from_sink_(ctx, zmq::socket_type::sub),
      control_ep_(control) {
  configure_socket(to_sink_, kMaxSubscriptionBytes, 2000);  // linger: deliver the last cancel
  configure_socket(from_sink_, kMaxControlMessageBytes);
  from_sink_.set(zmq::sockopt::rcvhwm, 100000);
  from_sink_.set(zmq::sockopt::subscribe, kTopicAck);
  from_sink_.set(zmq::sockopt::subscribe, kTopicCtl);
  curve.make_client(to_sink_);
  curve.make_client(from_sink_);
  connect_socket(to_sink_, results, "sink results");
  connect_socket(from_sink_, control, "sink control");
}

void SinkLink::push(v1::Envelope& env) {
  outbox_.push_back(encode(env));
  flush();
}

size_t SinkLink::flush() {
  while (!outbox_.empty() && try_send(to_sink_, outbox_.front())) outbox_.pop_front();
  return outbox_.size();
}

void SinkLink::announce(JobRecord& job, int64_t now_ns, int64_t wall_ns) {
  if (job.state != v1::JOB_QUEUED || now_ns < job.next_announce_ns || !job.job) return;
  v1::Envelope env;
  auto* bs = env.mutable_batch_start();
  bs->set_job_id(job.id);
  bs->set_name(job.name);
  bs->set_total(job.total);
  bs->set_max_attempts(job.max_attempts);
  bs->set_start_ns(wall_ns);
  *bs->mutable_spec() = job.job->spec();
  for (auto& t : *bs->mutable_spec()->mutable_tasks()) t.clear_payload();  // not for the sink
  // Not queued in the outbox: a stale BatchStart is worth nothing, the next one follows.
  (void)try_send(to_sink_, encode(env));
  job.next_announce_ns = now_ns + ms_to_ns(job.announce_backoff_ms);
  job.announce_backoff_ms = std::min<int64_t>(job.announce_backoff_ms * 2, 1000);
}

void SinkLink::send_give_ups(const std::vector<GiveUp>& give_ups, JobTable& jobs) {
  if (give_ups.empty()) return;
  v1::Envelope env;
  auto* batch = env.mutable_results();
  batch->mutable_worker()->set_host(host_name());  // no id: not a worker
  v1::Task task;
  for (const auto& g : give_ups) {
    JobRecord* rec = jobs.get(g.task.job_id);
    if (!rec || !rec->job) continue;
    rec->job->fill(g.task.task_id, &task);
    auto* r = batch->add_results();
    r->set_job_id(g.task.job_id);
    r->set_task_id(g.task.task_id);
    r->set_attempt(g.task.attempt);
    r->set_status(v1::STATUS_FAILED);
    r->set_error(g.error);
    r->set_kernel(task.kernel());
    log::warn("task {} of job '{}' failed: {}", g.task.task_id, printable(rec->name), g.error);
  }
  if (batch->results_size() > 0) push(env);
}

void SinkLink::send_end(uint64_t job_id, v1::JobState state) {
  v1::Envelope env;
  env.mutable_cancel_job()->set_job_id(job_id);
  env.mutable_cancel_job()->set_state(state);
  push(env);
}

// ------------------------------------------------------------------ JobService

JobService::JobService(zmq::context_t& ctx, const Curve& curve, const std::string& bind,
                       int64_t max_request_bytes)
    : socket_(ctx, zmq::socket_type::router) {
  configure_socket(socket_, max_request_bytes + kEnvelopeOverheadBytes, 1000);
  curve.make_server(socket_);
  endpoint_ = bind_socket(socket_, bind, "submission");
}

}  // namespace taskfarm::ventilator
