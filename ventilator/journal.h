// The ventilator's journal (--state DIR: DIR/ventilator.db, SQLite in WAL mode), written by
// JobTable only: one row per job (its spec while it is not finished, name, priority, attempts,
// state, times, error, the acknowledged task ids as ranges, and its report once it ended), and
// the ventilator's identity, which outlives its restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/sqlite.h"

namespace taskfarm::ventilator {

struct JobRecord;

class VentilatorJournal {
 public:
  struct Loaded {
    std::vector<JobRecord> jobs;        // in the order they were submitted
    std::vector<std::string> problems;  // rows that could not be read (what was done to them)
  };

  // Opens (or creates) `path`. Throws: SetupError naming the file and the reason.
  explicit VentilatorJournal(const std::string& path);
  ~VentilatorJournal();

  // Returns: the ventilator's identity, made at the journal's creation.
  uint64_t ventilator_id() const { return ventilator_id_; }

  // Returns: the jobs it holds, with steady-clock times from `now_steady_ns` and
  // `now_wall_ns`. A job whose row cannot be read ends as failed, with the reason.
  Loaded load(int64_t now_steady_ns, int64_t now_wall_ns);

  // One transaction of changes; its methods throw sqlite::Error.
  class Batch {
   public:
    // Writes the whole row, spec included (steady-clock times turned into wall-clock ones by
    // `wall_offset`).
    void put(const JobRecord& job, int64_t wall_offset_ns);
    // Writes the row but its spec, which is dropped once the job is finished.
    void update(const JobRecord& job, int64_t wall_offset_ns);
    // Writes the acknowledged tasks and failures of a running job.
    void progress(const JobRecord& job);
    void erase(uint64_t job_id);
    // A small real write (the time, in the meta table): whether writes work again.
    void touch(int64_t wall_ns);

   private:
    friend class VentilatorJournal;
    explicit Batch(VentilatorJournal& j) : j_(j) {}
    VentilatorJournal& j_;
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
  std::unique_ptr<sqlite::Statement> put_, update_, progress_, erase_, touch_;
  uint64_t ventilator_id_ = 0;
  std::string spec_, done_, report_;  // scratch for serialized blobs
  uint64_t commits_ = 0;
};

}  // namespace taskfarm::ventilator
