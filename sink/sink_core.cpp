#include "sink/sink_core.h"

#include <fmt/core.h>
#include <google/protobuf/arena.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/errors.h"
#include "common/job_state.h"
#include "common/log.h"
#include "common/report.h"
#include "common/signals.h"
#include "common/text.h"
#include "kernels/inputs.h"
#include "kernels/kernel.h"
#include "sink/aggregator.h"
#include "sink/metrics.h"
#include "sink/outputs.h"
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

std::string job_hex(uint64_t id) { return fmt::format("{:016x}", id); }

// Jobs whose end is remembered, to answer a BatchStart that arrives after the job ended.
constexpr size_t kRememberEnded = 1000;
// Images assembled from mandelbrot bands: the largest one, and all of them together.
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 28;  // 16384 x 16384
constexpr uint64_t kMaxImageBytesTotal = uint64_t{1} << 30;
// Entries of one job's spec the sink keeps (their payloads are not sent to it).
constexpr int kMaxEntries = 1 << 16;

// One job being aggregated, with what the sink knows of its entries to check results.
struct SinkJob {
  JobAggregator agg;
  v1::JobSpec spec;              // without payloads
  std::vector<uint64_t> starts;  // first task id of each entry
  std::map<int, std::string> images;  // entry -> pixels of its image (mandelbrot + keep_output)
  uint64_t rejected = 0;              // frames about this job that were rejected
  // The sink's count of rejected frames that name no job, when this job started: those
  // rejected while it runs count in its report too.
  uint64_t unattributed_at_start = 0;

  std::unique_ptr<JobOutputs> outputs;  // index and outputs, for jobs that return them

  explicit SinkJob(const v1::BatchStart& start) : agg(start), spec(start.spec()) {
    uint64_t first = 0;
    for (const auto& t : spec.tasks()) {
      starts.push_back(first);
      first += t.count();
    }
  }
  // Returns: the entry that task `id` (< total) belongs to.
  int entry_of(uint64_t id) const {
    return static_cast<int>(std::upper_bound(starts.begin(), starts.end(), id) - starts.begin()) -
           1;
  }
  bool assembles_image(int entry) const {
    const auto& t = spec.tasks(entry);
    return spec.keep_output() && t.kernel() == "mandelbrot" && t.size() > 0 &&
           static_cast<uint64_t>(t.size()) * static_cast<uint64_t>(t.size()) <= kMaxImagePixels;
  }
};

}  // namespace

struct SinkCore::Impl {
  SinkOptions opt;
  const Clock& clock;
  Publish publish;
  RejectCounter rejects{"results socket"};
  uint64_t unattributed = 0;  // rejections that name no job we know

  std::map<uint64_t, SinkJob> active;
  std::map<uint64_t, v1::Envelope> ended;  // BatchEnd of finished jobs, to publish again
  std::deque<uint64_t> ended_order;
  uint64_t image_bytes = 0;  // all assembled images together
  bool accepted_one = false;  // one-shot mode takes a single job
  std::optional<int> one_shot_exit;
  v1::Ack pending_ack;  // acks not yet published
  int64_t last_progress_ns = 0;
  uint64_t late_results = 0;
  SinkMetrics metrics;  // totals for the ventilator's /metrics (issue 16)
  int64_t next_stats_ns = 0;
  const std::function<std::string()>* peer = nullptr;  // of the frame being handled
  std::vector<char> arena_block = std::vector<char>(512 << 10);

  Impl(const SinkOptions& o, const Clock& c, Publish p)
      : opt(o), clock(c), publish(std::move(p)) {}

  void reject(SinkJob* job, std::string_view why) {
    rejects.reject(why, peer && *peer ? (*peer)() : std::string());
    if (job) {
      ++job->rejected;
    } else {
      ++unattributed;
    }
  }

