#include "ventilator/journal.h"

#include <fmt/core.h>

#include "common/journal_schema.h"
#include "common/net.h"
#include "common/task_ranges.h"
#include "ventilator/job_table.h"

namespace taskfarm::ventilator {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY,          -- job id (its 64 bits as a signed integer)
  name TEXT NOT NULL,
  priority INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  total INTEGER NOT NULL,
  state INTEGER NOT NULL,          -- taskfarm.v1.JobState
  spec BLOB,                       -- taskfarm.v1.JobSpec, until the job is finished
  submitted_ns INTEGER NOT NULL,   -- wall clock, nanoseconds since 1970
  started_ns INTEGER NOT NULL,     -- 0: not started
  finished_ns INTEGER NOT NULL,    -- 0: not finished
  acked BLOB,                      -- taskfarm.v1.TaskRanges: tasks the sink acknowledged
  done INTEGER NOT NULL,           -- tasks with a final result (finished jobs)
  failed INTEGER NOT NULL,
  error TEXT NOT NULL,
  report BLOB                      -- taskfarm.v1.Report, once the sink sent it
);
)sql";

int64_t to_wall(int64_t steady_ns, int64_t offset) { return steady_ns == 0 ? 0 : steady_ns + offset; }

}  // namespace

VentilatorJournal::VentilatorJournal(const std::string& path)
    : db_(open_journal(path, sqlite::Database::Sync::kNormal, "ventilator", kSchema)) {
  put_ = std::make_unique<sqlite::Statement>(
      db_->handle(),
      "INSERT OR REPLACE INTO jobs(id, name, priority, max_attempts, total, state, spec, "
      "submitted_ns, started_ns, finished_ns, acked, done, failed, error, report) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
  update_ = std::make_unique<sqlite::Statement>(
      db_->handle(),
      "UPDATE jobs SET state = ?2, started_ns = ?3, finished_ns = ?4, acked = ?5, done = ?6, "
      "failed = ?7, error = ?8, report = ?9, spec = CASE WHEN ?10 THEN NULL ELSE spec END "
      "WHERE id = ?1");
  progress_ = std::make_unique<sqlite::Statement>(
      db_->handle(), "UPDATE jobs SET acked = ?2, failed = ?3 WHERE id = ?1");
  erase_ = std::make_unique<sqlite::Statement>(db_->handle(), "DELETE FROM jobs WHERE id = ?1");
  touch_ = std::make_unique<sqlite::Statement>(
      db_->handle(), "INSERT OR REPLACE INTO meta(key, value) VALUES('written_ns', ?1)");
  db_->transaction([&] {
    sqlite::Statement get(db_->handle(), "SELECT value FROM meta WHERE key = 'ventilator_id'");
    if (get.step()) {
      ventilator_id_ = get.uint64(0);
      return;
    }
    do ventilator_id_ = random_u64(); while (ventilator_id_ == 0);
    sqlite::Statement put(db_->handle(),
                          "INSERT INTO meta(key, value) VALUES('ventilator_id', ?1)");
    put.bind(1, ventilator_id_).run();
  });
}

VentilatorJournal::~VentilatorJournal() = default;

VentilatorJournal::Loaded VentilatorJournal::load(int64_t now_steady_ns, int64_t now_wall_ns) {
  Loaded out;
  const int64_t offset = now_steady_ns - now_wall_ns;  // wall -> steady
  sqlite::Statement rows(db_->handle(),
                         "SELECT id, name, priority, max_attempts, total, state, spec, "
                         "submitted_ns, started_ns, finished_ns, acked, done, failed, error, "
                         "report FROM jobs ORDER BY submitted_ns, id");
  while (rows.step()) {
    JobRecord rec;
    rec.id = rows.uint64(0);
    rec.name = rows.text(1);
    rec.priority = static_cast<int32_t>(rows.int64(2));
    rec.max_attempts = static_cast<uint32_t>(rows.int64(3));
    rec.total = rows.uint64(4);
    const auto state = static_cast<int>(rows.int64(5));
    rec.state = v1::JobState_IsValid(state) ? static_cast<v1::JobState>(state)
                                             : v1::JOB_STATE_UNSPECIFIED;
    auto steady = [&](int column) { return rows.int64(column) == 0 ? 0 : rows.int64(column) + offset; };
    rec.submitted_ns = steady(7);
    rec.started_ns = steady(8);
    rec.finished_ns = steady(9);
    rec.done = rows.uint64(11);
    rec.failed = rows.uint64(12);
    rec.error = rows.text(13);
    auto fail = [&](const std::string& why) {
      out.problems.push_back(fmt::format("job {:016x}: {}: it ends as failed", rec.id, why));
      rec.error = fmt::format("its journal row was unreadable after a restart ({})", why);
      rec.state = v1::JOB_FAILED;
      rec.job.reset();
      if (rec.finished_ns == 0) rec.finished_ns = now_steady_ns;
    };
    if (rec.state == v1::JOB_STATE_UNSPECIFIED) fail(fmt::format("unknown state {}", state));
    if (!rows.is_null(14)) {
      v1::Report report;
      if (report.ParseFromArray(rows.blob(14).data(), static_cast<int>(rows.blob(14).size()))) {
        rec.report = std::move(report);
      } else {
        out.problems.push_back(fmt::format("job {:016x}: its report is unreadable", rec.id));
      }
    }
    if (!rec.finished()) {
      v1::JobSpec spec;
      v1::TaskRanges acked;
      if (!spec.ParseFromArray(rows.blob(6).data(), static_cast<int>(rows.blob(6).size()))) {
        fail("its spec is unreadable");
      } else if (!acked.ParseFromArray(rows.blob(10).data(),
                                       static_cast<int>(rows.blob(10).size())) ||
                 !from_task_ranges(acked, rec.acked_tasks, rec.total)) {
        fail("its acknowledged tasks are unreadable");
      } else {
        try {
          rec.spec_bytes = spec.SpaceUsedLong();
          rec.job = std::make_unique<jobs::Job>(rec.id, std::move(spec));
          if (rec.job->total() != rec.total) fail("its spec does not match its task count");
        } catch (const std::exception& e) {
          fail(fmt::format("its spec is invalid ({})", e.what()));
        }
      }
    }
    out.jobs.push_back(std::move(rec));
  }
  return out;
}

void VentilatorJournal::Batch::put(const JobRecord& job, int64_t wall_offset_ns) {
  auto& j = j_;
  j.spec_.clear();
  j.done_.clear();
  j.report_.clear();
  auto& st = *j.put_;
  st.bind(1, job.id).bind_text(2, job.name).bind(3, job.priority).bind(4, job.max_attempts);
  st.bind(5, job.total).bind(6, static_cast<int64_t>(job.state));
  if (job.job && !job.finished()) {
    job.job->spec().SerializeToString(&j.spec_);
    st.bind_blob(7, j.spec_);
  } else {
    st.bind_null(7);
  }
  st.bind(8, to_wall(job.submitted_ns, wall_offset_ns))
      .bind(9, to_wall(job.started_ns, wall_offset_ns))
      .bind(10, to_wall(job.finished_ns, wall_offset_ns));
  to_task_ranges(job.acked_tasks).SerializeToString(&j.done_);
  st.bind_blob(11, j.done_);
  st.bind(12, job.done).bind(13, job.failed).bind_text(14, job.error);
  if (job.report) {
    job.report->SerializeToString(&j.report_);
    st.bind_blob(15, j.report_);
  } else {
    st.bind_null(15);
  }
  st.run();
}

void VentilatorJournal::Batch::update(const JobRecord& job, int64_t wall_offset_ns) {
  auto& j = j_;
  j.done_.clear();
  j.report_.clear();
  auto& st = *j.update_;
  st.bind(1, job.id).bind(2, static_cast<int64_t>(job.state));
  st.bind(3, to_wall(job.started_ns, wall_offset_ns)).bind(4, to_wall(job.finished_ns, wall_offset_ns));
  to_task_ranges(job.acked_tasks).SerializeToString(&j.done_);
  st.bind_blob(5, j.done_).bind(6, job.done).bind(7, job.failed).bind_text(8, job.error);
  if (job.report) {
    job.report->SerializeToString(&j.report_);
    st.bind_blob(9, j.report_);
  } else {
    st.bind_null(9);
  }
  st.bind(10, static_cast<int64_t>(job.finished() ? 1 : 0));
  st.run();
}

void VentilatorJournal::Batch::progress(const JobRecord& job) {
  j_.done_.clear();
  to_task_ranges(job.acked_tasks).SerializeToString(&j_.done_);
  j_.progress_->bind(1, job.id).bind_blob(2, j_.done_).bind(3, job.failed).run();
}

void VentilatorJournal::Batch::erase(uint64_t job_id) { j_.erase_->bind(1, job_id).run(); }

void VentilatorJournal::Batch::touch(int64_t wall_ns) { j_.touch_->bind(1, wall_ns).run(); }

}  // namespace taskfarm::ventilator
