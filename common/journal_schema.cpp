#include "common/journal_schema.h"

#include <fmt/core.h>

#include "common/errors.h"

namespace taskfarm {

std::unique_ptr<sqlite::Database> open_journal(const std::string& path,
                                               sqlite::Database::Sync sync,
                                               std::string_view role, const char* schema_sql) {
  try {
    auto db = std::make_unique<sqlite::Database>(path, sync);
    {
      sqlite::Statement check(db->handle(), "PRAGMA quick_check");
      const std::string verdict = check.step() ? check.text(0) : std::string("no answer");
      if (verdict != "ok") {
        throw SetupError(fmt::format("{} is damaged ({}); move it away to start without it",
                                     path, verdict));
      }
    }
    db->transaction([&] {
      db->exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)");
      sqlite::Statement get(db->handle(), "SELECT value FROM meta WHERE key = ?1");
      get.bind_text(1, "role");
      if (get.step() && get.text(0) != role) {
        throw SetupError(fmt::format("{} is the journal of a {}, not of a {}", path, get.text(0),
                                     role));
      }
      get.reset();
      get.bind_text(1, "schema");
      if (get.step() && get.int64(0) > kJournalSchemaVersion) {
        throw SetupError(fmt::format("{} was written by a newer taskfarm (journal version {})",
                                     path, get.int64(0)));
      }
      get.reset();
      sqlite::Statement put(db->handle(),
                            "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
      put.bind_text(1, "role").bind_text(2, role).run();
      put.bind_text(1, "schema").bind(2, kJournalSchemaVersion).run();
      db->exec(schema_sql);
    });
    return db;
  } catch (const sqlite::Error& e) {
    throw SetupError(fmt::format("cannot use the journal {}: {}", path, e.what()));
  }
}

}  // namespace taskfarm
