// The ventilator's state machine without sockets: messages from workers, from the sink and
// from clients go in; what must be sent goes out through a VentilatorOutbox. It owns the
// JobTable (jobs) and the Dispatcher (leases, credits). The socket loop (ventilator.cpp), unit
// tests and fuzzers drive this one class.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"
#include "ventilator/dispatcher.h"
#include "jobs/job.h"
#include "ventilator/job_table.h"

namespace taskfarm::ventilator {

class VentilatorOutbox {
 public:
  virtual ~VentilatorOutbox() = default;
  // To one worker (by routing id). Returns: false when it cannot be reached now.
  virtual bool to_worker(const std::string& worker, v1::Envelope& env) = 0;
  // To the sink's results socket; kept and sent later when the sink cannot take it now.
  virtual void to_sink(v1::Envelope& env) = 0;
  // A BatchStart: dropped when the sink cannot take it now (the next one follows).
  virtual void announce_to_sink(v1::Envelope& env) = 0;
};

struct CoreOptions {
  DispatchPolicy policy;
  jobs::JobLimits job_limits;
  TableLimits table_limits;
  int64_t max_job_bytes = kDefaultMaxJobBytes;
  int64_t heartbeat_ms = 500;
  std::string sink_endpoint;  // for messages about a missing sink
  std::string tasks_endpoint; // for messages about missing workers
  // Whether clients may submit exec jobs (a job service with keys, or on loopback only).
  bool exec_jobs_allowed = true;
  // --state DIR: the journal that lets a restarted ventilator continue its jobs ("": none).
  std::string state_dir;
  uint32_t min_workers = 0;  // every job waits for this many workers (and its own min_workers)
};

class VentilatorCore {
 public:
  // With options.state_dir, loads the jobs of the journal there.
  // Throws: SetupError when the state folder or its journal cannot be used.
  VentilatorCore(CoreOptions options, const Clock& clock, VentilatorOutbox& out);

  // Validates and queues a job. Returns: its record. Throws: SetupError.
  JobRecord& add_job(v1::JobSpec spec, const std::string& where);
  // Returns: whether `spec`, validated as add_job would, is the spec of `job` (a one-shot
  // batch given again to a restarted ventilator). Throws: SetupError for an invalid spec.
  bool same_spec(const JobRecord& job, v1::JobSpec spec) const;
  // Ends a job before its last task (cancelled, or interrupted): the sink writes a partial
  // report, workers drop its queued tasks. Returns: false when it had already ended.
  bool end_early(JobRecord& job, v1::JobState state);
  // Tells every known worker to exit.
  void kill_workers();

  // Handlers of one decoded message each. Never throw for a bad message.
  // Returns: false for a message a worker must not send (the caller counts it as rejected).
  bool on_worker_message(const std::string& worker, const v1::Envelope& env);
  void on_sink_message(const v1::Envelope& env);
  // Returns: the reply to a client's request, without a body for requests it does not serve.
  v1::Envelope on_request(const v1::Envelope& env);

  // Periodic work: announces queued jobs to the sink, heartbeats and expires workers (every
  // heartbeat_ms), hands out tasks against credit, finishes fully acknowledged jobs.
  void tick();
  // Hands out tasks to workers with credit (also after each burst of messages).
  void dispatch();

  JobTable& jobs() { return jobs_; }
  const Dispatcher& dispatcher() const { return dispatcher_; }
  // Returns: whether some job waits for the sink to accept it.
  bool waiting_for_sink() const;
  // Returns: the job's tasks with a final result acknowledged by the sink.
  uint64_t acked(const JobRecord& job) const;
  // Returns: the status of a job as clients see it.
  v1::JobStatus status_of(const JobRecord& job) const;
  // Returns: why the job is not moving ("" when it is): no sink, no worker, no worker with its
  // kernel, workers busy with higher-priority jobs, dispatching paused.
  std::string waiting_reason(const JobRecord& job) const;
  // Returns: why no task is handed out now ("" when they are): the ventilator's or the sink's
  // journal cannot be written.
  std::string paused_reason() const;
  // Returns: seconds since the sink was last heard from (its heartbeat, acks), or a negative
  // number when it never was.
  double sink_silent_s() const;

 private:
  void finish_job(JobRecord& job, v1::JobState state);
  // Hands a job the sink accepted to the dispatcher, with the tasks acknowledged already.
  void dispatch_job(JobRecord& job);
  // Notes a message from the sink process `epoch`; a new one means the sink restarted.
  void heard_sink(uint64_t epoch);
  void on_job_accepted(const v1::JobAccepted& accepted);
  void on_ack(const v1::Ack& ack);
  // Asks each worker to resend the results of the job's tasks it holds leases for.
  void request_resends(const JobRecord& job);
  // Tells the sink again about jobs ended early whose report has not come back.
  void renotify_ended(int64_t now);
  void send_give_ups(const std::vector<GiveUp>& give_ups);
  // Sends again the give-ups of a job the sink has not acknowledged (it restarted).
  void resend_give_ups(uint64_t job_id);
  void take_timings(const std::string& worker,
                    const google::protobuf::RepeatedPtrField<v1::TaskTiming>& timings);
  void send_cancels();
  void announce(JobRecord& job, int64_t now);
  bool send_tasks(const Assignment& a, int64_t sent_ns);
  void heartbeat_workers();
  void finish_acked_jobs(int64_t now);
  // `taskfarm workers`: the dispatcher's workers and the jobs of the tasks they hold.
  void fill_workers_reply(v1::WorkersReply& reply);
  void log_waiting(int64_t now);

  CoreOptions opt_;
  const Clock& clock_;
  VentilatorOutbox& out_;
  Dispatcher dispatcher_;
  JobTable jobs_;
  uint64_t epoch_;
  int64_t started_ns_;
  uint64_t sink_epoch_ = 0;      // the sink process last heard from (0: none yet)
  int64_t sink_heard_ns_ = 0;    // when (steady clock; 0: never)
  std::string sink_journal_error_;  // why the sink cannot write its journal ("": it can)
  int64_t next_heartbeat_ns_ = 0;
  // Failed results the ventilator sent for tasks it gave up on, by job and task, until the
  // sink acknowledges them (a restarted sink gets them again).
  std::map<uint64_t, std::map<uint64_t, v1::Result>> give_ups_;
  int64_t next_reason_log_ns_ = 0;
  v1::Envelope scratch_;  // reused for outgoing task batches
  // Kept outside `scratch_`: Envelope::Clear() deletes its oneof body, and with it 1024 Tasks.
  v1::TaskBatch batch_scratch_;
};

}  // namespace taskfarm::ventilator
