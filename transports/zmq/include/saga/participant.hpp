// The participant SDK: a participant service in a few lines.
//
//   saga::Participant inventory({.connection = {.orchestrator_endpoint = endpoint,
//                                              .service = "inventory"}},
//                               *ledger);
//   inventory.on<inventory::Reserve>(
//       [&](const inventory::Reserve& command, saga::ParticipantLedger::Unit& unit)
//           -> saga::Reply {
//         sqlite3* db = saga::sqlite_connection(unit);  // the open transaction
//         if (!reserve(db, command.items)) return inventory::OutOfStock{...};
//         return inventory::Reserved{...};
//       },
//       [](const inventory::Reserve&, const std::string& error) -> saga::Reply {
//         return inventory::OutOfStock{"", error};  // after the retries ran out
//       });
//   inventory.run();  // until stop()
//
// Commands that arrive together are handled in one transaction (ParticipantOptions::max_batch).
// For each command the SDK: upcasts an older payload (register_upcaster), decodes it, and runs
// the handler inside ParticipantLedger::process_once, so the handler's writes and the "already
// handled" record commit together; it fills the reply envelope (correlationId from the command,
// causationId = the command's eventId, source = the service, kind reply) and sends it. A
// duplicate command is answered with the reply sent the first time, byte for byte, and the
// handler does not run. A handler that throws has its own writes undone (the rest of the batch
// is unaffected) and is retried (ParticipantOptions::handler_attempts, each in a fresh
// transaction); then the failure builder's reply is sent, or, without one (a
// compensation must eventually succeed), nothing: the orchestrator re-sends after its timeout.
// A storage failure (the ledger cannot begin, record or commit; the handler throws
// saga::StorageFailure for its own statements; the database ended the transaction under it) is
// not a handler failure: it is reported through on_error, nothing is recorded and nothing is
// answered, so the re-sent command is handled afresh; it never produces a failure reply. A batch
// that failed so is handled again one command at a time, unless the database was locked
// (StoreErrorCode::busy): then none of it is, rather than waiting the busy timeout per command.
// Commands that cannot be decoded are reported and not answered; so are commands with no handler or
// no upcaster for their version, unless the ledger holds a reply to them (a re-send of a command
// handled before an upgrade), which is sent again.
//
// Compensation before the command: a compensating command names the step command it undoes
// (the envelope's `compensates`; the orchestrator sends one when it gave up on that step, which
// the participant may or may not have done). The SDK records that name with the compensation's
// writes (ParticipantLedger::record_compensated). The compensation's handler must therefore
// expect to undo something that never happened (then there is nothing to do). Should the step
// command arrive later, its handler does not run and it is not answered (Stats::
// compensated_first): what was undone stays undone. This holds within one ledger: instances of
// a service with separate ledgers do not see each other's records.
//
// Thread safety: run()/poll() on one thread; stop() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "saga/envelope.hpp"
#include "saga/message.hpp"
#include "saga/participant_ledger.hpp"
#include "saga/upcaster.hpp"
#include "saga/zmq_participant.hpp"

namespace saga {

// A reply of any message type, as a handler returns it.
struct Reply {
  template <Message M>
  Reply(const M& message)  // NOLINT(google-explicit-constructor): handlers return messages
      : type(M::type), version(M::version), data(nlohmann::json(message)) {}
  std::string type;
  int version = 1;
  nlohmann::json data;
};

struct ParticipantOptions {
  ZmqParticipantOptions connection = {};
  // Attempts of a throwing handler before giving up on a command. Default: 3.
  int handler_attempts = 3;
  // Group commit: the commands already waiting when one arrives are handled in one ledger
  // transaction (ParticipantLedger::process_batch), so a burst costs one durable write instead
  // of one per command; their replies are sent after that commit. At most this many per
  // transaction; 1 handles each command in a transaction of its own. Default: 256.
  std::size_t max_batch = 256;
  // Group commit, in bytes: a batch stops taking commands once theirs reach this (the command
  // that crosses it is taken). Bounds a batch's memory and transaction when commands are large.
  // Default: 16 MiB.
  std::size_t max_batch_bytes = std::size_t{16} << 20;
  // The largest encoded reply a handler (or failure builder) may produce. A larger one is
  // treated like a throw (its writes undone, retried, then the failure reply): recorded, it
  // would be refused by the orchestrator (too_large) at every re-send. Default: 1 MiB, the
  // orchestrator's default limit.
  std::size_t max_reply_bytes = kDefaultMaxMessageBytes;
  // Called with a description of every command that could not be handled. Default: stderr.
  std::function<void(const std::string&)> on_error = {};
  // Called by poll() for each command it answered, after the reply was committed (or found in
  // the ledger: `duplicate`) and handed to the connection, also when the connection could not
  // queue it (reported through on_error; a re-send gets it from the ledger); not for a command
  // left unanswered. For logs
  // of what was done: a handler attempt that was rolled back is never reported. Default: none.
  std::function<void(const Envelope& command, bool duplicate)> on_answered = {};
};

class Participant {
 public:
  using Handler = std::function<Reply(const nlohmann::json& payload, ParticipantLedger::Unit&)>;
  using FailureBuilder = std::function<Reply(const nlohmann::json& payload, const std::string&)>;

  Participant(ParticipantOptions options, ParticipantLedger& ledger);
  ~Participant();

  template <Command Cmd, class Body>
  void on(Body handler) {
    add(
        Cmd::type, Cmd::version,
        [handler](const nlohmann::json& payload, ParticipantLedger::Unit& unit) {
          return Reply(handler(payload.get<Cmd>(), unit));
        },
        nullptr);
  }
  template <Command Cmd, class Body, class Failure>
  void on(Body handler, Failure failure) {
    add(
        Cmd::type, Cmd::version,
        [handler](const nlohmann::json& payload, ParticipantLedger::Unit& unit) {
          return Reply(handler(payload.get<Cmd>(), unit));
        },
        [failure](const nlohmann::json& payload, const std::string& error) {
          return Reply(failure(payload.get<Cmd>(), error));
        });
  }

  void register_upcaster(std::string_view command_type, int from_version, Upcaster upcaster);

  // Waits up to `wait` for a command, then takes the commands already waiting behind it (up to
  // ParticipantOptions::max_batch in all) and handles them in one ledger transaction. Returns
  // how many were answered (including duplicates answered again).
  std::size_t poll(std::chrono::milliseconds wait);
  void run();
  void stop();

  struct Stats {
    std::uint64_t handled = 0, duplicates = 0, failures = 0, errors = 0;
    // Step commands not handled because their compensation was handled first.
    std::uint64_t compensated_first = 0;
  };
  Stats stats() const;

 private:
  void add(std::string_view type, int version, Handler handler, FailureBuilder failure);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saga
