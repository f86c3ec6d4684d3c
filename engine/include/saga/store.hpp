// The seam between the engine and durable storage. The engine sees only this interface; the
// SQLite implementation lives in persistence/sqlite (saga/sqlite_store.hpp).
//
// Write model: the engine collects everything one loop turn produced into a WriteBatch and calls
// commit() once. A Store applies a batch atomically (one transaction) or not at all: saga rows,
// journal, outbox, inbox, dead letters and re-send marks together. This is the group commit.
//
// Errors: conditions a caller handles (busy, conflict, I/O error, disk full) come back as
// StoreStatus / StoreResult; a failed commit leaves the store exactly as before the call.
// Thread safety: a Store is used by one thread at a time (the engine loop); it is not internally
// synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "saga/clock.hpp"
#include "saga/status.hpp"

namespace saga {

// One saga instance as persisted. The state is stored by name (never by Boost.MSM's numeric id)
// together with the definition version, so reordering states in code cannot corrupt sagas.
struct SagaRecord {
  std::string id;
  std::string correlation_id;  // carried by every message of the saga; defaults to the id
  std::string type;
  int definition_version = 1;
  std::string state;
  SagaStatus status = SagaStatus::Running;
  std::string data;              // the saga data as JSON text
  std::int64_t row_version = 0;  // incremented by every committed update
  Timestamp created_at{};
  Timestamp updated_at{};
};

// What happened to a saga, in order. The journal is append-only.
//
// The entry of an input (started, message_in, timed_out) also records the first transition the
// input caused, in from_state and to_state (both empty when it caused none); a `transition`
// entry follows for each further one. Earlier builds of the engine wrote a `transition` entry for
// every transition and left the inputs' states empty; readers (saga::path_from_journal, sagactl)
// take both.
enum class JournalKind {
  started,         // the saga was created (detail: initial data)
  message_in,      // a message was accepted for this saga (detail: payload)
  message_out,     // a command was written to the outbox (detail: payload)
  transition,      // the state machine moved from_state -> to_state (after the input's first)
  duplicate,       // a message whose id is already in the inbox; no effect
  unexpected,      // a message the current state does not expect; dead-lettered
  user_error,      // user code (command builder, reply handler) threw (detail: what())
  status_changed,  // the status changed (detail: new status)
  timed_out,       // a command's retry policy ran out without a reply (detail: the reason)
};

std::string_view to_string(JournalKind kind) noexcept;
std::optional<JournalKind> journal_kind_from_string(std::string_view text) noexcept;

struct JournalEntry {
  std::int64_t sequence = 0;  // assigned by the store on commit; ascending
  std::string saga_id;
  Timestamp at{};
  JournalKind kind = JournalKind::transition;
  std::string message_id;
  std::string message_type;
  std::string from_state;
  std::string to_state;
  std::string detail;
};

// A command, open until its reply is applied (replied_at). The store records re-sends, not the
// first send: `dispatched` is set, and `attempts` and `dispatched_at` kept, only once the engine
// has handed the command to the transport a second time. An open row that is not dispatched was
// sent at most once, and is sent again when an engine starts on the store (at once, unless its
// destination has more than Options::max_queued_commands of them: then in commit order).
struct OutboxMessage {
  std::string message_id;  // the envelope's eventId; primary key
  std::string saga_id;
  std::string destination;  // service name
  std::string message_type;
  std::string payload;      // the encoded envelope, sent as is
  int attempts = 0;         // hand-overs to the transport, as of the last recorded re-send (else 0)
  bool dispatched = false;  // re-sent at least once (the attempts above are recorded)
  bool compensation = false;  // a compensating command (it has its own retry policy)
  Timestamp created_at{};
  std::optional<Timestamp> dispatched_at;  // last recorded re-send
  std::optional<Timestamp> replied_at;     // when a reply to it was applied
  // A retriable step's command sent again after a failure reply leaves only once its retry
  // policy's wait is over: not_before is then, retry_failures the failure replies in a row that
  // wait was for. Unset (and 0) for every other command. Written with the row; an operator's
  // re-open (WriteBatch::reopened) clears both.
  std::optional<Timestamp> not_before;
  int retry_failures = 0;
  std::int64_t sequence = 0;  // assigned by the store: ascending in commit order (SqliteStore: the
                              // rowid); set on rows read back, 0 on rows not yet committed
};

// The open commands of one destination that were sent at most once (not dispatched), as the
// engine reads them when it starts: how many, and the sequences of the oldest and the newest.
struct OutboxBacklog {
  std::string destination;
  std::int64_t count = 0;
  std::int64_t first_sequence = 0;
  std::int64_t last_sequence = 0;
};

// A message that could not be processed, kept for an operator with its raw bytes (bounded).
struct DeadLetter {
  std::int64_t id = 0;  // assigned by the store
  Timestamp at{};
  std::string reason_code;  // stable machine-readable code, e.g. "bad_uuid", "unexpected"
  std::string reason;       // human-readable explanation
  std::string message_id;   // when the envelope got far enough to have one
  std::string message_type;
  std::string saga_id;
  std::string raw;                        // the original bytes, truncated to the configured bound
  std::size_t raw_size = 0;               // the original length before truncation
  std::optional<Timestamp> replayed_at;   // set once an operator replayed it
  std::optional<Timestamp> discarded_at;  // set once an operator discarded it
  int attempts = 1;                       // processing attempts before it was dead-lettered
};

// An operator action queued in the store by a tool (sagactl) for the engine that owns the
// database. The engine applies it like Engine::retry / resolve / replay_dead_letter /
// discard_dead_letter and records the answer in the same commit as the effect.
struct StoredOperatorRequest {
  std::int64_t id = 0;
  Timestamp requested_at{};
  std::string action;  // retry | resolve | replay_dead_letter | discard_dead_letter
  std::string target;  // a saga id, or a dead-letter id as decimal text
  std::string status;  // resolve: Completed or Compensated
  std::string note;
  std::string requested_by;
};

// The answer to a StoredOperatorRequest, written with the effect.
struct OperatorAnswer {
  std::int64_t request_id = 0;
  bool ok = false;
  std::string result;
};

// How many sagas of one type are in one status.
struct SagaCount {
  std::string type;
  SagaStatus status = SagaStatus::Running;
  std::int64_t count = 0;
};

// A registered saga definition's graph (saga::Graph as JSON), for tools.
struct SagaDefinitionRecord {
  std::string type;
  int version = 1;
  std::string graph;
};

// A saga row to write: inserted when expected_row_version is nullopt, otherwise updated only if
// the stored row_version equals it (the store then stores row_version = expected + 1).
struct SagaWrite {
  SagaRecord record;
  std::optional<std::int64_t> expected_row_version;
  // For an update, the status the stored row has, when the writer knows it; a hint a store may
  // use to choose its statement (SqliteStore: whether the status index changes). Never changes
  // what is written or whether it conflicts.
  std::optional<SagaStatus> stored_status = std::nullopt;
};

// A command handed to the transport again: its id and how many hand-overs that makes.
struct DispatchMark {
  std::string message_id;
  int attempts = 0;
};

struct WriteBatch {
  std::vector<SagaWrite> sagas;
  std::vector<JournalEntry> journal;
  std::vector<OutboxMessage> outbox;  // new pending commands
  std::vector<std::string> inbox;     // processed inbound message ids
  std::vector<DeadLetter> dead_letters;
  std::vector<DispatchMark> dispatched;  // re-sends since the last commit: dispatched = 1,
                                         // attempts as given, dispatched_at = at
  std::vector<std::string> replied;      // outbox ids whose reply was applied
  // Outbox ids to await a reply again (attempts = 0, not dispatched, no wait before it leaves:
  // not_before and retry_failures cleared); an id also in `replied` ends closed (the engine never
  // sends both).
  std::vector<std::string> reopened;
  std::vector<std::int64_t> replayed;   // dead letters replayed by this batch
  std::vector<std::int64_t> discarded;  // dead letters discarded by this batch
  std::vector<OperatorAnswer> answers;  // operator requests applied (or refused) by this batch
  std::vector<SagaDefinitionRecord> definitions;  // inserted or replaced
  Timestamp at{};                                 // commit time, for inbox/outbox bookkeeping

