// Opening a --state journal: the database, its integrity check and its schema version.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/sqlite.h"

namespace taskfarm {

// The layout of the journals' tables; a journal written by a newer taskfarm is refused.
inline constexpr int64_t kJournalSchemaVersion = 1;

// Opens (or creates) the journal at `path` for `role` ("ventilator", "sink"): WAL mode, an
// integrity check (a damaged file is refused, never read as valid; a torn tail of the log is
// dropped by SQLite itself), then `schema_sql` (CREATE TABLE IF NOT EXISTS ...) and a meta table
// with the schema version and the role.
// Returns: the open database. Throws: SetupError naming the file and the reason.
std::unique_ptr<sqlite::Database> open_journal(const std::string& path,
                                               sqlite::Database::Sync sync,
                                               std::string_view role, const char* schema_sql);

}  // namespace taskfarm
