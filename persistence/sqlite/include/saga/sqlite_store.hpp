// The SQLite implementation of saga::Store.
//
// - The schema is a list of versioned migrations (persistence/sqlite/migrations/NNNN_*.sql),
//   applied in order at open inside one transaction each; PRAGMA user_version records the
//   applied version. A database whose version is newer than this build knows is refused with
//   StoreErrorCode::corrupt and a message naming both versions.
// - WAL journal mode, PRAGMA synchronous from StoreOptions::durability (FULL by default),
//   busy_timeout, BEGIN IMMEDIATE for every write transaction, prepared statements only (no
//   SQL is built from runtime data). The writer connection's page cache holds up to 16 MiB
//   (PRAGMA cache_size = -16384; SQLite's default is about 2 MiB), allocated as it fills.
// - With StoreOptions::exclusive_writer, a lock file "<path>.lock" is held (flock) for the
//   lifetime of the store; a second writer is refused with a clear error.
// - Reads inside a read scope (begin_reads) share one deferred transaction, begun by the first of
//   them: in WAL mode every transaction takes and releases a read lock on the shared-memory index
//   (system calls), which cost more than the inbox lookup it guarded.
// - A database the store creates gets StoreOptions::page_size (8 KiB by default); an existing
//   one keeps its own. open() throws std::invalid_argument for a page size SQLite cannot use.
// - With StoreOptions::background_checkpoint (the default, file databases), WAL checkpoints run
//   on a thread the store owns, over a second connection, each time the WAL has grown by ~4 MiB;
//   commits do not copy pages into the database file themselves, unless the WAL has outgrown
//   the thread (~32 MiB): then the writer waits for its pass and completes the checkpoint.
//
// - With StoreOptions::sync_in_background (the default, file databases, Durability::full), COMMIT
//   writes the WAL without waiting for the disk (PRAGMA synchronous = NORMAL): commit() returns
//   before its batch is durable. An fdatasync of the WAL makes it durable: in sync(), on the
//   caller's thread, or after begin_sync() on a thread the store owns; durable_through() reports
//   how far (saga/store.hpp). Commits made while one fdatasync runs share the next one. A failed
//   fdatasync is final: every later commit returns StoreErrorCode::io_error, and the process must
//   restart (it then recovers from what the file holds). The destructor syncs what was committed
//   before it returns.
// - With Durability::full, open() fdatasyncs the WAL (the one SQLite writes, next to the
//   database file with symlinks resolved) before the engine reads anything from it: a process
//   that died between writing a commit and syncing it left that commit in the page cache, where
//   the next process would otherwise act on it before it is durable. Not the database file:
//   SQLite syncs it before a checkpoint lets the WAL restart.
// - Other connections to the file (sagactl, another reader) see a commit when COMMIT returns,
//   before its fsync: a power loss in that window (a millisecond or two) can undo what they saw,
//   such as an operator request answered. A killed process cannot: the next open syncs the WAL.
//
// Ownership: the store owns its connections (and its checkpoint and sync threads) and closes them
// in the destructor (never throws).
// Thread safety: one thread at a time (the checkpoint and sync threads are internal).
#pragma once

#include <cstdint>
#include <memory>

#include "saga/options.hpp"
#include "saga/store.hpp"

namespace saga {

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) and migrates the database. Errors opening, configuring or
  // migrating it are returned; options no database can have (a page size SQLite cannot use)
  // throw std::invalid_argument before anything is created.
  static StoreResult<std::unique_ptr<SqliteStore>> open(const StoreOptions& options);

  // The schema version this build writes.
  static int latest_schema_version() noexcept;

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  StoreStatus commit(const WriteBatch& batch) override;
  std::uint64_t last_commit() const noexcept override;
  std::uint64_t durable_through() const noexcept override;
  StoreStatus sync() override;
  void begin_sync() override;
  StoreResult<std::optional<SagaRecord>> load_saga(const std::string& saga_id) override;
  StoreResult<bool> inbox_contains(const std::string& message_id) override;
  void begin_reads() noexcept override;
  void end_reads() noexcept override;
  StoreResult<std::vector<OutboxMessage>> pending_outbox(std::size_t limit) override;
  StoreResult<std::vector<OutboxMessage>> pending_outbox_for(const std::string& destination,
                                                             std::int64_t after_sequence,
                                                             std::size_t limit) override;
  StoreResult<std::vector<OutboxBacklog>> outbox_backlog() override;
  StoreResult<std::vector<OutboxMessage>> awaiting_reply(std::size_t limit) override;
  StoreResult<std::vector<OutboxMessage>> retries_after_failure() override;
  StoreResult<std::optional<OutboxMessage>> outbox_message(const std::string& message_id) override;
  StoreResult<std::vector<StoredOperatorRequest>> pending_operator_requests(
      std::size_t limit) override;
  StoreResult<std::vector<JournalEntry>> journal(const std::string& saga_id) override;
  StoreResult<std::vector<DeadLetter>> dead_letters(std::size_t limit) override;
  StoreResult<std::optional<DeadLetter>> dead_letter(std::int64_t id) override;
  StoreResult<std::vector<OutboxMessage>> outbox(const std::string& saga_id) override;
  StoreResult<std::vector<SagaRecord>> sagas_with_status(SagaStatus status,
                                                         std::size_t limit) override;
  StoreResult<std::vector<SagaCount>> count_sagas() override;
  StoreResult<std::int64_t> count_open_dead_letters() override;

  // PRAGMA integrity_check == "ok".
  StoreResult<bool> integrity_ok();

  // WAL checkpoint passes the store's background thread has run so far (0 for an in-memory
  // database, which has no WAL). For diagnostics and tests; any thread.
  std::uint64_t background_checkpoints() const noexcept;

  // fdatasync calls the store's sync thread has made so far (0 without the thread). For
  // diagnostics and tests; any thread.
  std::uint64_t background_syncs() const noexcept;

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saga
