#include "ventilator/ventilator_core.h"

#include <fmt/core.h>

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <map>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/text.h"

namespace taskfarm::ventilator {

VentilatorCore::VentilatorCore(CoreOptions options, const Clock& clock, VentilatorOutbox& out)
    : opt_(std::move(options)),
      clock_(clock),
      out_(out),
      dispatcher_(opt_.policy, clock),
      jobs_(clock, opt_.table_limits),
      epoch_(random_u64()),
      started_ns_(clock.steady_ns()) {
  if (!opt_.state_dir.empty()) jobs_.open_state(opt_.state_dir);
}

// ------------------------------------------------------------------ jobs

JobRecord& VentilatorCore::add_job(v1::JobSpec spec, const std::string& where) {
  jobs::validate_job(spec, where, opt_.job_limits);
  if (!opt_.exec_jobs_allowed) {
    for (const auto& t : spec.tasks()) {
      if (t.kernel() == jobs::kExecKernel) {
        throw SetupError("exec jobs need CurveZMQ keys on a job service that is not on loopback "
                         "(taskfarm-ventilator --curve-secret ..., or --submit 127.0.0.1:5560)");
      }
    }
  }
  return jobs_.add(std::move(spec), opt_.policy.max_attempts);
}

uint64_t VentilatorCore::acked(const JobRecord& job) const {
  return job.dispatching ? dispatcher_.job_acked(job.id) : job.acked_tasks.size();
}

bool VentilatorCore::same_spec(const JobRecord& job, v1::JobSpec spec) const {
  if (!job.job) return false;
  validate_job(spec, "job", opt_.job_limits);
  if (spec.max_attempts() == 0) spec.set_max_attempts(opt_.policy.max_attempts);
  return google::protobuf::util::MessageDifferencer::Equals(spec, job.job->spec());
}

void VentilatorCore::finish_job(JobRecord& job, v1::JobState state) {
  job.done = acked(job);
  if (!job.report && job.dispatching) job.failed = dispatcher_.job_failed(job.id);
  dispatcher_.remove_job(job.id);
  give_ups_.erase(job.id);
  log::info("job '{}' ({}) {}: {} tasks, {} failed, {:.3f} s", printable(job.name),
            job_hex(job.id), job_state_name(state), job.total, job.failed,
            static_cast<double>(clock_.steady_ns() - job.submitted_ns) * 1e-9);
  jobs_.finish(job, state);
}

bool VentilatorCore::end_early(JobRecord& job, v1::JobState state) {
  if (job.finished()) return false;
  v1::Envelope cancel;
  cancel.mutable_cancel_job()->set_job_id(job.id);
  cancel.mutable_cancel_job()->set_state(state);
  out_.to_sink(cancel);
  for (const auto& w : dispatcher_.worker_ids()) (void)out_.to_worker(w, cancel);
  finish_job(job, state);
  return true;
}

void VentilatorCore::kill_workers() {
  v1::Envelope kill;
  kill.mutable_kill();
  for (const auto& w : dispatcher_.worker_ids()) (void)out_.to_worker(w, kill);
}

// ------------------------------------------------------------------ workers

void VentilatorCore::send_give_ups(const std::vector<GiveUp>& give_ups) {
  if (give_ups.empty()) return;
  v1::Envelope env;
  auto* batch = env.mutable_results();
  batch->mutable_worker()->set_host(host_name());  // no id: not a worker
  v1::Task task;
  for (const auto& g : give_ups) {
    JobRecord* rec = jobs_.get(g.task.job_id);
    if (!rec || !rec->job) continue;
    rec->job->fill(g.task.task_id, &task);
    auto* r = batch->add_results();
    r->set_job_id(g.task.job_id);
    r->set_task_id(g.task.task_id);
    r->set_attempt(g.task.attempt);
    r->set_status(v1::STATUS_FAILED);
    r->set_error(g.error);
    r->set_kernel(task.kernel());
    give_ups_[g.task.job_id][g.task.task_id] = *r;  // until the sink acknowledges it
    log::warn("task {} of job '{}' failed: {}", g.task.task_id, printable(rec->name), g.error);
  }
  if (batch->results_size() > 0) out_.to_sink(env);
}

void VentilatorCore::resend_give_ups(uint64_t job_id) {
  auto it = give_ups_.find(job_id);
  if (it == give_ups_.end()) return;
  v1::Envelope env;
  auto* batch = env.mutable_results();
  batch->mutable_worker()->set_host(host_name());
  for (const auto& [task, r] : it->second) *batch->add_results() = r;
  out_.to_sink(env);
}

bool VentilatorCore::on_worker_message(const std::string& worker, const v1::Envelope& env) {
  auto ask_to_reconnect = [&] {
    v1::Envelope again;
    again.mutable_reconnect();
    (void)out_.to_worker(worker, again);
  };
  switch (env.body_case()) {
    case v1::Envelope::kHello: {
      const auto& h = env.hello();
      // What a worker says of itself is shown in reports and logs: bounded and printable.
      if (name_problem(h.worker().id(), kMaxWorkerIdBytes, false) ||
          h.worker().host().size() > 255 || h.worker().device().size() > 255 ||
          h.worker().kernels_size() > 4096) {
        log::warn("refused a worker's registration: its id, host, device or kernel list is "
                  "malformed ('{}')",
                  printable(h.worker().id()));
        return false;
      }
      log::info("worker {} joined ({} on {}, {} slots)", printable(h.worker().id()),
                printable(h.worker().device()), printable(h.worker().host()), h.worker().slots());
      send_give_ups(dispatcher_.on_hello(worker, h.worker(), h.credit()));
      v1::Envelope welcome;
      welcome.mutable_welcome()->set_epoch(epoch_);
      welcome.mutable_welcome()->set_heartbeat_ms(static_cast<uint32_t>(opt_.heartbeat_ms));
      welcome.mutable_welcome()->set_farm(farm_name());
      if (const std::string& name = dispatcher_.worker_name(worker); name != h.worker().id()) {
        log::warn("worker {} on {}: another connected worker has that id; this one is {} in "
                  "reports (give each worker its own --id)",
                  printable(h.worker().id()), printable(h.worker().host()), printable(name));
        welcome.mutable_welcome()->set_worker_id(name);
      }
      (void)out_.to_worker(worker, welcome);
      break;
    }
    case v1::Envelope::kCredit:
      if (!dispatcher_.on_credit(worker, env.credit().credit())) {
        ask_to_reconnect();
        break;
      }
      take_timings(worker, env.credit().timings());
      break;
    case v1::Envelope::kHeartbeat:
      if (!dispatcher_.on_heartbeat(worker)) {
        ask_to_reconnect();
        break;
      }
      take_timings(worker, env.heartbeat().timings());
      break;
    case v1::Envelope::kResultsNotHeld: {
      const auto& nh = env.results_not_held();
      const std::vector<uint64_t> ids(nh.task_ids().begin(), nh.task_ids().end());
      dispatcher_.not_held(worker, nh.job_id(), ids);
      log::info("worker {} no longer has {} results; issuing those tasks again", printable(worker),
                ids.size());
      break;
    }
    case v1::Envelope::kGoodbye:
      dispatcher_.on_goodbye(worker, env.goodbye());
      log::info("worker leaving; {} unstarted tasks returned", env.goodbye().returned_size());
      break;
    default:
      return false;
  }
  return true;
}

void VentilatorCore::take_timings(
    const std::string& worker,
    const google::protobuf::RepeatedPtrField<v1::TaskTiming>& timings) {
  if (timings.empty()) return;
  std::vector<Timing> t;
  t.reserve(static_cast<size_t>(timings.size()));
  for (const auto& x : timings) t.push_back({x.kernel(), x.size(), x.count(), x.busy_ns()});
  dispatcher_.on_timings(worker, t);
}

void VentilatorCore::send_cancels() {
  // Copies of tasks whose other copy finished: the worker drops or stops them.
  std::map<std::pair<std::string, uint64_t>, v1::Envelope> by_worker;
  for (const auto& c : dispatcher_.take_cancels()) {
    v1::Envelope& env = by_worker[{c.worker, c.job_id}];
    env.mutable_cancel_tasks()->set_job_id(c.job_id);
    env.mutable_cancel_tasks()->add_task_ids(c.task_id);
  }
  for (auto& [key, env] : by_worker) (void)out_.to_worker(key.first, env);
}

bool VentilatorCore::send_tasks(const Assignment& a, int64_t sent_ns) {
  batch_scratch_.Clear();  // keeps the Task objects for reuse
  const jobs::Job* job = nullptr;
  uint64_t job_id = 0;
  for (const auto& t : a.tasks) {
    if (!job || t.job_id != job_id) job = jobs_.get(job_id = t.job_id)->job.get();
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
  return out_.to_worker(a.worker, scratch_);
}

void VentilatorCore::dispatch() {
  // Nothing is handed out that a journal could not record the end of.
  if (!jobs_.journal_error().empty() || !sink_journal_error_.empty()) return;
  for (;;) {
    auto assignments = dispatcher_.assign();
    if (assignments.empty()) return;
    const int64_t now = clock_.wall_ns();
    for (const auto& a : assignments) {
      if (!send_tasks(a, now)) {
        dispatcher_.unsend(a);
        send_give_ups(dispatcher_.on_unreachable(a.worker));
      }
    }
  }
}

void VentilatorCore::heartbeat_workers() {
  v1::Envelope hb;
  hb.mutable_heartbeat()->set_epoch(epoch_);
  for (const auto& w : dispatcher_.worker_ids()) {
    if (!out_.to_worker(w, hb)) send_give_ups(dispatcher_.on_unreachable(w));
  }
}

// ------------------------------------------------------------------ sink

void VentilatorCore::dispatch_job(JobRecord& job) {
  JobShape shape;
  shape.id = job.id;
  shape.priority = job.priority;
  shape.max_attempts = job.max_attempts;
  shape.min_workers = std::max(job.job->spec().min_workers(), opt_.min_workers);
  for (const auto& t : job.job->spec().tasks()) {
    shape.entries.push_back({t.kernel(), t.count(), t.payload().size(), t.size()});
  }
  shape.done = job.acked_tasks;  // what a previous life saw acknowledged
  shape.failed = job.failed;
  dispatcher_.add_job(shape);
  job.dispatching = true;
}

void VentilatorCore::heard_sink(uint64_t epoch) {
  if (epoch == 0) return;  // a sink that does not say
  sink_heard_ns_ = clock_.steady_ns();
  if (epoch == sink_epoch_) return;
  const bool restarted = sink_epoch_ != 0;
  sink_epoch_ = epoch;
  size_t running = 0;
  for (auto& [id, job] : jobs_.jobs()) {
    if (job.finished()) {
      job.next_end_notice_ns = 0;  // a report still missing: ask the new sink at once
      continue;
    }
    // Every job is announced to the new sink process: it answers with what it has counted.
    job.sink_confirmed = false;
    job.next_announce_ns = 0;
    job.announce_backoff_ms = 20;
    running += job.state == v1::JOB_RUNNING ? 1 : 0;
  }
  if (restarted) {
    log::warn("the sink restarted; announcing {} running job(s) to it again", running);
  }
}

void VentilatorCore::on_job_accepted(const v1::JobAccepted& ja) {
  JobRecord* job = jobs_.get(ja.job_id());
  if (!job || job->finished() || job->sink_confirmed) return;
  if (!ja.error().empty()) {
    job->error = fmt::format("refused by the sink: {}", ja.error());
    log::warn("job '{}' ({}) {}", printable(job->name), job_hex(job->id), job->error);
    finish_job(*job, v1::JOB_FAILED);
    return;
  }
  job->sink_confirmed = true;
  if (job->state == v1::JOB_QUEUED) {
    jobs_.start(*job);
    dispatch_job(*job);
    log::info("sink accepted job '{}'; dispatching to {} workers", printable(job->name),
              dispatcher_.workers());
    return;
  }
  // A running job announced again: the ventilator or the sink restarted.
  const uint64_t acked_now = acked(*job);
  if (ja.final_tasks() < acked_now) {
    log::warn("the sink counts {} tasks of job '{}' ({}) but {} were acknowledged: it lost "
              "them (restarted without --state?); running the job again from the start",
              ja.final_tasks(), printable(job->name), job_hex(job->id), acked_now);
    if (job->dispatching) dispatcher_.remove_job(job->id);
    give_ups_.erase(job->id);
    job->acked_tasks.clear();
    job->failed = 0;
    jobs_.changed(*job);
    dispatch_job(*job);
    return;
  }
  if (!job->dispatching) {
    dispatch_job(*job);
    log::info("sink has job '{}' ({}): {}/{} tasks acknowledged; dispatching", printable(job->name),
              job_hex(job->id), acked_now, job->total);
    return;
  }
  request_resends(*job);
  resend_give_ups(job->id);  // a restarted sink may have lost them too
}

void VentilatorCore::request_resends(const JobRecord& job) {
  constexpr size_t kMaxIdsPerMessage = 65536;
  size_t asked = 0, workers = 0;
  for (const auto& w : dispatcher_.worker_ids()) {
    auto leases = dispatcher_.leases_of(w);
    auto it = leases.find(job.id);
    if (it == leases.end()) continue;
    ++workers;
    const auto& ids = it->second;
    for (size_t at = 0; at < ids.size(); at += kMaxIdsPerMessage) {
      v1::Envelope env;
      auto* rr = env.mutable_resend_results();
      rr->set_job_id(job.id);
      const size_t end = std::min(ids.size(), at + kMaxIdsPerMessage);
      rr->mutable_task_ids()->Add(ids.begin() + static_cast<std::ptrdiff_t>(at),
                                  ids.begin() + static_cast<std::ptrdiff_t>(end));
      if (!out_.to_worker(w, env)) break;  // gone: its leases expire as usual
      asked += end - at;
    }
  }
  if (asked > 0) {
    log::info("job '{}': asked {} worker(s) to resend {} results the sink has not acknowledged",
              printable(job.name), workers, asked);
  }
}

void VentilatorCore::on_ack(const v1::Ack& ack) {
  JobRecord* job = jobs_.get(ack.job_id());
  if (!job || job->finished()) return;
  if (job->dispatching) {
    if (auto g = give_ups_.find(job->id); g != give_ups_.end()) {
      for (uint64_t id : ack.done()) g->second.erase(id);
      if (g->second.empty()) give_ups_.erase(g);
    }
    // The journal's set of acknowledged tasks (a restarted ventilator skips them).
    if (jobs_.journaled()) {
      for (uint64_t id : ack.done()) {
        if (id < job->total) job->acked_tasks.insert(id);
      }
    }
    send_give_ups(dispatcher_.on_ack(ack));
    send_cancels();
    return;
  }
  // A job waiting to be handed to the dispatcher again (restarted ventilator): its finished
  // tasks are not issued again.
  for (uint64_t id : ack.done()) {
    if (id >= job->total || !job->acked_tasks.insert(id)) continue;
    if (std::find(ack.failed().begin(), ack.failed().end(), id) != ack.failed().end()) {
      ++job->failed;
    }
  }
}

void VentilatorCore::on_sink_message(const v1::Envelope& env) {
  switch (env.body_case()) {
    case v1::Envelope::kSinkHeartbeat:
      heard_sink(env.sink_heartbeat().epoch());
      if (env.sink_heartbeat().journal_error() != sink_journal_error_) {
        sink_journal_error_ = env.sink_heartbeat().journal_error();
        if (!sink_journal_error_.empty()) {
          log::warn("the sink cannot write its journal ({}); dispatching pauses",
                    printable(sink_journal_error_, 300));
        } else {
          log::info("the sink can write its journal again; dispatching resumes");
        }
      }
      break;
    case v1::Envelope::kAck:
      heard_sink(env.ack().sink_epoch());
      on_ack(env.ack());
      break;
    case v1::Envelope::kJobAccepted:
      heard_sink(env.job_accepted().sink_epoch());
      on_job_accepted(env.job_accepted());
      break;
    case v1::Envelope::kBatchEnd: {
      const auto& be = env.batch_end();
      JobRecord* job = jobs_.get(be.job_id());
      if (!job) break;
      if (job->finished()) {
        // A job ended early here (cancelled): the sink's partial report completes its status.
        if (!job->report && be.has_report()) {
          job->report = be.report();
          jobs_.changed(*job);
        }
        break;
      }
      job->stop_workers = be.stop_workers();
      job->failed = be.tasks_failed();
      if (be.has_report()) job->report = be.report();
      v1::JobState state = be.state();
      if (!job_state_final(state)) state = be.tasks_failed() > 0 ? v1::JOB_FAILED : v1::JOB_DONE;
      finish_job(*job, state);
      break;
    }
    default: break;  // Kill and others are for workers
  }
}

void VentilatorCore::announce(JobRecord& job, int64_t now) {
  if (job.finished() || job.sink_confirmed || now < job.next_announce_ns || !job.job) return;
  v1::Envelope env;
  auto* bs = env.mutable_batch_start();
  bs->set_job_id(job.id);
  bs->set_ventilator_id(jobs_.ventilator_id());
  bs->set_farm(farm_name());
  bs->set_name(job.name);
  bs->set_total(job.total);
  bs->set_max_attempts(job.max_attempts);
  bs->set_start_ns(clock_.wall_ns());
  *bs->mutable_spec() = job.job->spec();
  for (auto& t : *bs->mutable_spec()->mutable_tasks()) t.clear_payload();  // not for the sink
  out_.announce_to_sink(env);
  job.next_announce_ns = now + ms_to_ns(job.announce_backoff_ms);
  job.announce_backoff_ms = std::min<int64_t>(job.announce_backoff_ms * 2, 1000);
}

bool VentilatorCore::waiting_for_sink() const {
  for (const auto& [id, job] : jobs_.jobs()) {
    if (job.state == v1::JOB_QUEUED) return true;
  }
  return false;
}

void VentilatorCore::renotify_ended(int64_t now) {
  for (auto& [id, job] : jobs_.jobs()) {
    if (!job.finished() || job.report || job.end_notices >= 30 || now < job.next_end_notice_ns ||
        (job.state != v1::JOB_CANCELLED && job.state != v1::JOB_INTERRUPTED) || !job.error.empty()) {
      continue;
    }
    // The first notice went with end_early; later ones only while the sink is there.
    if (job.end_notices > 0 && sink_silent_s() < 0) continue;
    if (job.end_notices > 0) {
      v1::Envelope cancel;
      cancel.mutable_cancel_job()->set_job_id(job.id);
      cancel.mutable_cancel_job()->set_state(job.state);
      out_.announce_to_sink(cancel);
    }
    ++job.end_notices;
    job.next_end_notice_ns = now + ms_to_ns(std::min(1000 << std::min(job.end_notices, 3), 5000));
  }
}

double VentilatorCore::sink_silent_s() const {
  if (sink_heard_ns_ == 0) return -1;
  return static_cast<double>(clock_.steady_ns() - sink_heard_ns_) * 1e-9;
}

std::string VentilatorCore::paused_reason() const {
  if (!jobs_.journal_error().empty()) {
    return fmt::format("paused: the ventilator cannot write its state ({})",
                       jobs_.journal_error());
  }
  if (!sink_journal_error_.empty()) {
    return fmt::format("paused: the sink cannot write its state ({})", sink_journal_error_);
  }
  return "";
}

// Jobs whose every task is acknowledged get their BatchEnd at once; if it was lost, they finish
// on the acks alone after a moment.
void VentilatorCore::finish_acked_jobs(int64_t now) {
  for (auto& [id, job] : jobs_.jobs()) {
    if (job.state != v1::JOB_RUNNING || !dispatcher_.job_done(id)) continue;
    if (job.all_acked_ns == 0) job.all_acked_ns = now;
    if (now - job.all_acked_ns > ms_to_ns(2000)) {
      job.failed = dispatcher_.job_failed(id);
      finish_job(job, job.failed > 0 ? v1::JOB_FAILED : v1::JOB_DONE);
    }
  }
}

void VentilatorCore::tick() {
  const int64_t now = clock_.steady_ns();
  for (auto& [id, job] : jobs_.jobs()) {
    announce(job, now);
    if (job.dispatching && !job.finished()) job.failed = dispatcher_.job_failed(id);
  }
  renotify_ended(now);
  (void)jobs_.sync();  // a failure pauses dispatching (paused_reason) and is retried
  if (now >= next_heartbeat_ns_) {
    heartbeat_workers();
    send_give_ups(dispatcher_.expire());
    next_heartbeat_ns_ = now + ms_to_ns(opt_.heartbeat_ms);
  }
  dispatch();
  finish_acked_jobs(now);
  log_waiting(now);
}

std::string VentilatorCore::waiting_reason(const JobRecord& job) const {
  const double silent = sink_silent_s();
  const std::string heard =
      silent < 0 ? std::string() : fmt::format(" (last heard {:.0f} s ago)", silent);
  if (job.state == v1::JOB_QUEUED) {
    return fmt::format("waiting for the sink at {}{}", opt_.sink_endpoint, heard);
  }
  if (job.state != v1::JOB_RUNNING) return "";
  // A sink heartbeats four times a second; give a new ventilator a moment to hear it.
  const double quiet =
      silent >= 0 ? silent : static_cast<double>(clock_.steady_ns() - started_ns_) * 1e-9;
  if (quiet > 3) return fmt::format("no sink at {}{}", opt_.sink_endpoint, heard);
  if (!job.sink_confirmed) return fmt::format("waiting for the sink at {}", opt_.sink_endpoint);
  if (std::string paused = paused_reason(); !paused.empty()) return paused;
  std::string why = dispatcher_.waiting_reason(job.id);
  if (why == "no worker connected") {
    why = fmt::format("no worker connected (workers connect to {})", opt_.tasks_endpoint);
  }
  return why;
}

// Says every few seconds why a job does not move, so that nobody waits on a silent farm.
void VentilatorCore::log_waiting(int64_t now) {
  if (now < next_reason_log_ns_) return;
  bool logged = false;
  for (const auto& [id, job] : jobs_.jobs()) {
    if (job.state != v1::JOB_RUNNING) continue;  // queued jobs: the sink watch says it
    const std::string why = waiting_reason(job);
    if (why.empty()) continue;
    log::info("job '{}' waits: {}", printable(job.name), why);
    logged = true;
  }
  next_reason_log_ns_ = now + ms_to_ns(logged ? 5000 : 2000);
}

// ------------------------------------------------------------------ job service

v1::JobStatus VentilatorCore::status_of(const JobRecord& job) const {
  v1::JobStatus st;
  st.set_job_id(job_hex(job.id));
  st.set_name(job.name);
  st.set_state(job.state);
  st.set_total(job.total);
  st.set_priority(job.priority);
  const int64_t now = clock_.steady_ns();
  st.set_age_s(static_cast<double>(now - job.submitted_ns) * 1e-9);
  st.set_error(job.error);
  st.set_reason(waiting_reason(job));
  if (job.finished()) {
    st.set_done(job.done);
    st.set_failed(job.failed);
    if (job.started_ns > 0 && job.finished_ns > job.started_ns) {  // the rate it ran at
      st.set_tasks_per_s(static_cast<double>(job.done) /
                         (static_cast<double>(job.finished_ns - job.started_ns) * 1e-9));
    }
    if (job.report) {
      *st.mutable_report() = *job.report;
      st.set_done(job.report->tasks_ok() + job.report->tasks_failed());
      st.set_tasks_per_s(job.report->tasks_per_s());
    }
  } else {
    st.set_done(acked(job));
    st.set_failed(job.dispatching ? dispatcher_.job_failed(job.id) : job.failed);
    if (job.started_ns > 0 && now > job.started_ns) {
      st.set_tasks_per_s(static_cast<double>(st.done()) /
                         (static_cast<double>(now - job.started_ns) * 1e-9));
    }
  }
  return st;
}

void VentilatorCore::fill_workers_reply(v1::WorkersReply& reply) {
  for (const auto& w : dispatcher_.worker_table()) {
    auto* s = reply.add_workers();
    s->set_id(w.info.id());
    s->set_host(w.info.host());
    s->set_device(w.info.device());
    s->set_slots(w.info.slots());
    s->set_held(static_cast<uint32_t>(w.held));
    s->set_busy(static_cast<uint32_t>(std::min<uint64_t>(w.held, w.info.slots())));
    s->set_idle_s(w.idle_s);
    s->set_leaving(w.leaving);
    for (const auto& [job_id, n] : w.held_by_job) {
      auto* j = s->add_jobs();
      j->set_job_id(job_hex(job_id));
      if (const JobRecord* job = jobs_.get(job_id)) j->set_name(job->name);
      j->set_tasks(static_cast<uint32_t>(n));
    }
  }
}

v1::Envelope VentilatorCore::on_request(const v1::Envelope& env) {
  v1::Envelope reply;
  switch (env.body_case()) {
    case v1::Envelope::kSubmit: {
      auto* r = reply.mutable_submit_reply();
      try {
        r->set_job_id(job_hex(add_job(env.submit().job(), "job").id));
      } catch (const SetupError& e) {
        r->set_error(e.what());
        log::warn("refused a job: {}", printable(e.what(), 500));
      }
      break;
    }
    case v1::Envelope::kStatus: {
      auto* r = reply.mutable_status_reply();
      const std::string& key = env.status().job();
      if (key.empty()) {
        for (const auto& [id, job] : jobs_.jobs()) {
          auto st = status_of(job);
          st.clear_report();  // the list stays small
          *r->add_jobs() = std::move(st);
        }
      } else if (const JobRecord* job = jobs_.find(key)) {
        *r->add_jobs() = status_of(*job);
      } else {
        r->set_error(fmt::format("unknown job '{}'", printable(key)));
      }
      break;
    }
    case v1::Envelope::kCancel: {
      auto* r = reply.mutable_cancel_reply();
      const std::string& key = env.cancel().job();
      JobRecord* job = jobs_.find(key);
      if (!job) {
        r->set_error(fmt::format("unknown job '{}'", printable(key)));
      } else if (job->finished()) {
        r->set_error(fmt::format("job '{}' is already {}", printable(key),
                                 job_state_name(job->state)));
      } else {
        r->set_job_id(job_hex(job->id));
        end_early(*job, v1::JOB_CANCELLED);
      }
      break;
    }
    case v1::Envelope::kWorkers: fill_workers_reply(*reply.mutable_workers_reply()); break;
    case v1::Envelope::kServiceInfoRequest: {
      auto* r = reply.mutable_service_info();
      r->set_protocol_version(kProtocolVersion);
      r->set_max_job_bytes(static_cast<uint64_t>(opt_.max_job_bytes));
      break;
    }
    default: break;  // no reply: the caller counts it as rejected
  }
  return reply;
}

}  // namespace taskfarm::ventilator