  bool empty() const noexcept {
    return sagas.empty() && journal.empty() && outbox.empty() && inbox.empty() &&
           dead_letters.empty() && dispatched.empty() && replied.empty() && reopened.empty() &&
           replayed.empty() && discarded.empty() && answers.empty() && definitions.empty();
  }
  void clear() { *this = WriteBatch{}; }
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies the whole batch in one transaction, or nothing. A conflict (row version mismatch or a
  // duplicate saga insert) rolls back everything and reports StoreErrorCode::conflict.
  virtual StoreStatus commit(const WriteBatch& batch) = 0;

  // Durability that follows commit. A store may return from commit() once the batch is written
  // and visible to its reads, and make it durable a little later on a thread of its own, so that
  // the committing thread does not wait for the disk. Commits are numbered 1, 2, ... in the order
  // they succeeded; a failed commit takes no number.
  // - last_commit(): the number of the newest successful commit.
  // - durable_through(): every commit up to this number is durable. Never decreases.
  // - sync(): blocks until every commit made so far is durable; an error when that cannot be
  //   done (the store then refuses further commits).
  // - begin_sync(): the commits made so far become durable without the caller waiting (on a
  //   thread of the store's); sync() or durable_through() tell when.
  // The engine hands nothing of a turn to the outside world (commands, outcomes, events, operator
  // answers) before durable_through() reaches the turn's commit. It calls sync() after a turn
  // when it has nothing else to do, and begin_sync() when it goes on with a full turn. The
  // defaults describe a store whose commits are durable when commit() returns: durable_through()
  // is the largest number.
  virtual std::uint64_t last_commit() const noexcept { return 0; }
  virtual std::uint64_t durable_through() const noexcept {
    return std::numeric_limits<std::uint64_t>::max();
  }
  virtual StoreStatus sync() { return {}; }
  virtual void begin_sync() {}

  virtual StoreResult<std::optional<SagaRecord>> load_saga(const std::string& saga_id) = 0;
  virtual StoreResult<bool> inbox_contains(const std::string& message_id) = 0;

  // A read scope. Between begin_reads() and end_reads() the reads may share one read transaction:
  // one snapshot, and one lock taken and released for all of them instead of one each. The engine
  // opens a scope around applying a turn's inputs (an inbox lookup per reply, a load per saga not
  // in its cache), and ends it before the turn's commit. A store with nothing to share keeps the
  // defaults, which do nothing. commit() ends an open scope first. Scopes do not nest; ending one
  // that is not open does nothing. Never throws: a store that cannot open the shared transaction
  // lets every read stand alone, as outside a scope.
  virtual void begin_reads() noexcept {}
  virtual void end_reads() noexcept {}

  // Open outbox rows not dispatched (sent at most once), oldest first, at most `limit`. For tools
  // and tests: the engine reads them a destination at a time (pending_outbox_for).
  virtual StoreResult<std::vector<OutboxMessage>> pending_outbox(std::size_t limit) = 0;
  // The same rows for one destination with a sequence above `after_sequence`, in commit order
  // (ascending sequence), at most `limit`. The engine reads the commands it did not keep in
  // memory (Options::max_queued_commands) this way, a destination at a time. SqliteStore walks
  // the outbox in rowid order from `after_sequence`, past other destinations' rows, until it has
  // `limit` rows or reaches the end: no index is kept for this rare read.
  virtual StoreResult<std::vector<OutboxMessage>> pending_outbox_for(const std::string& destination,
                                                                     std::int64_t after_sequence,
                                                                     std::size_t limit) = 0;
  // Those rows counted by destination (ordered by destination name), read once at start.
  virtual StoreResult<std::vector<OutboxBacklog>> outbox_backlog() = 0;
  // Dispatched (re-sent) rows whose reply has not been applied, oldest dispatch first, at most
  // `limit`.
  virtual StoreResult<std::vector<OutboxMessage>> awaiting_reply(std::size_t limit) = 0;
  // Open rows that have a not_before (retries after a failure reply, re-sent or not), oldest
  // first, without their payloads. Read once at start: those never re-sent and still waiting
  // wait out the rest of their wait, and every one gives its saga's failures in a row.
  virtual StoreResult<std::vector<OutboxMessage>> retries_after_failure() = 0;

  // The outbox row of one command, or nullopt. The engine routes a reply by its causationId.
  virtual StoreResult<std::optional<OutboxMessage>> outbox_message(
      const std::string& message_id) = 0;
  // Operator requests not yet answered, oldest first, at most `limit`.
  virtual StoreResult<std::vector<StoredOperatorRequest>> pending_operator_requests(
      std::size_t limit) = 0;

  // Read side, for tests, tools and operators.
  virtual StoreResult<std::vector<JournalEntry>> journal(const std::string& saga_id) = 0;
  virtual StoreResult<std::vector<DeadLetter>> dead_letters(std::size_t limit) = 0;
  virtual StoreResult<std::optional<DeadLetter>> dead_letter(std::int64_t id) = 0;
  virtual StoreResult<std::vector<OutboxMessage>> outbox(const std::string& saga_id) = 0;
  virtual StoreResult<std::vector<SagaRecord>> sagas_with_status(SagaStatus status,
                                                                 std::size_t limit) = 0;

  // Monitoring, read once when an engine with metrics starts: the number of sagas per type and
  // status (one aggregate query; pairs without sagas are absent, and so are rows whose status
  // this build does not know), and the dead-letter queue
  // depth (dead letters neither replayed nor discarded).
  virtual StoreResult<std::vector<SagaCount>> count_sagas() = 0;
  virtual StoreResult<std::int64_t> count_open_dead_letters() = 0;
};

}  // namespace saga
