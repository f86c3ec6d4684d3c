// The saga engine: the single-writer loop that turns inbound replies and saga starts into
// durable state changes and outgoing commands. Start here.
//
//   saga::Options options;                        // every field documents its default
//   auto store = saga::SqliteStore::open(options.store).value();
//   saga::MemoryTransport transport = ...;        // or the ZeroMQ transport
//   saga::SystemClock clock;
//   saga::Engine engine(options, *store, transport, clock);
//   engine.register_saga<order::OrderSaga>();
//   engine.on_outcome([](const saga::SagaOutcome& o) { ... });
//   std::thread loop([&] { engine.run(); });
//   std::string id = engine.start<order::OrderSaga>(data);
//   ...
//   engine.stop(); loop.join();
//
// One loop turn: take the pending saga starts and drain up to Options::max_batch_messages
// inbound envelopes; for each, validate, deduplicate by eventId (inbox), apply it to its saga's
// state machine and collect the commands it produces; then commit everything in ONE store
// transaction (saga rows, journal, outbox, inbox, dead letters); only once that commit is durable
// (Store::durable_through) hand the new commands to the transport and report outcomes. After a
// full turn the loop goes on while the store makes it durable (SqliteStore's sync thread); after
// any other it waits for the disk itself. A re-send (a command's second hand-over or later) is
// recorded in the next commit; a first send is not.
//
// Guarantees (each has a test in tests/):
// - Nothing is sent, reported or answered before its commit is durable; a crash before that loses
//   the commit and its effects together. A committed command not yet sent is sent after a
//   restart (the pending outbox rows are read back from the first turn on, in commit order per
//   destination, Options::max_queued_commands at a time). So is every open command that was
//   sent at most once: the store does not know whether that send left the process.
// - A command stays "awaiting reply" until a reply with its eventId as causationId is applied;
//   until then it is re-sent (same bytes, same eventId) per Options::command_retry (or
//   compensation_retry), with backoff and jitter. When the policy runs out, the saga gets
//   StepFailed with timed_out (a linear saga compensates that step itself, then the ones before
//   it, and parks a saga whose pivot timed out); a compensation that runs out parks the saga as
//   Failed; commands of retriable steps are re-sent for ever. A reply and a timeout racing for
//   the same command: whichever is committed first wins. A timeout that lost is dropped; a reply
//   that lost is journaled and dead-lettered (late_reply), except that a late reply to the very
//   command whose timeout parked its saga resumes the saga like a retry. Commands awaiting
//   replies survive restarts.
// - Replies of an older version are upgraded by registered upcasters before the saga sees them.
// - A message whose eventId is already in the inbox has no effect; it is journaled as duplicate.
// - Bad input never crashes the loop: it is dead-lettered with a reason code and its raw bytes
//   (bounded), and the loop goes on serving everyone else.
// - A failed commit (busy, I/O error, disk full) changes nothing: the turn's sagas are reloaded
//   from the store and the same inputs are retried after a backoff.
// - An input whose processing throws (a bug, or data nlohmann cannot serialize) is taken out of
//   its turn and dead-lettered ("processing_error", or "start_failed" for a start, reported as a
//   Failed outcome); the rest of the turn is retried without it.
//
// Ownership: the engine keeps references to the Store, Transport and Clock; they must outlive
// it. Thread safety: register_saga(), on_outcome() and on_dead_letter() before run(); start(),
// stop() and stats() from any thread; run() / run_once() from one thread at a time (the loop).
// Errors: start() throws std::invalid_argument for an unregistered saga type or data that does
// not convert; nothing else in the loop throws for bad input.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "saga/clock.hpp"
#include "saga/options.hpp"
#include "saga/saga_type.hpp"
#include "saga/store.hpp"
#include "saga/transport.hpp"
#include "saga/upcaster.hpp"

