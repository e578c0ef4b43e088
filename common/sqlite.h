// A thin RAII layer over SQLite for the --state journals (ventilator/journal.*, sink/journal.*):
// a database in WAL mode, prepared statements, transactions. Errors are exceptions that carry
// SQLite's message and the system's reason ("No space left on device").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace taskfarm::sqlite {

// A failed SQLite call. what(): "<what was done>: <SQLite's message> (<errno text>)".
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, int code) : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }  // SQLite's extended result code

 private:
  int code_;
};

class Statement {
 public:
  // Compiles `sql` for `db`. Throws: Error.
  Statement(sqlite3* db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binders take 1-based parameter indexes, as SQLite does. Throw: Error.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, uint64_t value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, int32_t value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, uint32_t value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_text(int index, std::string_view text);
  Statement& bind_null(int index);

  // Runs one step. Returns: true when a row is available (read it with the column getters),
  // false when the statement is done. Throws: Error.
  bool step();
  // Runs the statement to its end and resets it for the next use. Throws: Error.
  void run();
  // Makes the statement ready to run again (bindings are kept until rebound).
  void reset();

  // Column getters for the current row (0-based, as SQLite's).
  int64_t int64(int column) const;
  uint64_t uint64(int column) const { return static_cast<uint64_t>(int64(column)); }
  std::string_view blob(int column) const;
  std::string text(int column) const;
  bool is_null(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Database {
 public:
  // kNormal: a commit survives a crash of the process (the WAL is in the OS's page cache) and
  // is synced to disk at checkpoints; kFull: every commit is synced (survives power loss).
  enum class Sync { kNormal, kFull };

  // Opens or creates the database at `path` in WAL mode. Throws: Error.
  Database(const std::string& path, Sync sync = Sync::kNormal);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements without results. Throws: Error.
  void exec(const char* sql);
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // Runs `f` in one transaction (BEGIN IMMEDIATE ... COMMIT); rolls back and rethrows when `f`
  // or the commit throws, so a failed write leaves the database as it was.
  template <typename F>
  void transaction(F&& f) {
    exec("BEGIN IMMEDIATE");
    try {
      f();
      exec("COMMIT");
    } catch (...) {
      rollback();
      throw;
    }
  }

 private:
  void rollback() noexcept;

  sqlite3* db_ = nullptr;
  std::string path_;
};

// Returns: what went wrong in words, from SQLite's message for `db` and its system error.
std::string describe_error(sqlite3* db, int code);

}  // namespace taskfarm::sqlite