  void flush_acks() {
    // Outputs first: a task is acknowledged once its output and index line are written.
    for (auto& [id, job] : active) {
      if (job.outputs) job.outputs->flush();
    }
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

  // Returns: why the BatchStart is malformed (dropped as rejected), or nullopt.
  static std::optional<std::string> check_start(const v1::BatchStart& start) {
    const auto& spec = start.spec();
    if (start.total() == 0 || spec.tasks_size() == 0 || spec.tasks_size() > kMaxEntries) {
      return fmt::format("batch_start with {} tasks in {} entries", start.total(),
                         spec.tasks_size());
    }
    uint64_t total = 0;
    for (const auto& t : spec.tasks()) {
      if (t.count() == 0 || t.count() > start.total() - total) {
        return std::string("batch_start whose entries do not add up to its total");
      }
      total += t.count();
      if (!t.payload().empty()) return std::string("batch_start carrying payloads");
    }
    if (total != start.total()) {
      return std::string("batch_start whose entries do not add up to its total");
    }
    if (start.max_attempts() > kMaxMaxAttempts) {
      return fmt::format("batch_start with max_attempts {}", start.max_attempts());
    }
    return std::nullopt;
  }

  // Returns: why a well-formed job is over this sink's limits (the job is refused with the
  // reason), or nullopt.
  std::optional<std::string> over_limits(const v1::BatchStart& start) const {
    if (start.total() > opt.max_tasks_per_job) {
      return fmt::format("{} tasks, above its limit of {} (taskfarm-sink --max-tasks)",
                         start.total(), opt.max_tasks_per_job);
    }
    if (active.size() >= opt.max_jobs) {
      return fmt::format("the sink has {} jobs in progress, its limit (taskfarm-sink --max-jobs)",
                         active.size());
    }
    return std::nullopt;
  }

  void on_batch_start(const v1::BatchStart& start) {
    const uint64_t id = start.job_id();
    if (auto e = ended.find(id); e != ended.end()) {
      if (e->second.has_batch_end()) publish(kTopicCtl, e->second);  // its end was missed
      return;
    }
    if (!active.count(id)) {
      if (auto why = check_start(start)) {
        reject(nullptr, *why);
        return;
      }
      if (!opt.serve && accepted_one) {
        log::warn("ignoring job '{}' ({}): this sink takes one batch (use --serve)",
                  printable(start.name()), job_hex(id));
        return;
      }
      if (auto why = over_limits(start)) {
        v1::Envelope env;
        env.mutable_job_accepted()->set_job_id(id);
        env.mutable_job_accepted()->set_error(*why);
        log::warn("refused job '{}' ({}): {}", printable(start.name()), job_hex(id),
                  env.job_accepted().error());
        publish(kTopicAck, env);
        return;
      }
      SinkJob& job = active.try_emplace(id, start).first->second;
      if (job_has_outputs(start.spec())) {
        if (opt.results_dir.empty()) {
          opt.results_dir = "taskfarm-results";
          log::info("job '{}' returns outputs: writing them to {}/ (taskfarm-sink --results-dir)",
                    printable(start.name()), opt.results_dir);
        }
        job.outputs = std::make_unique<JobOutputs>(opt.results_dir, id, start.spec());
      }
      // A one-shot sink lives for its batch: what it rejected before counts too.
      job.unattributed_at_start = opt.serve ? unattributed : 0;
      accepted_one = true;
      last_progress_ns = clock.steady_ns();
      log::info("job '{}' ({}): {} tasks", printable(start.name()), job_hex(id), start.total());
    }
    v1::Envelope env;
    env.mutable_job_accepted()->set_job_id(id);
    publish(kTopicAck, env);
  }

  // Returns: why the result does not belong to the task it names, or nullopt. Such results
  // are dropped (a bug or a hostile peer: the task's lease stays open).
  static std::optional<std::string> check_identity(const SinkJob& job, const v1::Result& r) {
    if (r.task_id() >= job.agg.total()) {
      return fmt::format("result for task {} of a {}-task job", r.task_id(), job.agg.total());
    }
    const auto& entry = job.spec.tasks(job.entry_of(r.task_id()));
    if (r.kernel() != entry.kernel()) {
      return fmt::format("result of task {} names kernel '{}', the job's is '{}'", r.task_id(),
                         printable(r.kernel()), printable(entry.kernel()));
    }
    const uint32_t max_attempts = job.spec.max_attempts() == 0 ? 100 : job.spec.max_attempts();
    if (r.attempt() == 0 || r.attempt() > max_attempts) {
      return fmt::format("result of task {} with attempt {} (job allows {})", r.task_id(),
                         r.attempt(), max_attempts);
    }
    if (r.status() != v1::STATUS_OK && r.status() != v1::STATUS_FAILED) {
      return fmt::format("result of task {} without a status", r.task_id());
    }
    return std::nullopt;
  }

  // Returns: why the result's output cannot be the task's, or nullopt. The task is then
  // retried like a device failure: another worker may produce a good one.
  std::optional<std::string> check_output(const SinkJob& job, const v1::Result& r) const {
    if (r.output().empty()) return std::nullopt;
    if (r.output().size() > opt.max_output_bytes) {
      return fmt::format("task {} returned {:.1f} MiB of output, above the sink's limit of {} MiB "
                         "(--max-output-mb)",
                         r.task_id(), static_cast<double>(r.output().size()) / (1 << 20),
                         opt.max_output_bytes >> 20);
    }
    const int e = job.entry_of(r.task_id());
    const std::string& kernel = job.spec.tasks(e).kernel();
    if (job.outputs && r.status() == v1::STATUS_OK &&
        (kernel == "exec" || kernels::KernelCatalog::builtins().find(kernel) == nullptr)) {
      return std::nullopt;  // a command's stdout, a plugin's output: any bytes
    }
    if (!job.assembles_image(e) || r.status() != v1::STATUS_OK) {
      return fmt::format("task {} returned {} output bytes its job did not ask for", r.task_id(),
                         r.output().size());
    }
    const auto& entry = job.spec.tasks(e);
    const auto width = static_cast<uint64_t>(entry.size());
    const uint64_t index = r.task_id() - job.starts[static_cast<size_t>(e)];
    const uint64_t row = kernels::band_begin(width, entry.count(), index);
    const uint64_t rows = kernels::band_begin(width, entry.count(), index + 1) - row;
    if (r.output_width() != width || r.output_row() != row || r.output().size() != rows * width) {
      return fmt::format(
          "task {} returned a band of {} bytes at row {} width {}; its band is {} rows at row {} "
          "of a {}-pixel image",
          r.task_id(), r.output().size(), r.output_row(), r.output_width(), rows, row, width);
    }
    return std::nullopt;
  }

  void place_band(SinkJob& job, const v1::Result& r) {
    const int e = job.entry_of(r.task_id());
    const auto width = static_cast<uint64_t>(job.spec.tasks(e).size());
    auto it = job.images.find(e);
    if (it == job.images.end()) {
      if (image_bytes + width * width > kMaxImageBytesTotal) {
        log::error("job '{}': no room to assemble a {}x{} image (the sink holds {} MiB of images)",
                   printable(job.agg.name()), width, width, image_bytes >> 20);
        return;
      }
      image_bytes += width * width;
      it = job.images.emplace(e, std::string(width * width, '\0')).first;
    }
    // check_output proved row * width + size <= width * width.
    it->second.replace(r.output_row() * width, r.output().size(), r.output());
  }

  void on_results(const v1::ResultBatch& batch) {
    const int64_t now = clock.wall_ns();
    std::vector<SinkJob*> touched;  // jobs this worker sent results for
    for (const auto& r : batch.results()) {
      auto it = active.find(r.job_id());
      if (it == active.end()) {
        if (ended.count(r.job_id())) {
          ++late_results;  // a slow duplicate, or a task of a cancelled job
        } else {
          reject(nullptr, fmt::format("result for unknown job {}", job_hex(r.job_id())));
        }
        continue;
      }
      SinkJob& job = it->second;
      if (auto why = check_identity(job, r)) {
        reject(&job, *why);
        continue;
      }
      if (touched.empty() || touched.back() != &job) touched.push_back(&job);
      if (pending_ack.job_id() != r.job_id()) {
        flush_acks();
        pending_ack.set_job_id(r.job_id());
      }
      const v1::Result* result = &r;
      v1::Result bad_output;
      if (auto why = check_output(job, r)) {
        reject(&job, *why);
        bad_output = r;
        bad_output.clear_output();
        bad_output.set_status(v1::STATUS_FAILED);
        bad_output.set_retryable(true);
        bad_output.set_error(fmt::format("worker {} returned an invalid output: {}",
                                         printable(batch.worker().id()), *why));
        result = &bad_output;
      }
      switch (job.agg.add(*result, batch.worker(), now)) {
        case Outcome::kFinal: {
          pending_ack.add_done(r.task_id());
          if (result->status() != v1::STATUS_OK) pending_ack.add_failed(r.task_id());
          const int e = job.entry_of(r.task_id());
          if (!result->output().empty() && job.assembles_image(e)) place_band(job, *result);
          if (job.outputs) {
            job.outputs->record(*result, batch.worker().id(), e,
                                r.task_id() - job.starts[static_cast<size_t>(e)]);
          }
          break;
        }
        case Outcome::kDuplicate:  // re-ack: the first ack may have been lost
          pending_ack.add_done(r.task_id());
          break;
        case Outcome::kRetry:
          pending_ack.add_retry(r.task_id());
          break;
        case Outcome::kInvalid:  // check_identity let it through: cannot happen
          reject(&job, fmt::format("result for task {}", r.task_id()));
          break;
      }
    }
    for (SinkJob* job : touched) job->agg.touch_worker(batch.worker());  // GPU memory
  }

  void handle(const void* data, size_t size, bool more, bool from_head) {
    if (more) {
      reject(nullptr, "multipart message on the results socket");
      return;
    }
    // One arena per frame, its first block reused: parsing 1024 results costs no malloc.
    google::protobuf::ArenaOptions options;
    options.initial_block = arena_block.data();
    options.initial_block_size = arena_block.size();
    google::protobuf::Arena arena(options);
    auto* env = google::protobuf::Arena::CreateMessage<v1::Envelope>(&arena);
    if (auto err = decode_into(data, size, *env)) {
      reject(nullptr, *err);
      return;
    }
    const auto body = env->body_case();
    if (!from_head && (body == v1::Envelope::kBatchStart || body == v1::Envelope::kCancelJob)) {
      reject(nullptr,
             fmt::format("'{}' message from a key without the head role", body_name(*env)));
      return;
    }
    switch (body) {
      case v1::Envelope::kResults: on_results(env->results()); break;
      case v1::Envelope::kBatchStart: on_batch_start(env->batch_start()); break;
      case v1::Envelope::kCancelJob:
        end_early(env->cancel_job().job_id(), env->cancel_job().state() == v1::JOB_INTERRUPTED
                                                  ? v1::JOB_INTERRUPTED
                                                  : v1::JOB_CANCELLED);
        break;
      default:
        reject(nullptr, fmt::format("unexpected '{}' message on the results socket",
                                    body_name(*env)));
    }
  }

  void on_frame(const void* data, size_t size, bool more,
                const std::function<std::string()>& from, bool from_head) {
    peer = &from;
    struct Reset {
      const std::function<std::string()>*& p;
      ~Reset() { p = nullptr; }
    } reset{peer};
    try {
      handle(data, size, more, from_head);
    } catch (const std::exception& e) {
      // Nothing one message does may end the process; its job state stays consistent because
      // every handler checks before it changes anything.
      reject(nullptr, fmt::format("message made the sink fail: {}", e.what()));
    }
  }

  void publish_stats() {
    const int64_t now = clock.steady_ns();
    if (now < next_stats_ns) return;
    next_stats_ns = now + ms_to_ns(500);
    std::vector<const JobAggregator*> jobs;
    for (const auto& [id, job] : active) jobs.push_back(&job.agg);
    v1::Envelope env;
    *env.mutable_metrics_sink_stats() = metrics.stats(jobs, rejects.count(), late_results);
    publish(kTopicAck, env);
  }

  v1::Envelope on_client_request(const v1::Envelope& request) {
    v1::Envelope reply;
    if (!request.has_results_request()) return reply;
    auto* r = reply.mutable_results_reply();
    const auto& req = request.results_request();
    uint64_t id = 0;
    const std::string& key = req.job_id();
    if (key.size() != 16 || key.find_first_not_of("0123456789abcdef") != std::string::npos) {
      r->set_error(fmt::format("'{}' is not a job id (16 hex digits)", printable(key)));
      return reply;
    }
    id = std::stoull(key, nullptr, 16);
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    if (auto it = active.find(id); it != active.end()) {
      if (it->second.outputs) it->second.outputs->flush();
      state = v1::JOB_RUNNING;
    } else if (auto e = ended.find(id); e != ended.end()) {
      state = e->second.has_batch_end() ? e->second.batch_end().state() : v1::JOB_CANCELLED;
    }
    const uint64_t max_bytes =
        std::clamp<uint64_t>(req.max_bytes() ? req.max_bytes() : uint64_t{16} << 20, 1,
                             uint64_t{64} << 20);
    if (opt.results_dir.empty() ||
        !read_outputs(opt.results_dir, id, req.offset(), max_bytes, *r)) {
      if (state == v1::JOB_RUNNING) {
        r->set_error(fmt::format("job {} returns no outputs (its kernels write none; the report "
                                 "has its results)",
                                 key));
      } else {
        r->set_error(fmt::format("no outputs of job {} here (not a job of this sink, or none)",
                                 key));
      }
      return reply;
    }
    r->set_state(state);
    // Complete once the job is over and every line has been read; a job this sink no longer
    // remembers (a restart) is over if its report is there.
    const bool over = state != v1::JOB_RUNNING &&
                      (state != v1::JOB_STATE_UNSPECIFIED ||
                       std::filesystem::exists(std::filesystem::path(opt.results_dir) / key /
                                               "report.json"));
    std::error_code ec;
    const auto size = std::filesystem::file_size(
        std::filesystem::path(opt.results_dir) / key / "index.jsonl", ec);
    r->set_complete(over && !ec && r->next_offset() >= size);
    return reply;
  }

  void progress() {
    const int64_t now = clock.steady_ns();
    if (active.empty() || now - last_progress_ns < ms_to_ns(5000)) return;
    last_progress_ns = now;
    for (const auto& [id, job] : active) {
      log::info("job '{}': {}/{} done", printable(job.agg.name()), job.agg.done(),
                job.agg.total());
    }
  }

  void write_reports(uint64_t id, const v1::Report& rep) {
    const std::string json = report_json(rep);
    if (!opt.report_path.empty() && !opt.serve) write_atomically(opt.report_path, json);
    if (!opt.results_dir.empty()) {
      write_atomically(std::filesystem::path(opt.results_dir) / job_hex(id) / "report.json", json);
    }
  }

  void write_images(uint64_t id, SinkJob& job) {
    for (auto& [entry, pixels] : job.images) {
      const auto width = static_cast<uint64_t>(job.spec.tasks(entry).size());
      const auto path = std::filesystem::path(opt.results_dir) / job_hex(id) /
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
      image_bytes -= pixels.size();
    }
    job.images.clear();
  }

  // Reports a job and publishes its end. Returns: the exit code it stands for.
  int end_job(uint64_t id, SinkJob& job, v1::JobState state) {
    if (job.outputs) job.outputs->flush();  // the index is whole before the report appears
    v1::Report rep = job.agg.report();
    metrics.fold(job.agg);
    rep.set_rejected_messages(
        static_cast<uint32_t>(job.rejected + (unattributed - job.unattributed_at_start)));
    rep.set_state(std::string(job_state_name(state)));
    write_reports(id, rep);
    if (state == v1::JOB_DONE || state == v1::JOB_FAILED) {
      write_images(id, job);
    } else {
      for (const auto& [entry, pixels] : job.images) image_bytes -= pixels.size();
      job.images.clear();
    }
    if (!opt.quiet && !opt.serve) {
      fmt::print("{}", report_table(rep));
      std::fflush(stdout);
    }
    log::info("job '{}' ({}) {}: {} ok, {} failed of {}, {:.3f} s", printable(job.agg.name()),
              job_hex(id), job_state_name(state), rep.tasks_ok(), rep.tasks_failed(),
              rep.tasks_total(), rep.elapsed_s());
    v1::Envelope end;
    auto* be = end.mutable_batch_end();
    be->set_job_id(id);
    be->set_tasks_ok(job.agg.ok());
    be->set_tasks_failed(job.agg.failed());
    be->set_stop_workers(!opt.serve && !opt.keep_workers);
    be->set_state(state);
    *be->mutable_report() = rep;
    publish(kTopicCtl, end);
    remember_ended(id, std::move(end));
    if (state == v1::JOB_INTERRUPTED) return kExitInterrupted;
    return job.agg.failed() > 0 || state == v1::JOB_CANCELLED ? kExitTasksFailed : kExitOk;
  }

  // A job cancelled by a client or interrupted by a stopped role: partial report, then end.
  void end_early(uint64_t id, v1::JobState state) {
    auto it = active.find(id);
    if (it == active.end()) return;
    log::info("job '{}' ({}) {} at {}/{}", printable(it->second.agg.name()), job_hex(id),
              job_state_name(state), it->second.agg.done(), it->second.agg.total());
    if (pending_ack.job_id() == id) flush_acks();
    const int code = end_job(id, it->second, state);
    active.erase(it);
    if (!opt.serve) one_shot_exit = code;
  }

  std::optional<int> finish_complete_jobs() {
    for (auto it = active.begin(); it != active.end();) {
      if (!it->second.agg.complete()) {
        ++it;
        continue;
      }
      const v1::JobState state = it->second.agg.failed() > 0 ? v1::JOB_FAILED : v1::JOB_DONE;
      const int code = end_job(it->first, it->second, state);
      it = active.erase(it);
      if (!opt.serve) one_shot_exit = code;
    }
    return one_shot_exit;
  }

  int stop() {
    flush_acks();
    if (opt.serve) {
      log::info("stopping with {} job(s) in progress", active.size());
      return kExitOk;
    }
    if (one_shot_exit) return *one_shot_exit;
    int code = kExitInterrupted;
    for (auto it = active.begin(); it != active.end(); it = active.erase(it)) {
      log::warn("interrupted with job '{}' at {}/{}", printable(it->second.agg.name()),
                it->second.agg.done(), it->second.agg.total());
      code = end_job(it->first, it->second, v1::JOB_INTERRUPTED);
    }
    return code;
  }
};

SinkCore::SinkCore(const SinkOptions& options, const Clock& clock, Publish publish)
    : impl_(std::make_unique<Impl>(options, clock, std::move(publish))) {}
SinkCore::~SinkCore() = default;
void SinkCore::on_frame(const void* data, size_t size, bool more,
                        const std::function<std::string()>& peer, bool from_head) {
  impl_->on_frame(data, size, more, peer, from_head);
}
void SinkCore::publish_stats() { impl_->publish_stats(); }
void SinkCore::flush_acks() { impl_->flush_acks(); }
std::optional<int> SinkCore::finish_complete_jobs() { return impl_->finish_complete_jobs(); }
void SinkCore::progress() { impl_->progress(); }
int SinkCore::stop() { return impl_->stop(); }
v1::Envelope SinkCore::on_client_request(const v1::Envelope& request) {
  try {
    return impl_->on_client_request(request);
  } catch (const std::exception& e) {
    v1::Envelope reply;
    reply.mutable_results_reply()->set_error(fmt::format("the sink failed: {}", e.what()));
    return reply;
  }
}
uint64_t SinkCore::rejected() const { return impl_->rejects.count(); }
size_t SinkCore::active_jobs() const { return impl_->active.size(); }

}  // namespace taskfarm::sink
