// Configuration of an engine and of its store. Every field documents its default.
//
// Thread safety: plain values, copied into the engine at construction.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "saga/envelope.hpp"

namespace saga {

class Metrics;
class Logger;

// How hard a store pushes each commit to the disk (SQLite's PRAGMA synchronous).
enum class Durability {
  full,    // fsync on every commit: a committed turn survives power loss. The default.
  normal,  // WAL without fsync per commit: survives a process crash, may lose the last
           // commits on power loss.
  off,     // no fsync at all; for tests and benchmarks only.
};

struct StoreOptions {
  // Database file. ":memory:" gives a private in-memory database (tests). Default: "saga.db".
  std::string path = "saga.db";
  // Default: Durability::full.
  Durability durability = Durability::full;
  // How long a statement waits for a lock held by another connection before reporting busy.
  // Default: 5 s.
  std::chrono::milliseconds busy_timeout{5000};
  // Refuse to open a database another process already holds for writing (a lock file beside
  // the database). Default: true.
  bool exclusive_writer = true;
  // Run WAL checkpoints (copying committed pages into the database file) on a thread of the
  // store's own, with a second connection, instead of inside the commit that crosses the
  // auto-checkpoint size (~4 MiB of WAL whatever the page size: SQLite's 1,000 pages of 4 KiB;
  // without the thread, the commit that crosses it checkpoints). Should that thread fall behind a
  // writer that never pauses (~32 MiB of WAL), the writer completes the checkpoint itself after a
  // commit, so the WAL stays bounded. Default: true.
  bool background_checkpoint = true;
  // The page size, in bytes, of a database the store creates: a power of two from 512 to 65,536
  // (SqliteStore::open throws std::invalid_argument for another value). An existing database
  // keeps the size it was created with. Default: 8,192. A commit writes every page it changed to
  // the WAL (two system calls each); at the engine's large commits 8 KiB pages write fewer of
  // them than SQLite's default 4 KiB (docs/architecture.md, "8 KiB pages").
  std::size_t page_size = 8192;
  // With Durability::full, make commits durable on a thread of the store's own instead of inside
  // COMMIT: the committing thread goes on with its next work while the disk syncs, and the commits
  // made during one fdatasync share the next. A commit is then durable a little after commit()
  // returns; the engine holds back everything a turn sends or reports until it is
  // (Store::durable_through). Ignored by other durability levels and in-memory databases.
  // Default: true.
  bool sync_in_background = true;
};

// How often a command is re-sent while its reply does not come, and when to give up. The n-th wait
// is timeout * backoff^(n-1), capped at max_timeout, then shifted by up to +/- jitter of itself.
struct RetryPolicy {
  std::chrono::milliseconds timeout{10000};
  double backoff = 2.0;
  std::chrono::milliseconds max_timeout{300000};
  double jitter = 0.1;
  // Sends before giving up; 0 = never give up. A send the store did not record (a command's first
  // send, before a restart) counts as one made when the command was committed. Giving up on a
  // step's command raises StepFailed with timed_out: a linear saga compensates that step itself (it
  // may have been done), then the steps before it, and parks a saga whose pivot timed out
  // (saga/definition.hpp); giving up on a compensation parks the saga as Failed. Commands of
  // retriable steps never give up.
  //
  // The same waits pace a retriable step that gets failure replies: the new command it sends
  // after the n-th failure reply in a row leaves once the n-th wait is over (it is committed at
  // once, with the time it may leave and n: an engine that starts meanwhile lets it wait out the
  // rest, and the next failure in a row is the n+1-th).
  int max_attempts = 0;
};

// When consumer lag raises an alert (the saga_lag_alert_level metric, and a log line when the
// level changes). "Pending" counts commands not yet answered: pending outbox rows plus commands
// awaiting replies; "delay" is the age of the oldest of them. An alert is raised when the value
// is above a threshold. Defaults (the seed's): warning above 1,000 pending messages, critical
// above 10,000; delay warning above 5 minutes, critical above 30 minutes.
struct LagAlerts {
  std::size_t pending_warning = 1000;
  std::size_t pending_critical = 10000;
  std::chrono::seconds delay_warning{5 * 60};
  std::chrono::seconds delay_critical{30 * 60};
};

struct Options {
  StoreOptions store;

  // Name put in the `source` field of every envelope the engine sends. Default: "orchestrator".
  std::string source = "orchestrator";

  // Group commit: at most this many inbound messages and saga starts share one transaction.
  // 1 disables batching (one message per transaction). A turn takes what is waiting, up to
  // this; a full turn leaves its fsync to the store's thread (docs/architecture.md, "Durable
  // without waiting"). Default: 1024.
  std::size_t max_batch_messages = 1024;

  // Group commit: a turn stops taking inbound messages once their bytes reach this (the message
  // that crosses it is taken, so a turn takes at least one; 0 means one message per turn).
  // Bounds the inbound bytes a turn holds in memory and writes in one transaction when messages
  // are large (saga starts are not counted: they are in memory already); with messages of a few
  // KiB the count above binds first. A turn it ends counts as full. Default: 16 MiB.
  std::size_t max_batch_bytes = std::size_t{16} << 20;

  // Group commit: once a turn has its first message, it keeps draining for at most this long
  // before committing. Default: 0 (commit whatever has already arrived, never wait for more).
  std::chrono::microseconds max_batch_delay{0};

