// The sink's journal (--state DIR: DIR/sink.db, SQLite in WAL mode). Per job: its BatchStart;
// while it runs, the aggregator's snapshot (counts, digest, final task ids as ranges, ...) and
// how much of its outputs index is accounted for; once it ended, its BatchEnd with the report.
// The sink commits a job's snapshot before it publishes the acks of the results it counts, so
// an acknowledged result is never lost to a crash of the sink.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/sqlite.h"
#include "taskfarm.pb.h"

namespace taskfarm::sink {

class SinkJournal {
 public:
  // Ended jobs kept (their BatchEnd is published again to a ventilator that missed it).
  static constexpr int64_t kKeepEnded = 1000;

  struct ActiveJob {
    v1::BatchStart start;
    v1::AggregatorSnapshot snapshot;
    bool has_snapshot = false;  // false: nothing counted yet
    uint64_t rejected = 0;      // frames about the job that were rejected
    uint64_t index_bytes = 0;   // bytes of its outputs index that are accounted for
  };
  struct Loaded {
    std::vector<ActiveJob> active;
    std::vector<v1::Envelope> ended;  // BatchEnd envelopes, oldest first
    std::vector<std::string> problems;  // rows that could not be read (skipped)
  };

  // Opens (or creates) `path`, checks it. Throws: SetupError naming the file and the reason.
  explicit SinkJournal(const std::string& path,
                       sqlite::Database::Sync sync = sqlite::Database::Sync::kNormal);
  ~SinkJournal();

  // Returns: what the journal holds. Unreadable rows are skipped and named in `problems`.
  Loaded load();

  // One transaction of changes. Its methods throw sqlite::Error.
  class Batch {
   public:
    void start(const v1::BatchStart& start);
    void progress(uint64_t job_id, const v1::AggregatorSnapshot& snapshot, uint64_t rejected,
                  uint64_t index_bytes);
    void end(uint64_t job_id, const v1::Envelope& batch_end);
    // A small real write (the time, in the meta table): whether writes work again.
    void touch(int64_t wall_ns);

   private:
    friend class SinkJournal;
    explicit Batch(SinkJournal& j) : j_(j) {}
    SinkJournal& j_;
  };
  // Runs `f(batch)` in one transaction and commits it.
  // Throws: sqlite::Error (disk full, read-only, I/O error); nothing is then written.
  template <typename F>
  void write(F&& f) {
    db_->transaction([&] {
      Batch b(*this);
      f(b);
    });
    ++commits_;
  }

  uint64_t commits() const { return commits_; }
  const std::string& path() const { return db_->path(); }

 private:
  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<sqlite::Statement> put_start_, put_progress_, put_end_, trim_ended_, touch_;
  std::string scratch_;
  int64_t ended_seq_ = 0;
  uint64_t commits_ = 0;
};

}  // namespace taskfarm::sink
