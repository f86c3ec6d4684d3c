// The participant's idempotent-consumer store: it records which commands a participant has
// handled, in the same transaction as the handler's own writes, with the reply it sent. A
// duplicate command gets the stored reply back and the handler does not run again.
//
// Implementations: saga::SqliteParticipantLedger (saga/sqlite_participant_ledger.hpp), whose
// Unit gives the handler the open SQLite transaction for its own tables.
//
// Thread safety: one thread at a time. Errors: storage failures come back as StoreResult; an
// exception thrown by `work` rolls the transaction back and propagates to the caller.
#pragma once

#include <functional>
#include <string>

#include "saga/status.hpp"

namespace saga {

class ParticipantLedger {
 public:
  // The open transaction a handler writes in. Implementations expose their native handle.
  class Unit {
   public:
    virtual ~Unit() = default;
  };

  struct Result {
    bool duplicate = false;  // the command was handled before; `reply` is what was sent then
    std::string reply;       // the encoded reply envelope
  };

  virtual ~ParticipantLedger() = default;

  // Runs `work` once per command id: begins a transaction, calls work(unit) for the encoded
  // reply, records (command_id, reply) and commits, all or nothing. For a command id already
  // recorded, returns the stored reply without calling `work`.
  virtual StoreResult<Result> process_once(const std::string& command_id,
                                           const std::function<std::string(Unit&)>& work) = 0;
};

}  // namespace saga
