// Configuration of an engine and of its store. Every field documents its default.
//
// Thread safety: plain values, copied into the engine at construction.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "saga/envelope.hpp"

namespace saga {

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
};

struct Options {
  StoreOptions store;

  // Name put in the `source` field of every envelope the engine sends. Default: "orchestrator".
  std::string source = "orchestrator";

  // Group commit: at most this many inbound messages and saga starts share one transaction.
  // 1 disables batching (one message per transaction). Default: 256.
  std::size_t max_batch_messages = 256;

  // Group commit: once a turn has its first message, it keeps draining for at most this long
  // before committing. Default: 0 (commit whatever has already arrived, never wait for more).
  std::chrono::microseconds max_batch_delay{0};

  // How long an idle loop turn waits for the first message. Default: 50 ms.
  std::chrono::milliseconds idle_wait{50};

  // Inbound envelopes longer than this are dead-lettered unparsed. Default: 1 MiB.
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;

  // Raw bytes kept in a dead-letter row; longer messages are truncated (raw_size keeps the
  // original length). Default: 64 KiB.
  std::size_t dead_letter_max_bytes = 64 * 1024;

  // A dispatched command whose reply has not been applied is re-sent (same eventId, so the
  // participant deduplicates it) after command_timeout; each further wait is multiplied by
  // command_timeout_backoff, up to max_command_timeout. Default: 10 s, x2, 5 min.
  std::chrono::milliseconds command_timeout{10000};
  double command_timeout_backoff = 2.0;
  std::chrono::milliseconds max_command_timeout{300000};

  // Publish saga lifecycle events (saga.Started, saga.StepCompleted, saga.Compensating,
  // saga.Completed, saga.Compensated, saga.Failed) through Transport::publish after each
  // commit. Default: true.
  bool publish_events = true;

  // Generates saga ids and the eventIds of the messages the engine sends; each must be a UUID,
  // unique for the database's lifetime. Called under a lock. Default: empty = random v4 UUIDs.
  // The simulation sets a seeded generator so a run is reproducible byte for byte.
  std::function<std::string()> id_generator = {};

  // After a failed commit (busy, I/O error, disk full) the turn is retried after this delay,
  // doubling up to max_commit_backoff. Default: 10 ms, capped at 1 s.
  std::chrono::milliseconds commit_backoff{10};
  std::chrono::milliseconds max_commit_backoff{1000};
};

}  // namespace saga