namespace saga {

// Reported when a saga reaches a terminal status, after the commit that made it so: once per
// saga, except that a saga parked as Failed and then resumed (Engine::retry, a late reply to the
// command that parked it) or resolved by an operator is reported again with its new status.
struct SagaOutcome {
  std::string saga_id;
  std::string saga_type;
  SagaStatus status;
  std::string state;
  nlohmann::json data;
  std::string reason;  // for Failed: what parked it
};

// The answer to an operator action. `ok` false: refused, nothing changed; `message` says why.
// One exception: a replayed dead letter the engine refuses again is marked replayed and its
// message dead-lettered anew (under a new id), and the answer is `ok` false with the reason.
struct OperatorResult {
  bool ok = false;
  std::string message;
};

// Counters since construction. Snapshot; safe from any thread.
struct EngineStats {
  std::uint64_t sagas_started = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t messages_applied = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t dead_letters = 0;
  std::uint64_t commits = 0;
  std::uint64_t commit_failures = 0;
  std::uint64_t commands_sent = 0;
  std::uint64_t send_retries = 0;      // sends refused by the transport (would block, unroutable)
  std::uint64_t command_resends = 0;   // commands re-sent because their reply timed out
  std::uint64_t command_timeouts = 0;  // commands given up on (retry policy ran out)
  std::uint64_t sagas_completed = 0;
  std::uint64_t sagas_compensated = 0;
  std::uint64_t sagas_failed = 0;
  std::uint64_t callback_errors = 0;  // exceptions thrown by on_outcome / on_dead_letter callbacks
  std::uint64_t cached_sagas = 0;     // sagas in the saga cache after the last turn
  std::uint64_t sagas_evicted = 0;    // sagas the cache let go while not ended (max_cached_sagas)
  std::uint64_t sagas_loaded = 0;     // sagas read from the store into the cache (a miss)
  std::uint64_t queued_commands = 0;  // commands in the send queue (memory) after the last send
  std::uint64_t backlogged_commands = 0;  // commands left in the outbox only (their destination's
                                          // queue was full, Options::max_queued_commands, or they
                                          // were pending at start); an estimate: rows closed
                                          // meanwhile count until read back
};

class Engine {
 public:
  Engine(Options options, Store& store, Transport& transport, const Clock& clock);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Registers a saga definition (several versions of one saga type may be registered; starts use
  // the highest). Throws std::logic_error when the same name and version is registered twice.
  void register_saga(std::unique_ptr<SagaType> type);
  template <class Definition>
  void register_saga() {
    register_saga(make_saga_type<Definition>());
  }

  // Registers an upcaster for a reply type (see saga/upcaster.hpp). Before run().
  void register_upcaster(std::string_view message_type, int from_version, Upcaster upcaster);

  // Queues a new saga and returns its id (a UUID). The saga becomes durable, and its first
  // command is sent, in the next loop turn (also when stop() is called in between: run() drains
  // accepted starts before it returns).
  // `correlation_id`: the caller's request id, carried as correlationId by every command and
  // event of the saga (and expected back in every reply); empty = the saga id. Several sagas may
  // share one. Replies are routed to their saga by causationId, not by correlationId.
  // `data` is converted and serialized here, on the caller's thread, and not kept: the start holds
  // its JSON text until it is committed (pass an rvalue to spare a copy of the tree).
  // Throws std::invalid_argument (unknown type; data that does not convert, cannot be written as
  // JSON text, or would read back different from its text: a number that is not finite, binary
  // data) or std::logic_error (the engine is stopping).
  std::string start(std::string_view saga_type, nlohmann::json data,
                    std::string_view correlation_id = {});
  template <class Definition>
  std::string start(const typename Definition::data_type& data,
                    std::string_view correlation_id = {}) {
    return start(Definition::name, nlohmann::json(data), correlation_id);
  }

  // Operator actions, safe from any thread (and while run() runs). Each is applied in a loop turn
  // and committed like any message; the future is ready after that commit.
  //
  // retry: a saga parked as Failed because a command's retry policy ran out goes back to waiting
  //   for that command, which is re-sent (same eventId) with a fresh retry policy. Refused for a
  //   saga parked by a failure of user code (fix the cause, then resolve it) or not Failed; user
  //   code that failed after a timeout is recognised by the DSL's state names (the command is
  //   not the one "awaiting:"/"compensating:" names), not in a hand-written machine.
  // resolve: an operator closes a Failed saga as Completed or Compensated (after fixing things
  //   by hand); the note is journaled.
  // replay_dead_letter: feeds a dead letter's original bytes to the engine again, once: the
  //   replay is recorded in the same transaction as its effect, and a second replay is refused.
  // discard_dead_letter: marks a dead letter as dealt with; it is kept but cannot be replayed.
  //
  // Tools that do not run in this process (sagactl) queue the same actions as rows of the
  // store's operator_requests table; the loop reads them every Options::operator_poll_interval
  // and writes each answer in the commit that applies it.
  std::future<OperatorResult> retry(std::string saga_id);
  std::future<OperatorResult> resolve(std::string saga_id, SagaStatus status, std::string note);
  std::future<OperatorResult> replay_dead_letter(std::int64_t dead_letter_id);
  std::future<OperatorResult> discard_dead_letter(std::int64_t dead_letter_id);

  // Called on the loop thread after the commit that ended a saga. Callbacks should not throw;
  // an exception is caught and counted (EngineStats::callback_errors).
  void on_outcome(std::function<void(const SagaOutcome&)> callback);
  // Called on the loop thread after the commit that wrote a dead letter. Same rules.
  void on_dead_letter(std::function<void(const DeadLetter&)> callback);

  // One loop turn (see above). Waits up to Options::idle_wait when there is nothing to do.
  // Returns once what the turn committed is durable and handed out (it waits for the store's
  // sync if it must), with the number of inputs (starts and inbound messages) it committed.
  std::size_t run_once();
  // Runs turns until stop(). Then drains and returns: commits every start already accepted (and
  // queued operator action), however many turns that takes; retries a failed turn; flushes
  // re-send marks (at most 100 more turns for those, as replies still arrive). Only a store that
  // fails 100 turns in a row ends the drain early; what was not committed is then logged at
  // error level ("engine stopped with work not committed", with the saga ids not started).
  void run();
  // Makes run() return after the current turn. Final: a stopped engine does not run again.
  void stop();

  EngineStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saga
