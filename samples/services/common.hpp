// Shared plumbing of the sample participant services (inventory, payment, shipping): the common
// command-line flags, one-line logging, stop on SIGINT/SIGTERM, the run loop, and small helpers
// to run SQL through prepared statements with bound parameters (never SQL built from data).
//
// A service's main() is: block_stop_signals(), flags, parse, then run_service() with a setup
// function (create tables, seed) and a function that registers the handlers.
//
// Thread safety: log() may be called from any thread; the rest is for the main thread.
#pragma once

#include <sqlite3.h>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "saga/envelope.hpp"
#include "saga/participant.hpp"

namespace services {

// ---- flags -------------------------------------------------------------------------------

struct CommonOptions {
  std::string service;              // "inventory", "payment", "shipping"
  std::string orchestrator;         // --orchestrator, required
  std::string instance;             // --instance, default "<service>-<host>-<pid>"
  std::string db;                   // --db, default "<service>.db"
  std::uint64_t seed = 1;           // --seed
  int heartbeat_ms = 1000;          // --heartbeat-ms
  std::string durability = "full";  // --durability
  std::size_t batch = saga::ParticipantOptions{}.max_batch;  // --batch
  int pause_after = 0;  // --pause-after: answered commands before the pause
  int pause_ms = 0;     // --pause-ms: 0 = never pause
};

// Adds --orchestrator, --instance, --db, --seed, --heartbeat-ms, --durability, --batch,
// --pause-after and --pause-ms to `app`, with defaults derived from options.service (which must
// be set).
void add_common_flags(CLI::App& app, CommonOptions& options);

// Validates a probability in [0, 1] (for --decline-rate, --failure-rate).
CLI::Validator probability();
// Validates a whole number >= 0 of at most 18 digits (for --seed, --decline-above). CLI11 alone
// would wrap "-3" into an unsigned option and print a bare "Could not convert".
CLI::Validator whole_number();

// Parses the command line. Returns the process exit code when main() should return at once:
// 0 after --help, 2 after a bad flag (the message is printed by CLI11); nullopt to go on.
std::optional<int> parse(CLI::App& app, int argc, char** argv);

// ---- logging -----------------------------------------------------------------------------

enum class Level { info, warn, error };

// Name printed in every log line; set by run_service() from --instance.
void set_log_name(std::string name);
// Writes one line to stderr: "2026-11-26T10:00:00.123Z INFO inventory-1 <message>".
void log(Level level, std::string_view message);
// The same line appended to `lines`, for writing several at once with write_log_lines().
void append_log_line(std::string& lines, Level level, std::string_view message);
// Writes and flushes `lines` (whole lines) to stderr.
void write_log_lines(std::string_view lines);
inline void info(std::string_view message) {
  log(Level::info, message);
}

// What each command's handler did, logged once the command's reply was committed and queued
// (ParticipantOptions::on_answered, see run_service). Notes are kept per command (its type and
// order id): a handler attempt that is rolled back and retried replaces its note, and the notes
// of commands left unanswered are dropped at the next poll.
class CommandLog {
 public:
  template <class Command>
  void note(const Command& command, std::string line, Level level = Level::info) {
    notes_[key(Command::type, command.order_id)] = {level, std::move(line)};
  }
  void clear() { notes_.clear(); }
  // The note left for an answered command, if any.
  std::optional<std::pair<Level, std::string>> take(const saga::Envelope& command) {
    const auto order_id = command.data.find("order_id");
    if (order_id == command.data.end() || !order_id->is_string()) return std::nullopt;
    auto found = notes_.find(key(command.event_type, order_id->get<std::string>()));
    if (found == notes_.end()) return std::nullopt;
    auto note = std::move(found->second);
    notes_.erase(found);
    return note;
  }

 private:
  static std::string key(std::string_view type, const std::string& order_id) {
    return std::string(type) + " " + order_id;
  }
  std::map<std::string, std::pair<Level, std::string>> notes_;
};

// ---- signals and the run loop ------------------------------------------------------------

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards (the
// ZeroMQ I/O threads included); run_service() then waits for them on a thread of its own.
// Call first thing in main().
void block_stop_signals();

struct Service {
  // Creates the service's tables (CREATE TABLE IF NOT EXISTS) and seeds them, on the ledger's
  // connection, before the participant connects. Throws on failure.
  std::function<void(sqlite3* db)> setup;
  // Registers the handlers. `log` is the per-command log line sink.
  std::function<void(saga::Participant& participant, CommandLog& log)> handlers;
};

// Opens the ledger at options.db, runs setup, connects to the orchestrator, registers the
// handlers and serves commands until SIGINT/SIGTERM, which call Participant::stop(). Returns
// the exit code: 0 after a signal, 1 when the ledger cannot be opened or set up, or the
// connection cannot be made.
int run_service(const CommonOptions& options, const Service& service);

// ---- SQL ---------------------------------------------------------------------------------

// A SQLite failure, with the statement and SQLite's message: a bug in the statement or the
// schema (a constraint, a syntax error). Thrown inside a handler it is a failed attempt: the
// command's transaction rolls back, the SDK retries, then sends the failure reply.
class SqlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A SQLite failure of the storage itself (locked, I/O, disk full, out of memory, corrupt):
// thrown inside a handler, the command is not answered (saga::StorageFailure) and the
// orchestrator's re-send tries it again, rather than a failure reply refusing it for good.
class SqlStorageError : public saga::StorageFailure {
 public:
  SqlStorageError(const std::string& what, int sqlite_code);
};

// One prepared statement. Parameters are bound by position (?1, ?2, ...).
//
// Statements are prepared once per connection and SQL text, then reused: a Statement takes an
// idle prepared statement for its SQL (or prepares one) and hands it back, reset and unbound,
// when it goes out of scope. Preparing is most of a handler's SQL cost otherwise. Call
// forget_statements(db) before closing `db` (run_service() does for the ledger). Main thread
// only, like the rest of this file.
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::string_view value);
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }

  // Runs to the next row: true when there is one, false when done. Throws SqlStorageError when
  // the storage failed, else SqlError.
  bool step();
  // Runs to completion (a statement without rows); returns sqlite3_changes().
  int run();
  void reset();

  std::int64_t integer(int column) const;
  std::string text(int column) const;

 private:
  [[noreturn]] void fail(const std::string& what) const;
  sqlite3* db_;
  sqlite3_stmt* statement_ = nullptr;
  std::string sql_;
};

// Finalizes the idle prepared statements of `db`. Statements still in scope are not touched.
void forget_statements(sqlite3* db) noexcept;

// Binds `args` to ?1, ?2, ... in order.
template <class... Args>
Statement& bind_all(Statement& statement, const Args&... args) {
  int index = 0;
  (statement.bind(++index, args), ...);
  return statement;
}

// Runs one statement without rows (INSERT, UPDATE, DDL) with `args` bound; returns the number
// of rows changed.
template <class... Args>
int execute(sqlite3* db, std::string_view sql, const Args&... args) {
  Statement statement(db, sql);
  return bind_all(statement, args...).run();
}

// The first column of the first row of a query, or nullopt when it returns no row.
template <class... Args>
std::optional<std::int64_t> query_integer(sqlite3* db, std::string_view sql, const Args&... args) {
  Statement statement(db, sql);
  if (!bind_all(statement, args...).step()) return std::nullopt;
  return statement.integer(0);
}

// Runs `work` in BEGIN IMMEDIATE ... COMMIT on a connection outside a handler (setup); rolls
// back and rethrows when it throws.
void in_transaction(sqlite3* db, const std::function<void()>& work);

}  // namespace services
