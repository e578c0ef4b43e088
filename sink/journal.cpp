#include "sink/journal.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/journal_schema.h"

namespace taskfarm::sink {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY,            -- job id (its 64 bits as a signed integer)
  start BLOB NOT NULL,               -- taskfarm.v1.BatchStart
  snapshot BLOB,                     -- taskfarm.v1.AggregatorSnapshot, while it runs
  rejected INTEGER NOT NULL DEFAULT 0,
  index_bytes INTEGER NOT NULL DEFAULT 0,
  ended BLOB,                        -- taskfarm.v1.Envelope with its BatchEnd, once it ended
  ended_seq INTEGER                  -- order of the endings: the oldest are forgotten
);
)sql";

}  // namespace

SinkJournal::SinkJournal(const std::string& path, sqlite::Database::Sync sync)
    : db_(open_journal(path, sync, "sink", kSchema)) {
  put_start_ = std::make_unique<sqlite::Statement>(
      db_->handle(),
      "INSERT INTO jobs(id, start) VALUES(?1, ?2) ON CONFLICT(id) DO UPDATE SET start = ?2");
  put_progress_ = std::make_unique<sqlite::Statement>(
      db_->handle(),
      "UPDATE jobs SET snapshot = ?2, rejected = ?3, index_bytes = ?4 WHERE id = ?1");
  put_end_ = std::make_unique<sqlite::Statement>(
      db_->handle(), "UPDATE jobs SET snapshot = NULL, ended = ?2, ended_seq = ?3 WHERE id = ?1");
  trim_ended_ = std::make_unique<sqlite::Statement>(
      db_->handle(), "DELETE FROM jobs WHERE ended_seq IS NOT NULL AND ended_seq <= ?1");
  touch_ = std::make_unique<sqlite::Statement>(
      db_->handle(), "INSERT OR REPLACE INTO meta(key, value) VALUES('written_ns', ?1)");
  sqlite::Statement seq(db_->handle(), "SELECT coalesce(max(ended_seq), 0) FROM jobs");
  if (seq.step()) ended_seq_ = seq.int64(0);
}

SinkJournal::~SinkJournal() = default;

SinkJournal::Loaded SinkJournal::load() {
  Loaded out;
  sqlite::Statement rows(db_->handle(),
                         "SELECT id, start, snapshot, rejected, index_bytes, ended FROM jobs "
                         "ORDER BY coalesce(ended_seq, 0), id");
  while (rows.step()) {
    const uint64_t id = rows.uint64(0);
    if (!rows.is_null(5)) {
      v1::Envelope end;
      if (!end.ParseFromArray(rows.blob(5).data(), static_cast<int>(rows.blob(5).size())) ||
          !end.has_batch_end() || end.batch_end().job_id() != id) {
        out.problems.push_back(fmt::format("the end of job {:016x} is unreadable", id));
        continue;
      }
      out.ended.push_back(std::move(end));
      continue;
    }
    ActiveJob job;
    if (!job.start.ParseFromArray(rows.blob(1).data(), static_cast<int>(rows.blob(1).size())) ||
        job.start.job_id() != id) {
      out.problems.push_back(fmt::format("the start of job {:016x} is unreadable", id));
      continue;
    }
    if (!rows.is_null(2)) {
      job.has_snapshot = job.snapshot.ParseFromArray(rows.blob(2).data(),
                                                     static_cast<int>(rows.blob(2).size()));
      if (!job.has_snapshot) {
        out.problems.push_back(fmt::format("the counts of job {:016x} are unreadable", id));
      }
    }
    job.rejected = rows.uint64(3);
    job.index_bytes = rows.uint64(4);
    out.active.push_back(std::move(job));
  }
  return out;
}

void SinkJournal::Batch::start(const v1::BatchStart& start) {
  j_.scratch_.clear();
  start.SerializeToString(&j_.scratch_);
  j_.put_start_->bind(1, start.job_id()).bind_blob(2, j_.scratch_).run();
}

void SinkJournal::Batch::progress(uint64_t job_id, const v1::AggregatorSnapshot& snapshot,
                                  uint64_t rejected, uint64_t index_bytes) {
  j_.scratch_.clear();
  snapshot.SerializeToString(&j_.scratch_);
  j_.put_progress_->bind(1, job_id)
      .bind_blob(2, j_.scratch_)
      .bind(3, rejected)
      .bind(4, index_bytes)
      .run();
}

void SinkJournal::Batch::end(uint64_t job_id, const v1::Envelope& batch_end) {
  j_.scratch_.clear();
  batch_end.SerializeToString(&j_.scratch_);
  j_.put_end_->bind(1, job_id).bind_blob(2, j_.scratch_).bind(3, ++j_.ended_seq_).run();
  j_.trim_ended_->bind(1, j_.ended_seq_ - kKeepEnded).run();
}

void SinkJournal::Batch::touch(int64_t wall_ns) { j_.touch_->bind(1, wall_ns).run(); }

}  // namespace taskfarm::sink
