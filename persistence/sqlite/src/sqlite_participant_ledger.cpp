#include "saga/sqlite_participant_ledger.hpp"

#include <sqlite3.h>

#include <optional>
#include <stdexcept>
#include <utility>

namespace saga {
namespace {

struct StatementDeleter {
  void operator()(sqlite3_stmt* statement) const noexcept { sqlite3_finalize(statement); }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

StoreError error_of(sqlite3* db, int rc, const std::string& what) {
  const int primary = rc & 0xff;
  StoreErrorCode code = StoreErrorCode::io_error;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) code = StoreErrorCode::busy;
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) code = StoreErrorCode::corrupt;
  return StoreError{code, what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc))};
}

class SqliteUnit final : public ParticipantLedger::Unit {
 public:
  explicit SqliteUnit(sqlite3* db) : db_(db) {}
  sqlite3* db() const noexcept { return db_; }

 private:
  sqlite3* db_;
};

}  // namespace

struct SqliteParticipantLedger::Impl {
  sqlite3* db = nullptr;
  Statement begin, commit, rollback, find, record;

  ~Impl() {
    begin.reset();
    commit.reset();
    rollback.reset();
    find.reset();
    record.reset();
    if (db) sqlite3_close(db);
  }

  std::optional<StoreError> prepare(const char* sql, Statement& out) {
    sqlite3_stmt* statement = nullptr;
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
    out.reset(statement);
    if (rc != SQLITE_OK) return error_of(db, rc, std::string("preparing ") + sql);
    return std::nullopt;
  }

  int step(sqlite3_stmt* statement) {
    int rc = sqlite3_step(statement);
    sqlite3_reset(statement);
    return rc;
  }
};

SqliteParticipantLedger::SqliteParticipantLedger(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
SqliteParticipantLedger::~SqliteParticipantLedger() = default;

StoreResult<std::unique_ptr<SqliteParticipantLedger>> SqliteParticipantLedger::open(
    const StoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  int rc =
      sqlite3_open_v2(options.path.c_str(), &impl->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return error_of(impl->db, rc, "cannot open " + options.path);
  sqlite3_extended_result_codes(impl->db, 1);
  sqlite3_busy_timeout(impl->db, static_cast<int>(options.busy_timeout.count()));
  const char* synchronous = options.durability == Durability::full     ? "PRAGMA synchronous=FULL"
                            : options.durability == Durability::normal ? "PRAGMA synchronous=NORMAL"
                                                                       : "PRAGMA synchronous=OFF";
  for (const char* sql : {"PRAGMA journal_mode=WAL", synchronous,
                          "CREATE TABLE IF NOT EXISTS saga_processed_commands ("
                          " command_id TEXT NOT NULL PRIMARY KEY,"
                          " reply TEXT NOT NULL,"
                          " processed_at INTEGER NOT NULL DEFAULT (unixepoch())"
                          ") STRICT, WITHOUT ROWID"}) {
    rc = sqlite3_exec(impl->db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return error_of(impl->db, rc, std::string("running ") + sql);
  }
  const std::pair<const char*, Statement*> statements[] = {
      {"BEGIN IMMEDIATE", &impl->begin},
      {"COMMIT", &impl->commit},
      {"ROLLBACK", &impl->rollback},
      {"SELECT reply FROM saga_processed_commands WHERE command_id = ?1", &impl->find},
      {"INSERT INTO saga_processed_commands (command_id, reply) VALUES (?1, ?2)", &impl->record}};
  for (const auto& [sql, statement] : statements)
    if (auto error = impl->prepare(sql, *statement)) return *error;
  return std::unique_ptr<SqliteParticipantLedger>(new SqliteParticipantLedger(std::move(impl)));
}

StoreResult<ParticipantLedger::Result> SqliteParticipantLedger::process_once(
    const std::string& command_id, const std::function<std::string(Unit&)>& work) {
  Impl& s = *impl_;
  auto find = [&]() -> StoreResult<std::optional<std::string>> {
    sqlite3_bind_text(s.find.get(), 1, command_id.data(), static_cast<int>(command_id.size()),
                      SQLITE_STATIC);
    int rc = sqlite3_step(s.find.get());
    std::optional<std::string> reply;
    if (rc == SQLITE_ROW)
      reply.emplace(reinterpret_cast<const char*>(sqlite3_column_text(s.find.get(), 0)),
                    static_cast<std::size_t>(sqlite3_column_bytes(s.find.get(), 0)));
    sqlite3_reset(s.find.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return error_of(s.db, rc, "looking up command " + command_id);
    return reply;
  };

  int rc = s.step(s.begin.get());
  if (rc != SQLITE_DONE) return error_of(s.db, rc, "beginning a transaction");
  bool open = true;
  auto roll_back = [&] {
    if (open) s.step(s.rollback.get());
    open = false;
  };
  try {
    auto seen = find();
    if (!seen) {
      roll_back();
      return seen.error();
    }
    if (seen.value()) {
      roll_back();
      return Result{true, *seen.value()};
    }
    SqliteUnit unit(s.db);
    std::string reply = work(unit);
    sqlite3_bind_text(s.record.get(), 1, command_id.data(), static_cast<int>(command_id.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(s.record.get(), 2, reply.data(), static_cast<int>(reply.size()),
                      SQLITE_STATIC);
    rc = s.step(s.record.get());
    if (rc != SQLITE_DONE) {
      StoreError error = error_of(s.db, rc, "recording command " + command_id);
      roll_back();
      return error;
    }
    rc = s.step(s.commit.get());
    if (rc != SQLITE_DONE) {
      StoreError error = error_of(s.db, rc, "committing command " + command_id);
      roll_back();
      return error;
    }
    open = false;
    return Result{false, std::move(reply)};
  } catch (...) {
    roll_back();
    throw;
  }
}

sqlite3* SqliteParticipantLedger::connection() const noexcept {
  return impl_->db;
}

sqlite3* sqlite_connection(ParticipantLedger::Unit& unit) {
  auto* sqlite_unit = dynamic_cast<SqliteUnit*>(&unit);
  if (!sqlite_unit) throw std::invalid_argument("not a SqliteParticipantLedger unit");
  return sqlite_unit->db();
}

}  // namespace saga
