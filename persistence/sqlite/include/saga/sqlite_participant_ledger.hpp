// ParticipantLedger on a participant's own SQLite database. The ledger keeps its table
// (saga_processed_commands) beside the participant's tables in the same file, so a handler's
// writes and the "processed" record commit together.
//
//   auto ledger = saga::SqliteParticipantLedger::open({.path = "inventory.db"}).value();
//   participant.on<inventory::Reserve>([](const inventory::Reserve& command, auto& unit) {
//     sqlite3* db = saga::sqlite_connection(unit);   // inside the open transaction
//     ...
//   });
//
// With Durability::full every commit is synced inside COMMIT (synchronous = FULL), and open()
// first syncs the file's WAL: a process killed inside a COMMIT, between its WAL write and its
// fsync, left that commit in the page cache, and it must be durable before a duplicate is answered
// from it. StoreOptions::sync_in_background is ignored: measured on the order flow, replies held
// for a sync on another thread made the services no faster (docs/architecture.md, "Participants").
//
// Ownership: owns its connection. Thread safety: one thread at a time.
#pragma once

#include <memory>

#include "saga/options.hpp"
#include "saga/participant_ledger.hpp"

struct sqlite3;

namespace saga {

class SqliteParticipantLedger final : public ParticipantLedger {
 public:
  // Opens (creating if needed) the database with WAL, the given durability and busy timeout.
  // exclusive_writer is ignored: a participant may own other connections to its file.
  static StoreResult<std::unique_ptr<SqliteParticipantLedger>> open(const StoreOptions& options);
  ~SqliteParticipantLedger() override;

  StoreResult<Result> process_once(const std::string& command_id,
                                   const std::function<std::string(Unit&)>& work) override;
  StoreResult<std::optional<std::string>> recorded_reply(const std::string& command_id) override;
  void record_compensated(Unit& unit, const std::string& command_id) override;
  // One BEGIN IMMEDIATE ... COMMIT for the whole batch, a SAVEPOINT around each command's work.
  StoreResult<std::vector<Outcome>> process_batch(
      const std::vector<std::string>& command_ids,
      const std::function<std::string(std::size_t index, Unit&)>& work) override;

  // The ledger's connection, for reads outside process_once (reports, tests).
  sqlite3* connection() const noexcept;

 private:
  struct Impl;
  explicit SqliteParticipantLedger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The open transaction's connection inside process_once / process_batch. Throws
// std::invalid_argument for a Unit that is not a SqliteParticipantLedger's.
sqlite3* sqlite_connection(ParticipantLedger::Unit& unit);

}  // namespace saga
