#include "sink/sink.h"

#include <fmt/core.h>
#include <google/protobuf/arena.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "sink/aggregator.h"
#include "sink/png.h"

namespace taskfarm::sink {
namespace {

// Writes `text` to `path` through a temporary file, so readers never see half a report.
void write_atomically(const std::filesystem::path& path, const std::string& text) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << '\n';
    if (!out) {
      log::error("cannot write {}", tmp);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) log::error("cannot write {}: {}", path.string(), ec.message());
}

constexpr size_t kRememberEnded = 1000;

}  // namespace

struct Sink::Impl {
  SinkOptions opt;
  const Clock& clock;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  zmq::socket_t results{ctx, zmq::socket_type::pull};
  zmq::socket_t control{ctx, zmq::socket_type::pub};
  std::string results_ep, control_ep;
  RejectCounter rejects{"results socket"};

  std::map<uint64_t, JobAggregator> active;
  // Artifacts being assembled: job -> image width -> pixels (one grey byte each).
  std::map<uint64_t, std::map<uint64_t, std::string>> images;
  static constexpr uint64_t kMaxImagePixels = uint64_t{1} << 28;  // 16384 x 16384
  std::map<uint64_t, v1::Envelope> ended;  // BatchEnd of finished jobs (empty body: cancelled)
  std::deque<uint64_t> ended_order;
  bool accepted_one = false;                // one-shot mode takes a single job
  v1::Ack pending_ack;                      // acks not yet published
  int64_t last_progress_ns = 0;
  uint64_t late_results = 0;

