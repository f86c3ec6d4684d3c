// The participant's idempotent-consumer store: it records which commands a participant has
// handled, in the same transaction as the handler's own writes, with the reply it sent. A
// duplicate command gets the stored reply back and the handler does not run again.
//
// Implementations: saga::SqliteParticipantLedger (saga/sqlite_participant_ledger.hpp), whose
// Unit gives the handler the open SQLite transaction for its own tables.
//
// Thread safety: one thread at a time. Errors: storage failures come back as StoreResult: the
// ledger's own statements, a failed record_compensated inside `work`, a StorageFailure thrown by
// `work`, and a transaction the database rolled back under `work` (SqliteParticipantLedger: SQLite
// ends the transaction itself on some I/O, disk-full and out-of-memory errors, even when the
// handler caught the error). The command is not recorded then (statements a handler ran after
// SQLite ended its transaction ran outside it, each committed alone: a handler that catches a
// storage error must not go on writing). Any other exception thrown by `work` rolls the
// transaction back and propagates to the caller.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "saga/status.hpp"

namespace saga {

// Thrown by a handler (or by code it calls inside `work`) when storage failed, not the business
// step: its own statement met a locked database, a full disk, an I/O error. The ledger returns
// it as a StoreError with `code` and records nothing, so the participant does not answer: a
// failure reply would be a business answer to an infrastructure problem, recorded for good and
// sent again to every re-send. The orchestrator re-sends the command after its timeout.
class StorageFailure : public std::runtime_error {
 public:
  explicit StorageFailure(const std::string& what, StoreErrorCode code = StoreErrorCode::io_error)
      : std::runtime_error(what), code_(code) {}
  StoreErrorCode code() const noexcept { return code_; }

 private:
  StoreErrorCode code_;
};

class ParticipantLedger {
 public:
  // The open transaction a handler writes in. Implementations expose their native handle.
  class Unit {
   public:
    virtual ~Unit() = default;
  };

  struct Result {
    bool duplicate = false;  // the command was handled before; `reply` is what was sent then
    std::string reply;       // the encoded reply envelope; empty: compensated, not handled
  };

  virtual ~ParticipantLedger() = default;

  // Runs `work` once per command id: begins a transaction, calls work(unit) for the encoded
  // reply, records (command_id, reply) and commits, all or nothing. For a command id already
  // recorded, returns the stored reply without calling `work`.
  virtual StoreResult<Result> process_once(const std::string& command_id,
                                           const std::function<std::string(Unit&)>& work) = 0;

  // Inside the `work` of process_once / process_batch, while a compensating command is handled:
  // records that the step command `command_id` (the envelope's `compensates`) is compensated.
  // If that command was handled before, nothing changes. If it was not, it never will be: its
  // id is recorded with an empty reply, so when it arrives late (the orchestrator gave up on it
  // and compensated), it is a duplicate with an empty reply and its work does not run. Committed
  // with the compensation's own writes.
  //
  // Errors: a storage failure throws out of `work`; the process_once / process_batch call then
  // returns that storage error and commits nothing (it is not a failure of the handler).
  virtual void record_compensated(Unit& unit, const std::string& command_id) = 0;

  // The reply recorded for a command id, or nullopt for a command never handled (empty for one
  // compensated before it arrived, see record_compensated). A participant
  // asks before refusing a command it cannot route any more (no handler, no upcaster for its
  // version): a re-sent command it handled before is still answered with the reply sent then.
  virtual StoreResult<std::optional<std::string>> recorded_reply(const std::string& command_id) = 0;

  // What became of one command of a batch.
  struct Outcome {
    enum class Kind { handled, duplicate, failed };
    Kind kind = Kind::failed;
    std::string reply;  // handled: the recorded reply; duplicate: the reply recorded before
                        // (empty: compensated before it arrived, see record_compensated)
    std::string error;  // failed: what `work` threw; nothing of this command was recorded
  };

  // Group commit: handles several commands with one durable write. For each command id in order,
  // an id already recorded (also by an earlier command of the same batch) gets its stored reply
  // without calling `work`; otherwise work(index, unit) builds the reply, which is recorded with
  // the work's writes. An exception thrown by `work` undoes only that command's writes (its
  // outcome is `failed`, with the exception's what()) and the batch goes on. Returns one outcome
  // per command id, in order.
  //
  // Errors: a storage error (failed begin, record or commit) returns the error and commits none
  // of the batch; the caller may handle the commands again, one by one or as a new batch.
  //
  // The default implementation calls process_once for each command in turn (one transaction
  // each: a storage error leaves the earlier commands committed); SqliteParticipantLedger
  // overrides it with one transaction and a savepoint per command.
  virtual StoreResult<std::vector<Outcome>> process_batch(
      const std::vector<std::string>& command_ids,
      const std::function<std::string(std::size_t index, Unit&)>& work);
};

}  // namespace saga
