#include "sink/sink_core.h"

#include <fmt/core.h>
#include <google/protobuf/arena.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "common/errors.h"
#include "common/state_dir.h"
#include "common/job_state.h"
#include "common/net.h"
#include "common/log.h"
#include "common/report.h"
#include "common/signals.h"
#include "common/text.h"
#include "kernels/inputs.h"
#include "kernels/kernel.h"
#include "sink/aggregator.h"
#include "sink/journal.h"
#include "sink/metrics.h"
#include "sink/outputs.h"
#include "sink/png.h"

namespace taskfarm::sink {
namespace {

// Writes a report through a synced temporary file and a rename: a reader, or a restart after a
// crash, never sees half of one.
void write_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::string error = write_file_atomically(path, text + "\n");
  if (!error.empty()) log::error("{}", error);
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
  uint64_t ventilator_id = 0;           // of the ventilator that started it (0: not said)

  explicit SinkJob(const v1::BatchStart& start)
      : agg(start), spec(start.spec()), ventilator_id(start.ventilator_id()) {
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
  // Acks not yet published, by job: published after the journal has the results they
  // acknowledge.
  std::map<uint64_t, v1::Ack> pending_acks;
  int64_t last_progress_ns = 0;
  uint64_t late_results = 0;
  SinkMetrics metrics;  // totals for the ventilator's /metrics (issue 16)
  int64_t next_stats_ns = 0;
  const std::function<std::string()>* peer = nullptr;  // of the frame being handled
  std::vector<char> arena_block = std::vector<char>(512 << 10);

  // This process: a restarted sink has another epoch (in its heartbeats, acks, acceptances).
  const uint64_t epoch = random_u64();
  int64_t next_heartbeat_ns = 0;
  // --state: the journal, and the jobs whose counts changed since its last commit.
  std::unique_ptr<StateDir> state;
  std::unique_ptr<SinkJournal> journal;
  std::set<uint64_t> dirty;
  std::string journal_error;  // why the last commit failed ("": it did not)
  int64_t next_commit_retry_ns = 0;
  int64_t commit_ns = 0;  // time spent committing (for the log)
  int64_t last_commit_ns = 0;  // when the last progress commit ended

  Impl(const SinkOptions& o, const Clock& c, Publish p)
      : opt(o), clock(c), publish(std::move(p)) {
    if (!opt.state_dir.empty()) open_state();
  }
  ~Impl() {
    if (journal) {
      log::debug("journal {}: {} commits in {:.3f} s", journal->path(), journal->commits(),
                 static_cast<double>(commit_ns) * 1e-9);
    }
  }

  // ------------------------------------------------------------------ journal

  std::filesystem::path image_file(uint64_t id, int entry) const {
    return state->path() / "images" / fmt::format("{}-{}.gray", job_hex(id), entry);
  }

  void open_state() {
    state = std::make_unique<StateDir>(opt.state_dir, "sink");
    journal = std::make_unique<SinkJournal>(state->file("sink.db"));
    SinkJournal::Loaded loaded = journal->load();
    for (const auto& p : loaded.problems) log::error("journal {}: {}; skipped", journal->path(), p);
    for (auto& end : loaded.ended) {
      const uint64_t id = end.batch_end().job_id();
      remember_ended(id, std::move(end));
    }
    for (auto& row : loaded.active) restore_job(row);
    if (!opt.results_dir.empty()) {
      std::error_code ec;
      for (std::filesystem::directory_iterator it(opt.results_dir, ec), end; !ec && it != end;
           it.increment(ec)) {
        if (it->is_directory(ec)) remove_stray_temporaries(it->path());
      }
    }
    if (!opt.report_path.empty()) {
      std::error_code ec;
      std::filesystem::remove(opt.report_path + ".tmp", ec);
    }
    log::info("state in {}: {} job(s) in progress, {} ended", opt.state_dir, active.size(),
              ended.size());
  }

  void restore_job(const SinkJournal::ActiveJob& row) {
    const uint64_t id = row.start.job_id();
    if (auto why = check_start(row.start)) {
      log::error("journal: job {} has a bad start ({}); skipped", job_hex(id), *why);
      return;
    }
    SinkJob& job = active.try_emplace(id, row.start).first->second;
    if (row.has_snapshot && !job.agg.restore(row.snapshot)) {
      // The ventilator sees the sink count fewer tasks than it had acknowledged and runs the
      // job again from the start: nothing is reported that was not counted.
      log::error("journal: the counts of job {} do not fit the job; counting it from the start",
                 job_hex(id));
    }
    job.rejected = row.rejected;
    if (job_has_outputs(row.start.spec())) {
      if (opt.results_dir.empty()) opt.results_dir = "taskfarm-results";
      // Lines past what the journal counts belong to results it does not: they come again.
      job.outputs = std::make_unique<JobOutputs>(opt.results_dir, id, row.start.spec(),
                                                 job.agg.done() > 0 ? row.index_bytes : 0);
    }
    for (int e = 0; e < job.spec.tasks_size(); ++e) {
      if (!job.assembles_image(e)) continue;
      const auto path = image_file(id, e);
      const auto width = static_cast<uint64_t>(job.spec.tasks(e).size());
      std::ifstream in(path, std::ios::binary);
      if (!in || image_bytes + width * width > kMaxImageBytesTotal) continue;
      std::string pixels(width * width, '\0');
      in.read(pixels.data(), static_cast<std::streamsize>(pixels.size()));
      image_bytes += pixels.size();
      job.images.emplace(e, std::move(pixels));
    }
    accepted_one = true;
    last_progress_ns = clock.steady_ns();
    log::info("job '{}' ({}) continues: {}/{} tasks counted", printable(job.agg.name()),
              job_hex(id), job.agg.done(), job.agg.total());
  }

  // Returns: whether the journal may be written now (not right after a failure: retried
  // every half second).
  bool journal_writable() const {
    return journal_error.empty() || clock.steady_ns() >= next_commit_retry_ns;
  }

  // Runs one journal transaction. Returns: whether it was committed; a failure is logged once
  // and remembered (journal_error, in heartbeats) until a commit works again.
  template <typename F>
  bool journal_write(F&& f) {
    if (!journal) return true;
    if (!journal_writable()) return false;
    try {
      journal->write(f);
    } catch (const std::exception& e) {
      if (journal_error.empty()) {
        log::error("cannot write the journal {}: {}; acknowledgements wait until it can",
                   journal->path(), e.what());
      }
      journal_error = e.what();
      next_commit_retry_ns = clock.steady_ns() + ms_to_ns(500);
      return false;
    }
    if (!journal_error.empty()) {
      log::info("the journal {} can be written again", journal->path());
      journal_error.clear();
    }
    return true;
  }

  // Commits the counts of the jobs touched since the last commit. Returns: whether the journal
  // has everything counted so far.
  bool commit() {
    if (!journal) return true;
    if (dirty.empty()) {
      if (journal_error.empty()) return true;
      // A failed write with nothing to count since (a job's start or end): try a real one.
      return journal_write([&](SinkJournal::Batch& b) { b.touch(clock.wall_ns()); });
    }
    const int64_t started = clock.steady_ns();
    const bool ok = journal_write([&](SinkJournal::Batch& b) {
      for (uint64_t id : dirty) {
        auto it = active.find(id);
        if (it == active.end()) continue;
        const SinkJob& job = it->second;
        b.progress(id, job.agg.snapshot(), job.rejected,
                   job.outputs ? job.outputs->index_bytes() : 0);
      }
    });
    if (ok) dirty.clear();
    last_commit_ns = clock.steady_ns();
    commit_ns += last_commit_ns - started;
    return ok;
  }

  void reject(SinkJob* job, std::string_view why) {
    rejects.reject(why, peer && *peer ? (*peer)() : std::string());
    if (job) {
      ++job->rejected;
      if (journal) dirty.insert(job->agg.job_id());
    } else {
      ++unattributed;
    }
  }

  // Returns: whether acks wait for the next commit (opt.min_commit_gap_ms).
  bool acks_deferred() const { return !pending_acks.empty() && journal && opt.min_commit_gap_ms > 0; }

  // Returns: how long the event loop may wait for messages before calling flush_acks again.
  int64_t wait_ms() const {
    if (!acks_deferred()) return 200;
    const int64_t left = last_commit_ns + ms_to_ns(opt.min_commit_gap_ms) - clock.steady_ns();
    return std::clamp<int64_t>(left / 1'000'000 + 1, 1, 200);
  }

  void flush_acks(bool now = true) {
    // With a journal, a commit per --min-commit gap at most: the acks wait until then.
    if (!now && acks_deferred() && journal_error.empty() &&
        clock.steady_ns() < last_commit_ns + ms_to_ns(opt.min_commit_gap_ms)) {
      return;
    }
    // Outputs first, then the journal: a task is acknowledged once its output and index line
    // are written and the journal counts its result.
    for (auto& [id, job] : active) {
      if (job.outputs) job.outputs->flush();
    }
    if (!commit()) return;  // the acks wait (the tasks' leases stay open)
    for (auto& [job_id, ack] : pending_acks) {
      if (ack.done_size() == 0 && ack.retry_size() == 0) continue;
      v1::Envelope env;
      *env.mutable_ack() = std::move(ack);
      env.mutable_ack()->set_job_id(job_id);
      env.mutable_ack()->set_sink_epoch(epoch);
      publish(kTopicAck, env);
    }
    pending_acks.clear();
  }

  // Publishes the heartbeat that tells the ventilator and the workers this sink is alive, and
  // which process it is.
  void heartbeat() {
    const int64_t now = clock.steady_ns();
    if (now < next_heartbeat_ns) return;
    next_heartbeat_ns = now + ms_to_ns(250);
    v1::Envelope env;
    env.mutable_sink_heartbeat()->set_epoch(epoch);
    env.mutable_sink_heartbeat()->set_journal_error(journal_error);
    publish(kTopicCtl, env);
    // A failed commit is retried even when no result comes.
    if (!journal_error.empty() && journal_writable()) flush_acks();
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

  void refuse(uint64_t id, const std::string& name, const std::string& why) {
    v1::Envelope env;
    env.mutable_job_accepted()->set_job_id(id);
    env.mutable_job_accepted()->set_error(why);
    env.mutable_job_accepted()->set_sink_epoch(epoch);
    log::warn("refused job '{}' ({}): {}", printable(name), job_hex(id), why);
    publish(kTopicAck, env);
  }

  // A serving sink takes jobs from one ventilator: when another one starts a job, the jobs of
  // the one before are orphans (it restarted without --state, so nobody will finish them).
  void end_orphans(uint64_t ventilator_id) {
    std::vector<uint64_t> orphans;
    for (const auto& [id, job] : active) {
      if (job.ventilator_id != 0 && job.ventilator_id != ventilator_id) orphans.push_back(id);
    }
    for (uint64_t id : orphans) {
      log::warn("job '{}' ({}): its ventilator restarted without its state (--state DIR); "
                "ending the job as interrupted",
                printable(active.at(id).agg.name()), job_hex(id));
      end_early(id, v1::JOB_INTERRUPTED);
    }
  }

  void on_batch_start(const v1::BatchStart& start) {
    if (farm_id() == 0 && !name_problem(start.farm(), 255, true)) {
      set_farm(start.farm());
      log::info("joined farm '{}'", printable(farm_name()));
    }
    const uint64_t id = start.job_id();
    if (auto e = ended.find(id); e != ended.end()) {
      if (!e->second.has_batch_end()) return;
      publish(kTopicCtl, e->second);  // its end was missed
      // A one-shot sink restarted after its batch ended has nothing more to do.
      if (!opt.serve && active.empty() && !one_shot_exit) {
        const auto& be = e->second.batch_end();
        one_shot_exit = be.state() == v1::JOB_INTERRUPTED ? kExitInterrupted
                        : be.tasks_failed() > 0 || be.state() == v1::JOB_CANCELLED
                            ? kExitTasksFailed
                            : kExitOk;
      }
      return;
    }
    if (!active.count(id)) {
      if (auto why = check_start(start)) {
        reject(nullptr, *why);
        return;
      }
      if (!opt.serve && accepted_one) {
        if (active.empty()) {
          refuse(id, start.name(), "this one-shot sink has taken its batch (taskfarm-sink --serve "
                                   "takes several)");
        } else {
          const auto& [busy_id, busy] = *active.begin();
          refuse(id, start.name(),
                 fmt::format("this one-shot sink is busy with batch '{}' ({}) of another "
                             "ventilator (a restarted one?): restart the sink, or run both with "
                             "--state DIR so that a restart continues the batch",
                             printable(busy.agg.name()), job_hex(busy_id)));
        }
        return;
      }
      if (opt.serve && start.ventilator_id() != 0) end_orphans(start.ventilator_id());
      if (auto why = over_limits(start)) {
        refuse(id, start.name(), *why);
        return;
      }
      // Recorded before it is accepted: the sink answers nothing while it cannot write, and
      // the ventilator asks again.
      if (!journal_write([&](SinkJournal::Batch& b) { b.start(start); })) return;
      SinkJob& job = active.try_emplace(id, start).first->second;
      if (job_has_outputs(start.spec())) {
        if (opt.results_dir.empty()) {
          opt.results_dir = "taskfarm-results";
          log::info("job '{}' returns outputs: writing them to {}/ (taskfarm-sink --results-dir)",
                    printable(start.name()), opt.results_dir);
        }
        // With a journal, an index left by an earlier life of this job is not counted.
        job.outputs = std::make_unique<JobOutputs>(
            opt.results_dir, id, start.spec(),
            journal ? std::optional<uint64_t>(0) : std::nullopt);
      }
      // A one-shot sink lives for its batch: what it rejected before counts too.
      job.unattributed_at_start = opt.serve ? unattributed : 0;
      accepted_one = true;
      last_progress_ns = clock.steady_ns();
      log::info("job '{}' ({}): {} tasks", printable(start.name()), job_hex(id), start.total());
    }
    v1::Envelope env;
    env.mutable_job_accepted()->set_job_id(id);
    env.mutable_job_accepted()->set_sink_epoch(epoch);
    env.mutable_job_accepted()->set_final_tasks(active.at(id).agg.done());
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
    if (state) {  // the band survives a restart of the sink (written before the commit)
      const auto path = image_file(job.agg.job_id(), e);
      std::error_code ec;
      std::filesystem::create_directories(path.parent_path(), ec);
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      const auto offset = static_cast<off_t>(r.output_row() * width);
      if (fd < 0 || ::pwrite(fd, r.output().data(), r.output().size(), offset) !=
                        static_cast<ssize_t>(r.output().size())) {
        log::error("cannot write {}: a restart of the sink would lose this band", path.string());
      }
      if (fd >= 0) ::close(fd);
    }
  }

  void remove_image_files(uint64_t id, SinkJob& job) {
    if (!state) return;
    std::error_code ec;
    for (int e = 0; e < job.spec.tasks_size(); ++e) {
      if (job.assembles_image(e)) std::filesystem::remove(image_file(id, e), ec);
    }
  }

  void on_results(const v1::ResultBatch& batch) {
    const auto& who = batch.worker();
    if (name_problem(who.id(), kMaxWorkerIdBytes, false) && !who.id().empty()) {
      reject(nullptr, fmt::format("results from a worker with a malformed id '{}'", printable(who.id())));
      return;
    }
    if (who.host().size() > 255 || who.device().size() > 255) {
      reject(nullptr, "results from a worker with an oversized host or device name");
      return;
    }
    const int64_t now = clock.wall_ns();
    std::vector<SinkJob*> touched;  // jobs this worker sent results for
    v1::Ack* ack = nullptr;         // of the job of the result at hand
    uint64_t ack_job = 0;
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
      if (!ack || ack_job != r.job_id()) {
        ack_job = r.job_id();
        ack = &pending_acks[ack_job];
        if (journal) dirty.insert(ack_job);
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
          ack->add_done(r.task_id());
          if (result->status() != v1::STATUS_OK) ack->add_failed(r.task_id());
          const int e = job.entry_of(r.task_id());
          if (!result->output().empty() && job.assembles_image(e)) place_band(job, *result);
          if (job.outputs) {
            job.outputs->record(*result, batch.worker().id(), e,
                                r.task_id() - job.starts[static_cast<size_t>(e)]);
          }
          break;
        }
        case Outcome::kDuplicate:  // re-ack: the first ack may have been lost
          ack->add_done(r.task_id());
          break;
        case Outcome::kRetry:
          ack->add_retry(r.task_id());
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
    auto* stats = env.mutable_metrics_sink_stats();
    *stats = metrics.stats(jobs, rejects.count(), late_results);
    if (journal) {
      stats->set_journaled(true);
      stats->set_journal_commits(journal->commits());
      stats->set_journal_commit_seconds(static_cast<double>(commit_ns) * 1e-9);
      stats->set_journal_error(journal_error);
    }
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
      r->set_state(state);  // set when this sink knows the job: waiting will not help
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
    // A failure is logged; the journal then still holds the job, which ends again (with the
    // same report) after a restart.
    journal_write([&](SinkJournal::Batch& b) { b.end(id, end); });
    dirty.erase(id);
    pending_acks.erase(id);
    remove_image_files(id, job);
    publish(kTopicCtl, end);
    remember_ended(id, std::move(end));
    if (state == v1::JOB_INTERRUPTED) return kExitInterrupted;
    return job.agg.failed() > 0 || state == v1::JOB_CANCELLED ? kExitTasksFailed : kExitOk;
  }

  // A job cancelled by a client or interrupted by a stopped role: partial report, then end.
  void end_early(uint64_t id, v1::JobState state) {
    auto it = active.find(id);
    if (it == active.end()) {
      // Ended already: a ventilator asking again missed the end (and its report).
      if (auto e = ended.find(id); e != ended.end() && e->second.has_batch_end()) {
        publish(kTopicCtl, e->second);
      }
      return;
    }
    log::info("job '{}' ({}) {} at {}/{}", printable(it->second.agg.name()), job_hex(id),
              job_state_name(state), it->second.agg.done(), it->second.agg.total());
    flush_acks();
    const int code = end_job(id, it->second, state);
    active.erase(it);
    if (!opt.serve) one_shot_exit = code;
  }

  std::optional<int> finish_complete_jobs() {
    // While the journal cannot be written, jobs pause: their last acks wait for it too.
    if (!journal_error.empty()) return one_shot_exit;
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
void SinkCore::flush_acks(bool now) { impl_->flush_acks(now); }
int64_t SinkCore::wait_ms() const { return impl_->wait_ms(); }
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
void SinkCore::heartbeat() { impl_->heartbeat(); }
uint64_t SinkCore::epoch() const { return impl_->epoch; }
const std::string& SinkCore::journal_error() const { return impl_->journal_error; }
uint64_t SinkCore::journal_commits() const {
  return impl_->journal ? impl_->journal->commits() : 0;
}
uint64_t SinkCore::rejected() const { return impl_->rejects.count(); }
size_t SinkCore::active_jobs() const { return impl_->active.size(); }

}  // namespace taskfarm::sink
