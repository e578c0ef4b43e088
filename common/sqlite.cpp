#include "common/sqlite.h"

#include <fmt/core.h>
#include <sqlite3.h>

#include <cstring>

namespace taskfarm::sqlite {

std::string describe_error(sqlite3* db, int code) {
  std::string what = db ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  const int sys = db ? sqlite3_system_errno(db) : 0;
  if (sys != 0) what += fmt::format(" ({})", std::strerror(sys));
  return what;
}

namespace {

[[noreturn]] void fail(sqlite3* db, int code, std::string_view doing) {
  throw Error(fmt::format("{}: {}", doing, describe_error(db, code)),
              db ? sqlite3_extended_errcode(db) : code);
}

}  // namespace

// ------------------------------------------------------------------ Statement

Statement::Statement(sqlite3* db, const char* sql) : db_(db) {
  const int rc = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  if (rc != SQLITE_OK) fail(db, rc, fmt::format("preparing '{}'", sql));
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a value");
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  // An empty blob is bound as a zero-length blob, not NULL.
  const int rc = sqlite3_bind_blob64(stmt_, index, bytes.empty() ? "" : bytes.data(),
                                     bytes.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a blob");
  return *this;
}

Statement& Statement::bind_text(int index, std::string_view text) {
  const int rc = sqlite3_bind_text64(stmt_, index, text.empty() ? "" : text.data(), text.size(),
                                     SQLITE_STATIC, SQLITE_UTF8);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a text");
  return *this;
}

Statement& Statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) fail(db_, rc, "binding NULL");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(stmt_);
  fail(db_, rc, "writing the journal");
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() { sqlite3_reset(stmt_); }

int64_t Statement::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string_view Statement::blob(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (!data || size <= 0) return {};
  return {static_cast<const char*>(data), static_cast<size_t>(size)};
}

std::string Statement::text(int column) const {
  const unsigned char* data = sqlite3_column_text(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (!data || size <= 0) return {};
  return {reinterpret_cast<const char*>(data), static_cast<size_t>(size)};
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

// ------------------------------------------------------------------ Database

Database::Database(const std::string& path, Sync sync) : path_(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    const std::string why = describe_error(db_, rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(fmt::format("cannot open {}: {}", path, why), rc);
  }
  sqlite3_extended_result_codes(db_, 1);
  try {
    // A reader (sqlite3 DIR/ventilator.db) may hold a lock for a moment: wait for it.
    sqlite3_busy_timeout(db_, 2000);
    // WAL: a commit appends to the log (no rewrite of the database file), readers never block
    // the writer, and a torn tail of the log is detected by its checksums and ignored.
    Statement mode(db_, "PRAGMA journal_mode=WAL");
    if (!mode.step() || mode.text(0) != "wal") {
      throw Error(fmt::format("cannot use write-ahead logging in {}", path), SQLITE_ERROR);
    }
    exec(sync == Sync::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // Keep the log from growing without bound between checkpoints (bytes).
    exec("PRAGMA journal_size_limit=67108864");
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Database::~Database() {
  if (db_) sqlite3_close_v2(db_);
}

void Database::exec(const char* sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return;
  sqlite3_free(message);
  fail(db_, rc, std::string_view(sql).substr(0, 40));
}

void Database::rollback() noexcept {
  if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

}  // namespace taskfarm::sqlite
