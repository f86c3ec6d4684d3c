#include "saga/sqlite_participant_ledger.hpp"

#include <sqlite3.h>

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "wal_syncer.hpp"

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
  Statement begin, commit, rollback, find, record, record_compensated, savepoint,
      rollback_to_savepoint, release_savepoint;
  // Set by record_compensated when its write failed (it throws out of the caller's work): the
  // process call reports it as a storage error, not as the handler's failure.
  std::optional<StoreError> work_store_error;

  std::optional<StoreError> take_work_store_error() { return std::exchange(work_store_error, {}); }

  // After a handler's work, returned or thrown (`thrown`, may be null): the storage failure it
  // ran into, if any. SQLite ends a transaction itself on some errors (I/O, disk full, out of
  // memory), also when the handler caught the error and went on.
  std::optional<StoreError> storage_failure_in_work(std::exception_ptr thrown) {
    if (auto error = take_work_store_error()) return error;
    if (thrown) {
      try {
        std::rethrow_exception(thrown);
      } catch (const StorageFailure& failure) {
        return StoreError{failure.code(), failure.what()};
      } catch (...) {
      }
    }
    if (sqlite3_get_autocommit(db))
      return StoreError{StoreErrorCode::io_error,
                        "SQLite rolled the transaction back during the handler (an I/O, "
                        "disk-full or out-of-memory error); nothing of the command was recorded"};
    return std::nullopt;
  }

  ~Impl() {
    for (Statement* statement : {&begin, &commit, &rollback, &find, &record, &record_compensated,
                                 &savepoint, &rollback_to_savepoint, &release_savepoint})
      statement->reset();
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

  // The reply recorded for a command id, if any.
  StoreResult<std::optional<std::string>> find_reply(const std::string& command_id) {
    sqlite3_bind_text(find.get(), 1, command_id.data(), static_cast<int>(command_id.size()),
                      SQLITE_STATIC);
    int rc = sqlite3_step(find.get());
    std::optional<std::string> reply;
    if (rc == SQLITE_ROW)
      reply.emplace(reinterpret_cast<const char*>(sqlite3_column_text(find.get(), 0)),
                    static_cast<std::size_t>(sqlite3_column_bytes(find.get(), 0)));
    sqlite3_reset(find.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return error_of(db, rc, "looking up command " + command_id);
    return reply;
  }

  std::optional<StoreError> record_reply(const std::string& command_id, const std::string& reply) {
    sqlite3_bind_text(record.get(), 1, command_id.data(), static_cast<int>(command_id.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(record.get(), 2, reply.data(), static_cast<int>(reply.size()), SQLITE_STATIC);
    int rc = step(record.get());
    if (rc != SQLITE_DONE) return error_of(db, rc, "recording command " + command_id);
    return std::nullopt;
  }

  // An open BEGIN IMMEDIATE transaction that rolls back unless committed.
  class Transaction {
   public:
    explicit Transaction(Impl& impl) : impl_(impl) {}
    ~Transaction() { roll_back(); }
    std::optional<StoreError> begin() {
      int rc = impl_.step(impl_.begin.get());
      if (rc != SQLITE_DONE) return error_of(impl_.db, rc, "beginning a transaction");
      open_ = true;
      return std::nullopt;
    }
    std::optional<StoreError> commit(const std::string& what) {
      int rc = impl_.step(impl_.commit.get());
      if (rc != SQLITE_DONE) return error_of(impl_.db, rc, "committing " + what);
      open_ = false;
      return std::nullopt;
    }
    void roll_back() {
      if (open_) impl_.step(impl_.rollback.get());
      open_ = false;
    }

   private:
    Impl& impl_;
    bool open_ = false;
  };
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
  // A process killed inside a COMMIT, after its WAL write and before its fsync, left that commit
  // in the page cache only: it must be durable before a duplicate is answered from it.
  if (options.durability == Durability::full && options.path != ":memory:")
    if (auto error = sqlite_detail::sync_wal_file(sqlite_detail::wal_path_of(impl->db)))
      return *error;
  const std::pair<const char*, Statement*> statements[] = {
      {"BEGIN IMMEDIATE", &impl->begin},
      {"COMMIT", &impl->commit},
      {"ROLLBACK", &impl->rollback},
      {"SELECT reply FROM saga_processed_commands WHERE command_id = ?1", &impl->find},
      {"INSERT INTO saga_processed_commands (command_id, reply) VALUES (?1, ?2)", &impl->record},
      {"INSERT OR IGNORE INTO saga_processed_commands (command_id, reply) VALUES (?1, '')",
       &impl->record_compensated},
      {"SAVEPOINT saga_command", &impl->savepoint},
      {"ROLLBACK TO saga_command", &impl->rollback_to_savepoint},
      {"RELEASE saga_command", &impl->release_savepoint}};
  for (const auto& [sql, statement] : statements)
    if (auto error = impl->prepare(sql, *statement)) return *error;
  return std::unique_ptr<SqliteParticipantLedger>(new SqliteParticipantLedger(std::move(impl)));
}

StoreResult<ParticipantLedger::Result> SqliteParticipantLedger::process_once(
    const std::string& command_id, const std::function<std::string(Unit&)>& work) {
  Impl& s = *impl_;
  Impl::Transaction transaction(s);
  if (auto error = transaction.begin()) return *error;
  auto seen = s.find_reply(command_id);
  if (!seen) return seen.error();
  if (seen.value()) return Result{true, std::move(*seen.value())};
  SqliteUnit unit(s.db);
  s.work_store_error.reset();
  std::string reply;
  std::exception_ptr thrown;
  try {
    reply = work(unit);
  } catch (...) {
    thrown = std::current_exception();
  }
  if (auto error = s.storage_failure_in_work(thrown)) return *error;
  if (thrown) std::rethrow_exception(thrown);  // the transaction rolls back
  if (auto error = s.record_reply(command_id, reply)) return *error;
  if (auto error = transaction.commit("command " + command_id)) return *error;
  return Result{false, std::move(reply)};
}

StoreResult<std::optional<std::string>> SqliteParticipantLedger::recorded_reply(
    const std::string& command_id) {
  return impl_->find_reply(command_id);
}

StoreResult<std::vector<ParticipantLedger::Outcome>> SqliteParticipantLedger::process_batch(
    const std::vector<std::string>& command_ids,
    const std::function<std::string(std::size_t index, Unit&)>& work) {
  Impl& s = *impl_;
  Impl::Transaction transaction(s);
  if (auto error = transaction.begin()) return *error;
  std::vector<Outcome> outcomes(command_ids.size());
  SqliteUnit unit(s.db);
  for (std::size_t index = 0; index < command_ids.size(); ++index) {
    const std::string& command_id = command_ids[index];
    Outcome& outcome = outcomes[index];
    auto seen = s.find_reply(command_id);
    if (!seen) return seen.error();
    if (seen.value()) {
      outcome.kind = Outcome::Kind::duplicate;
      outcome.reply = std::move(*seen.value());
      continue;
    }
    int rc = s.step(s.savepoint.get());
    if (rc != SQLITE_DONE) return error_of(s.db, rc, "opening a savepoint for " + command_id);
    bool threw = true;
    s.work_store_error.reset();
    std::exception_ptr thrown;
    try {
      outcome.reply = work(index, unit);
      threw = false;
    } catch (const std::exception& error) {
      outcome.error = error.what();
      thrown = std::current_exception();
    } catch (...) {
      outcome.error = "unknown exception";
    }
    if (auto error = s.storage_failure_in_work(thrown)) return *error;
    if (threw) {
      rc = s.step(s.rollback_to_savepoint.get());
      if (rc != SQLITE_DONE) return error_of(s.db, rc, "undoing command " + command_id);
    } else {
      if (auto error = s.record_reply(command_id, outcome.reply)) return *error;
      outcome.kind = Outcome::Kind::handled;
    }
    rc = s.step(s.release_savepoint.get());
    if (rc != SQLITE_DONE) return error_of(s.db, rc, "releasing the savepoint of " + command_id);
  }
  if (auto error = transaction.commit(std::to_string(command_ids.size()) + " commands"))
    return *error;
  return outcomes;
}

void SqliteParticipantLedger::record_compensated(Unit& unit, const std::string& command_id) {
  Impl& s = *impl_;
  if (sqlite_connection(unit) != s.db)
    throw std::invalid_argument("record_compensated: a unit of another ledger");
  sqlite3_bind_text(s.record_compensated.get(), 1, command_id.data(),
                    static_cast<int>(command_id.size()), SQLITE_STATIC);
  int rc = s.step(s.record_compensated.get());
  if (rc != SQLITE_DONE) {
    s.work_store_error = error_of(s.db, rc, "recording command " + command_id + " compensated");
    throw std::runtime_error(s.work_store_error->message);
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