  // How long an idle loop turn waits for the first message. Default: 50 ms.
  std::chrono::milliseconds idle_wait{50};

  // The saga cache: at most about this many sagas stay in memory between turns. A saga that
  // ended leaves at once; past the limit, the sagas used longest ago leave after a commit (down
  // to 7/8 of it) and are read back from the store when a reply, timeout or operator action
  // next needs them. A saga a turn uses stays for that turn, so a single turn may hold more.
  // The sagas' own memory is then bounded by this, not by how many wait (each waiting saga still
  // keeps its open command's ids, type and deadline); a working set larger than the cache costs
  // a store read, a JSON parse and a restore per input. A saga read back is
  // restored from its stored row as after a restart, so its data must survive JSON (a NaN
  // double does not). Must be at least 1; Engine's constructor throws std::invalid_argument.
  // Default: 100,000 (about 190 MB of the order sample's sagas: saga_engine_loop --waiting).
  std::size_t max_cached_sagas = 100000;

  // The send queue: a new command waits in memory for the transport to take it (a participant
  // down or slow refuses sends) only while its destination holds fewer than this many (re-sends
  // included). A destination's later
  // commands are committed to the outbox as always but not kept in memory: once its queue has
  // drained to half, they are read back from the store in commit order, so each destination
  // still receives its commands in the order they were committed, and memory does not grow with
  // the time a participant is away. Re-sends (timeouts, operator retries) always queue: they are
  // bounded by the commands awaiting replies. At start, the commands sent at most once are read
  // back the same way, this many per destination at a time. Must be at least 1; Engine's
  // constructor throws std::invalid_argument. Default: 10,000 (about 9 MB per destination of the
  // order sample's commands).
  std::size_t max_queued_commands = 10000;

  // Inbound envelopes longer than this are dead-lettered unparsed. Default: 1 MiB.
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;

  // Raw bytes kept in a dead-letter row; longer messages are truncated (raw_size keeps the
  // original length). Default: 64 KiB.
  std::size_t dead_letter_max_bytes = 64 * 1024;

  // A sent command whose reply has not been applied is re-sent (same eventId, so the
  // participant deduplicates it) per this policy. Default: after 10 s, x2 each time, at most
  // 5 min, +/-10% jitter, 8 sends, then the engine gives up on the step (see RetryPolicy).
  RetryPolicy command_retry{std::chrono::milliseconds{10000}, 2.0,
                            std::chrono::milliseconds{300000}, 0.1, 8};
  // The same for compensating commands. Default: as above but 20 sends, then the saga is
  // parked as Failed for an operator.
  RetryPolicy compensation_retry{std::chrono::milliseconds{10000}, 2.0,
                                 std::chrono::milliseconds{300000}, 0.1, 20};
  // Per-step and per-compensation policies, by the command's wire type (e.g. "payment.Charge",
  // "inventory.Release"); a command not listed uses command_retry or compensation_retry.
  // Default: empty.
  std::map<std::string, RetryPolicy, std::less<>> retry_by_command;
  // A reply whose processing throws (an upcaster or other user code that fails, a bug) is tried
  // this many times, in later turns with the commit backoff between tries, before it is
  // dead-lettered with the error and the attempt count. Undecodable input is dead-lettered at
  // once. Default: 3.
  int poison_attempts = 3;

  // Seeds the jitter. Default: 0 = from std::random_device.
  std::uint64_t random_seed = 0;

  // Publish saga lifecycle events (saga.Started, saga.StepCompleted, saga.Compensating,
  // saga.Completed, saga.Compensated, saga.Failed) through Transport::publish after each
  // commit, while the transport has observers (Transport::has_observers). Default: true.
  bool publish_events = true;

  // Generates saga ids and the eventIds of the messages the engine sends; each must be a UUID,
  // unique for the database's lifetime (the engine lower-cases it; one that is not a UUID makes
  // the start or turn that needed it fail with std::invalid_argument). Called under a lock.
  // Default: empty = time-ordered v7 UUIDs (saga::new_uuid), which keep the store's id indexes
  // compact (docs/architecture.md). The simulation sets a seeded generator so a run is reproducible
  // byte for byte.
  std::function<std::string()> id_generator = {};

  // How often the loop looks for operator requests queued in the store by tools (sagactl).
  // Default: 500 ms.
  std::chrono::milliseconds operator_poll_interval{500};

  // After a failed commit (busy, I/O error, disk full) the turn is retried after this delay,
  // doubling up to max_commit_backoff. Default: 10 ms, capped at 1 s.
  std::chrono::milliseconds commit_backoff{10};
  std::chrono::milliseconds max_commit_backoff{1000};

  // Where the engine records its metrics (saga/metrics.hpp; the families are listed in the
  // README's "Monitoring" section). Give each engine its own registry. Serve it over HTTP with
  // saga::MetricsHttpServer (observability/http). Default: null = no metrics.
  std::shared_ptr<Metrics> metrics = nullptr;
  // Where the engine logs (saga/log.hpp). Default: null = the engine logs nothing.
  std::shared_ptr<Logger> logger = nullptr;
  // Consumer lag alert thresholds (used when metrics or a logger is set). Default: the seed's.
  LagAlerts lag_alerts = {};
};

}  // namespace saga