  Impl(SinkOptions o, const Clock& c) : opt(std::move(o)), clock(c) {
    configure_socket(results, opt.max_message_bytes);
    results.set(zmq::sockopt::rcvhwm, 10000);
    configure_socket(control, opt.max_message_bytes, 2000);  // linger: flush BatchEnd/Kill
    control.set(zmq::sockopt::sndhwm, 100000);
    curve.make_server(results, ServerSocket::kResults);
    curve.make_server(control, ServerSocket::kControl);
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

  void remember_ended(uint64_t id, v1::Envelope end) {
    ended[id] = std::move(end);
    ended_order.push_back(id);
    while (ended_order.size() > kRememberEnded) {
      ended.erase(ended_order.front());
      ended_order.pop_front();
    }
  }

  void on_batch_start(const v1::BatchStart& start) {
    const uint64_t id = start.job_id();
    if (auto e = ended.find(id); e != ended.end()) {
      if (e->second.has_batch_end()) publish(kTopicCtl, e->second);  // its end was missed
      return;
    }
    if (!active.count(id)) {
      if (start.total() == 0 || start.total() > UINT32_MAX) {
        rejects.reject(fmt::format("batch_start with {} tasks", start.total()));
        return;
      }
      if (!opt.serve && accepted_one) {
        log::warn("ignoring job '{}' ({:016x}): this sink takes one batch (use --serve)",
                  start.name(), id);
        return;
      }
      active.emplace(id, JobAggregator(start));
      accepted_one = true;
      last_progress_ns = clock.steady_ns();
      log::info("job '{}' ({:016x}): {} tasks", start.name(), id, start.total());
    }
    v1::Envelope env;
    env.mutable_job_accepted()->set_job_id(id);
    publish(kTopicAck, env);
  }

  void on_cancel(uint64_t id) {
    auto it = active.find(id);
    if (it == active.end()) return;
    v1::Report rep = it->second.report();
    rep.set_state("cancelled");
    write_reports(id, rep);
    log::info("job '{}' ({:016x}) cancelled at {}/{}", it->second.name(), id, it->second.done(),
              it->second.total());
    active.erase(it);
    images.erase(id);
    remember_ended(id, v1::Envelope{});
  }

  void on_results(const v1::ResultBatch& batch) {
    const int64_t now = clock.wall_ns();
    std::vector<JobAggregator*> touched;  // jobs this worker sent results for
    for (const auto& r : batch.results()) {
      auto it = active.find(r.job_id());
      if (it == active.end()) {
        if (ended.count(r.job_id())) {
          ++late_results;  // a slow duplicate, or a task of a cancelled job
        } else {
          rejects.reject(fmt::format("result for unknown job {:016x}", r.job_id()));
        }
        continue;
      }
      JobAggregator& job = it->second;
      if (touched.empty() || touched.back() != &job) touched.push_back(&job);
      if (pending_ack.job_id() != r.job_id()) {
        flush_acks();
        pending_ack.set_job_id(r.job_id());
      }
      switch (job.add(r, batch.worker(), now)) {
        case Outcome::kFinal:
          pending_ack.add_done(r.task_id());
          if (r.status() != v1::STATUS_OK) pending_ack.add_failed(r.task_id());
          if (!r.output().empty() && !opt.results_dir.empty()) place_artifact(r.job_id(), r);
          break;
        case Outcome::kDuplicate:  // re-ack: the first ack may have been lost
          pending_ack.add_done(r.task_id());
          break;
        case Outcome::kRetry:
          pending_ack.add_retry(r.task_id());
          break;
        case Outcome::kInvalid:
          rejects.reject(fmt::format("result for task {} of a {}-task job", r.task_id(),
                                     job.total()));
          break;
      }
    }
    for (JobAggregator* job : touched) job->touch_worker(batch.worker());  // GPU memory
  }

  // Copies a mandelbrot band into its job's image (checked against the image bounds).
  void place_artifact(uint64_t job_id, const v1::Result& r) {
    const uint64_t width = r.output_width();
    if (width == 0 || width * width > kMaxImagePixels || r.output().size() % width != 0 ||
        r.output_row() + r.output().size() / width > width) {
      rejects.reject(fmt::format("artifact of task {} does not fit a {}-pixel image", r.task_id(),
                                 width));
      return;
    }
    std::string& image = images[job_id][width];
    if (image.empty()) image.assign(width * width, '\0');
    image.replace(r.output_row() * width, r.output().size(), r.output());
  }

  void write_artifacts(uint64_t id) {
    auto it = images.find(id);
    if (it == images.end()) return;
    for (const auto& [width, pixels] : it->second) {
      const auto path = std::filesystem::path(opt.results_dir) / fmt::format("{:016x}", id) /
                        fmt::format("mandelbrot-{}.png", width);
      std::error_code ec;
      std::filesystem::create_directories(path.parent_path(), ec);
      if (!write_png_gray8(path.string(), static_cast<uint32_t>(width),
                           static_cast<uint32_t>(width),
                           reinterpret_cast<const uint8_t*>(pixels.data()))) {
        log::error("cannot write {}", path.string());
      } else {
        log::info("wrote {}", path.string());
      }
    }
    images.erase(it);
  }

  std::vector<char> arena_block = std::vector<char>(512 << 10);

  void handle(const zmq::message_t& frame, bool more) {
    if (more) {
      rejects.reject("multipart message on the results socket");
      return;
    }
    // One arena per frame, its first block reused: parsing 1024 results costs no malloc.
    google::protobuf::ArenaOptions options;
    options.initial_block = arena_block.data();
    options.initial_block_size = arena_block.size();
    google::protobuf::Arena arena(options);
    auto* env = google::protobuf::Arena::CreateMessage<v1::Envelope>(&arena);
    if (auto err = decode_into(frame.data(), frame.size(), *env)) {
      rejects.reject(*err);
      return;
    }
    const auto body = env->body_case();
    if ((body == v1::Envelope::kBatchStart || body == v1::Envelope::kCancelJob) &&
        !curve.sent_by(frame, kRoleHead)) {  // a worker key shares this socket with the head
      rejects.reject(fmt::format("'{}' message from a key without the head role", body_name(*env)));
      return;
    }
    switch (body) {
      case v1::Envelope::kResults: on_results(env->results()); break;
      case v1::Envelope::kBatchStart: on_batch_start(env->batch_start()); break;
      case v1::Envelope::kCancelJob: on_cancel(env->cancel_job().job_id()); break;
      default:
        rejects.reject(fmt::format("unexpected '{}' message on the results socket",
                                   body_name(*env)));
    }
  }

  void progress() {
    const int64_t now = clock.steady_ns();
    if (active.empty() || now - last_progress_ns < ms_to_ns(5000)) return;
    last_progress_ns = now;
    for (const auto& [id, job] : active) {
      log::info("job '{}': {}/{} done", job.name(), job.done(), job.total());
    }
  }

  void write_reports(uint64_t id, const v1::Report& rep) {
    const std::string json = report_json(rep);
    if (!opt.report_path.empty() && !opt.serve) write_atomically(opt.report_path, json);
    if (!opt.results_dir.empty()) {
      write_atomically(std::filesystem::path(opt.results_dir) / fmt::format("{:016x}", id) /
                           "report.json",
                       json);
    }
  }

  // Reports a complete job. Returns: the exit code it stands for.
  int finish(uint64_t id, JobAggregator& job) {
    v1::Report rep = job.report();
    rep.set_rejected_messages(static_cast<uint32_t>(rejects.count()));
    rep.set_state(job.failed() > 0 ? "failed" : "done");
    write_reports(id, rep);
    write_artifacts(id);
    if (!opt.quiet && !opt.serve) {
      fmt::print("{}", report_table(rep));
      std::fflush(stdout);
    }
    log::info("job '{}' ({:016x}) {}: {} ok, {} failed, {:.3f} s", job.name(), id, rep.state(),
              rep.tasks_ok(), rep.tasks_failed(), rep.elapsed_s());
    v1::Envelope end;
    auto* be = end.mutable_batch_end();
    be->set_job_id(id);
    be->set_tasks_ok(job.ok());
    be->set_tasks_failed(job.failed());
    be->set_stop_workers(!opt.serve && !opt.keep_workers);
    *be->mutable_report() = rep;
    publish(kTopicCtl, end);
    const int code = job.failed() > 0 ? kExitTasksFailed : kExitOk;
    remember_ended(id, std::move(end));
    return code;
  }

  void kill_workers() {
    // Repeated for a second: a worker whose subscription is still joining gets it too.
    v1::Envelope kill;
    kill.mutable_kill();
    for (int i = 0; i < 10 && !stop_requested(); ++i) {
      publish(kTopicCtl, kill);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
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
        handle(frame, frame.more());
        while (frame.more()) (void)results.recv(frame, zmq::recv_flags::none);  // discard extras
      }
      flush_acks();
      progress();
      for (auto it = active.begin(); it != active.end();) {
        if (!it->second.complete()) {
          ++it;
          continue;
        }
        const int code = finish(it->first, it->second);
        it = active.erase(it);
        if (!opt.serve) {
          if (!opt.keep_workers) kill_workers();
          return code;
        }
      }
    }
    if (opt.serve) {
      log::info("stopping with {} job(s) in progress", active.size());
      return kExitOk;
    }
    for (const auto& [id, job] : active) {
      log::warn("interrupted with job '{}' at {}/{}", job.name(), job.done(), job.total());
    }
    return kExitInterrupted;  // the one batch did not complete
  }
};

Sink::Sink(SinkOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
Sink::~Sink() = default;
const std::string& Sink::results_endpoint() const { return impl_->results_ep; }
const std::string& Sink::control_endpoint() const { return impl_->control_ep; }
int Sink::run() { return impl_->run(); }

}  // namespace taskfarm::sink
