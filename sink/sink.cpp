#include "sink/sink.h"

#include <fmt/core.h>
#include <fmt/os.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "sink/aggregator.h"

namespace taskfarm::sink {

struct Sink::Impl {
  SinkOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  zmq::socket_t results{ctx, zmq::socket_type::pull};
  zmq::socket_t control{ctx, zmq::socket_type::pub};
  std::string results_ep, control_ep;
  RejectCounter rejects{"results socket"};

  std::optional<JobAggregator> job;
  v1::Ack pending_ack;  // acks not yet published
  int64_t last_progress_ns = 0;

  Impl(SinkOptions o, const Clock& c) : opt(std::move(o)), clock(c) {
    configure_socket(results, opt.max_message_bytes);
    results.set(zmq::sockopt::rcvhwm, 10000);
    configure_socket(control, opt.max_message_bytes, 2000);  // linger: flush BatchEnd/Kill
    control.set(zmq::sockopt::sndhwm, 100000);
    results_ep = bind_socket(results, opt.results_bind, "results");
    control_ep = bind_socket(control, opt.control_bind, "control");
  }

  void publish(std::string_view topic, v1::Envelope& env) {
    control.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    control.send(encode(env), zmq::send_flags::none);
  }

  void flush_acks() {
    if (pending_ack.done_size() == 0 && pending_ack.retry_size() == 0) return;
    const uint64_t job_id = pending_ack.job_id();
    v1::Envelope env;
    *env.mutable_ack() = std::move(pending_ack);
    pending_ack.Clear();
    pending_ack.set_job_id(job_id);
    publish(kTopicAck, env);
  }

  void on_batch_start(const v1::BatchStart& start) {
    if (!job) {
      if (start.total() == 0 || start.total() > UINT32_MAX) {
        rejects.reject(fmt::format("batch_start with {} tasks", start.total()));
        return;
      }
      job.emplace(start);
      last_progress_ns = clock.steady_ns();
      log::info("batch '{}' ({:016x}): {} tasks", start.name(), start.job_id(), start.total());
    } else if (job->job_id() != start.job_id()) {
      log::warn("ignoring batch '{}' ({:016x}): busy with batch '{}'", start.name(),
                start.job_id(), job->name());
      return;
    }
    v1::Envelope env;
    env.mutable_job_accepted()->set_job_id(start.job_id());
    publish(kTopicAck, env);
  }

  void on_results(const v1::ResultBatch& batch) {
    const int64_t now = clock.wall_ns();
    if (!job) {
      rejects.reject("results before any batch_start (stale results from an earlier batch?)");
      return;
    }
    job->touch_worker(batch.worker());
    for (const auto& r : batch.results()) {
      if (r.job_id() != job->job_id()) {
        rejects.reject(fmt::format("result for unknown job {:016x}", r.job_id()));
        continue;
      }
      if (pending_ack.job_id() != r.job_id()) {
        flush_acks();
        pending_ack.set_job_id(r.job_id());
      }
      switch (job->add(r, batch.worker(), now)) {
        case Outcome::kFinal:
          pending_ack.add_done(r.task_id());
          if (r.status() != v1::STATUS_OK) pending_ack.add_failed(r.task_id());
          break;
        case Outcome::kDuplicate:  // re-ack: the first ack may have been lost
          pending_ack.add_done(r.task_id());
          break;
        case Outcome::kRetry:
          pending_ack.add_retry(r.task_id());
          break;
        case Outcome::kInvalid:
          rejects.reject(fmt::format("result for task {} of a {}-task job", r.task_id(),
                                     job->total()));
          break;
      }
    }
  }

  void handle(const zmq::message_t& frame, bool more) {
    if (more) {
      rejects.reject("multipart message on the results socket");
      return;
    }
    Decoded d = decode(frame);
    if (!d) {
      rejects.reject(d.error);
      return;
    }
    switch (d.envelope->body_case()) {
      case v1::Envelope::kResults: on_results(d.envelope->results()); break;
      case v1::Envelope::kBatchStart: on_batch_start(d.envelope->batch_start()); break;
      default:
        rejects.reject(fmt::format("unexpected '{}' message on the results socket",
                                   body_name(*d.envelope)));
    }
  }

  void progress() {
    const int64_t now = clock.steady_ns();
    if (!job || now - last_progress_ns < ms_to_ns(5000)) return;
    last_progress_ns = now;
    log::info("batch '{}': {}/{} done", job->name(), job->done(), job->total());
  }

  int finish() {
    v1::Report rep = job->report();
    rep.set_rejected_messages(static_cast<uint32_t>(rejects.count()));
    if (!opt.report_path.empty()) {
      std::ofstream out(opt.report_path, std::ios::trunc);
      out << report_json(rep) << '\n';
      if (!out) log::error("cannot write report to {}", opt.report_path);
    }
    if (!opt.quiet) {
      fmt::print("{}", report_table(rep));
      std::fflush(stdout);
    }
    v1::Envelope end;
    auto* be = end.mutable_batch_end();
    be->set_job_id(job->job_id());
    be->set_tasks_ok(job->ok());
    be->set_tasks_failed(job->failed());
    be->set_stop_workers(!opt.keep_workers);
    publish(kTopicCtl, end);
    if (!opt.keep_workers) {
      // Repeated for a second: a worker whose subscription is still joining gets it too.
      v1::Envelope kill;
      kill.mutable_kill();
      for (int i = 0; i < 10 && !stop_requested(); ++i) {
        publish(kTopicCtl, kill);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return job->failed() > 0 ? kExitTasksFailed : kExitOk;
  }

  int run() {
    log::info("results on {}, control on {}", results_ep, control_ep);
    zmq::message_t frame;
    while (!stop_requested()) {
      zmq::pollitem_t items[] = {{results.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(200));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      // Drain what is queued, then publish one ack message for all of it.
      for (int i = 0; i < 1000; ++i) {
        std::optional<size_t> got;
        try {
          got = results.recv(frame, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t& e) {
          if (e.num() == EINTR) break;
          throw;
        }
        if (!got) break;
        const bool more = frame.more();
        handle(frame, more);
        while (frame.more()) (void)results.recv(frame, zmq::recv_flags::none);  // discard extras
      }
      flush_acks();
      progress();
      if (job && job->complete()) return finish();
    }
    log::warn("interrupted{}", job ? fmt::format(" with batch '{}' at {}/{}", job->name(),
                                                 job->done(), job->total())
                                   : std::string());
    return kExitInterrupted;
  }
};

Sink::Sink(SinkOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Sink::~Sink() = default;
const std::string& Sink::results_endpoint() const { return impl_->results_ep; }
const std::string& Sink::control_endpoint() const { return impl_->control_ep; }
int Sink::run() { return impl_->run(); }

}  // namespace taskfarm::sink
