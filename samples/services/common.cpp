#include "common.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "saga/clock.hpp"
#include "saga/sqlite_participant_ledger.hpp"
#include "saga/sqlite_tuning.hpp"

namespace services {
namespace {

// ---- flags -------------------------------------------------------------------------------

// tcp://HOST:PORT or ipc://PATH: the endpoints a participant in another process can reach.
std::string check_endpoint(const std::string& value) {
  const std::string expected =
      "expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555) or ipc://PATH, got '" + value + "'";
  if (value.starts_with("ipc://")) return value.size() > 6 ? "" : expected;
  if (!value.starts_with("tcp://")) return expected;
  std::string_view address = std::string_view(value).substr(6);
  auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return expected;
  std::string_view port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5) return expected;
  for (char c : port)
    if (!std::isdigit(static_cast<unsigned char>(c))) return expected;
  int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return "port must be 1..65535, got '" + value + "'";
  return "";
}

std::string check_instance(const std::string& value) {
  if (value.empty() || value.size() > 128) return "instance name must be 1..128 characters";
  for (char c : value) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':' && c != '@')
      return "instance name may contain only letters, digits and - _ . : @, got '" + value + "'";
  }
  return "";
}

std::string check_path(const std::string& value) {
  return value.empty() ? "database path must not be empty" : "";
}

// ---- logging -----------------------------------------------------------------------------

std::mutex log_mutex;
std::string log_name = "service";

std::string_view level_name(Level level) {
  switch (level) {
    case Level::info:
      return "INFO";
    case Level::warn:
      return "WARN";
    case Level::error:
      return "ERROR";
  }
  return "INFO";
}

// Keeps a log record on one line whatever the message holds (command data, SQLite errors).
std::string one_line(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      out += '?';
    else
      out += c;
  }
  return out;
}

// ---- signals -----------------------------------------------------------------------------

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Waits for SIGINT/SIGTERM on its own thread (the signals are blocked everywhere else) and
// calls on_signal from there, an ordinary thread: Participant::stop() is safe to call from any
// thread, but not documented as async-signal-safe.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int)> on_signal)
      : on_signal_(std::move(on_signal)), thread_([this] { watch(); }) {}
  ~SignalWatcher() {
    done_.store(true);
    pthread_kill(thread_.native_handle(), SIGTERM);  // wakes sigwait; SIGTERM is blocked
    thread_.join();
  }

 private:
  void watch() {
    const sigset_t set = stop_signals();
    while (true) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      if (done_.load()) return;
      on_signal_(signal);
    }
  }

  std::function<void(int)> on_signal_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

saga::Durability durability_of(const std::string& name) {
  if (name == "normal") return saga::Durability::normal;
  if (name == "off") return saga::Durability::off;
  return saga::Durability::full;
}

}  // namespace

void add_common_flags(CLI::App& app, CommonOptions& options) {
  options.instance = saga::default_instance_name(options.service);
  options.db = options.service + ".db";
  app.add_option("--orchestrator", options.orchestrator,
                 "The orchestrator's ZeroMQ ROUTER endpoint to connect to, e.g. "
                 "tcp://127.0.0.1:5555")
      ->required()
      ->type_name("ENDPOINT")
      ->check(CLI::Validator(check_endpoint, "", "endpoint"));
  app.add_option("--instance", options.instance,
                 "This instance's name, announced to the orchestrator and printed in every log "
                 "line (default: " +
                     options.service + "-<pid>)")
      ->type_name("NAME")
      ->check(CLI::Validator(check_instance, "", "instance"));
  app.add_option("--db", options.db,
                 "SQLite ledger of this service: its business tables and the record of handled "
                 "commands (created if missing, kept across restarts)")
      ->type_name("PATH")
      ->check(CLI::Validator(check_path, "", "path"))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Seed of the random failure injection")
      ->type_name("N")
      ->check(whole_number())
      ->capture_default_str();
  app.add_option("--heartbeat-ms", options.heartbeat_ms,
                 "Heartbeat interval towards the orchestrator, in milliseconds; the orchestrator "
                 "is presumed gone after 3 silent intervals")
      ->type_name("MS")
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();
  app.add_option("--pause-after", options.pause_after,
                 "With --pause-ms: pause once after answering this many commands")
      ->type_name("N")
      ->check(CLI::Range(0, 1000000000))
      ->capture_default_str();
  app.add_option("--pause-ms", options.pause_ms,
                 "Stop polling for this long, once (a stalled instance: commands queue up, and "
                 "the orchestrator may give up on them and compensate); 0 never pauses")
      ->type_name("MS")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app.add_option("--durability", options.durability,
                 "How hard each commit goes to disk: full (fsync every commit), normal (survives "
                 "a process crash, not a power loss), off (tests only)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"full", "normal", "off"}))
      ->capture_default_str();
  app.add_option("--batch", options.batch,
                 "Most commands handled in one ledger transaction (group commit: the commands "
                 "waiting together share one commit); 1 commits each command on its own")
      ->type_name("N")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
}

CLI::Validator probability() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        try {
          std::size_t used = 0;
          double p = std::stod(value, &used);
          if (used == value.size() && p >= 0.0 && p <= 1.0) return "";
        } catch (const std::exception&) {
        }
        return "must be a probability between 0 and 1, got '" + value + "'";
      },
      "", "probability");
}

CLI::Validator whole_number() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (value.empty() || value.size() > 18 ||
            value.find_first_not_of("0123456789") != std::string::npos)
          return "must be a whole number >= 0, got '" + value + "'";
        return "";
      },
      "", "whole number");
}

std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int code = app.exit(error);  // prints --help to stdout, errors to stderr
    return code == 0 ? 0 : 2;
  }
  return std::nullopt;
}

void set_log_name(std::string name) {
  std::lock_guard lock(log_mutex);
  log_name = std::move(name);
}

void append_log_line(std::string& lines, Level level, std::string_view message) {
  lines += saga::format_rfc3339(std::chrono::system_clock::now());
  lines += ' ';
  lines += level_name(level);
  lines += ' ';
  {
    std::lock_guard lock(log_mutex);
    lines += log_name;
  }
  lines += ' ';
  lines += one_line(message);
  lines += '\n';
}

void write_log_lines(std::string_view lines) {
  if (lines.empty()) return;
  std::fwrite(lines.data(), 1, lines.size(), stderr);
  std::fflush(stderr);
}

void log(Level level, std::string_view message) {
  std::string line;
  append_log_line(line, level, message);
  write_log_lines(line);
}

void block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int run_service(const CommonOptions& options, const Service& service) {
  set_log_name(options.instance);
  // Both before the ledger opens the first connection; false only if SQLite was already in use.
  if (!saga::disable_sqlite_memory_statistics() ||
      !saga::keep_sqlite_statement_journals_in_memory())  // each command's savepoint journal
    log(Level::warn, "SQLite was in use before its process-wide settings: they are not applied");
  saga::StoreOptions store;
  store.path = options.db;
  store.durability = durability_of(options.durability);
  auto opened = saga::SqliteParticipantLedger::open(store);
  if (!opened) {
    log(Level::error, "cannot open the ledger " + options.db + ": " + opened.error().message);
    return 1;
  }
  auto ledger = std::move(opened.value());
  struct ForgetStatements {  // before the ledger closes its connection
    sqlite3* db;
    ~ForgetStatements() { forget_statements(db); }
  } forget{ledger->connection()};
  try {
    service.setup(ledger->connection());
  } catch (const std::exception& error) {
    log(Level::error, "cannot set up the ledger " + options.db + ": " + error.what());
    return 1;
  }

  saga::ParticipantOptions participant_options;
  participant_options.connection.orchestrator_endpoint = options.orchestrator;
  participant_options.connection.service = options.service;
  participant_options.connection.instance = options.instance;
  participant_options.connection.heartbeat_interval =
      std::chrono::milliseconds{options.heartbeat_ms};
  participant_options.handler_attempts = 3;
  participant_options.max_batch = options.batch;
  participant_options.on_error = [](const std::string& what) { log(Level::error, what); };
  CommandLog command_log;
  // The lines of one poll's answers are written together once it returns: a flush per line was a
  // system call per command.
  std::string answered_lines;
  participant_options.on_answered = [&](const saga::Envelope& command, bool duplicate) {
    if (auto line = command_log.take(command))
      append_log_line(answered_lines, line->first, line->second);
    else if (duplicate)
      append_log_line(answered_lines, Level::info,
                      "answered a redelivered " + command.event_type + " (" + command.event_id +
                          ") with the reply recorded the first time");
  };

  std::unique_ptr<saga::Participant> participant;
  try {
    participant = std::make_unique<saga::Participant>(participant_options, *ledger);
    service.handlers(*participant, command_log);
  } catch (const std::exception& error) {
    log(Level::error, error.what());
    return 1;
  }
  info("connected to " + options.orchestrator + "; ledger " + options.db);

  std::atomic<bool> stopping{false};
  {
    SignalWatcher watcher([&](int signal) {
      if (stopping.exchange(true)) return;
      info(std::string("stopping on ") + (signal == SIGINT ? "SIGINT" : "SIGTERM"));
      participant->stop();
    });
    // Participant::run() with one addition: the notes of commands a poll left unanswered are
    // dropped before the next (on_answered above logs the others, once each reply is queued).
    std::size_t answered = 0;
    bool paused = options.pause_ms == 0;
    while (!stopping.load()) {
      command_log.clear();
      answered += participant->poll(std::chrono::milliseconds{100});
      write_log_lines(answered_lines);
      answered_lines.clear();
      if (!paused && answered >= static_cast<std::size_t>(options.pause_after)) {
        paused = true;
        info("pausing for " + std::to_string(options.pause_ms) + " ms (--pause-ms)");
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::milliseconds{options.pause_ms};
        while (!stopping.load() && std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds{10});
        info("resuming");
      }
    }
  }
  auto stats = participant->stats();
  participant.reset();  // closes the connection
  forget_statements(ledger->connection());
  ledger.reset();
  info("stopped: " + std::to_string(stats.handled) + " handled, " +
       std::to_string(stats.duplicates) + " duplicates, " + std::to_string(stats.failures) +
       " failed after retries, " + std::to_string(stats.errors) + " errors, " +
       std::to_string(stats.compensated_first) + " not handled (compensated first)");
  return 0;
}

// ---- SQL ---------------------------------------------------------------------------------

namespace {

// Idle prepared statements, by connection and SQL text.
using IdleStatements = std::unordered_map<std::string, std::vector<sqlite3_stmt*>>;

std::unordered_map<sqlite3*, IdleStatements>& idle_statements() {
  static std::unordered_map<sqlite3*, IdleStatements> idle;
  return idle;
}

}  // namespace

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db), sql_(sql) {
  if (auto connection = idle_statements().find(db_); connection != idle_statements().end()) {
    if (auto idle = connection->second.find(sql_);
        idle != connection->second.end() && !idle->second.empty()) {
      statement_ = idle->second.back();
      idle->second.pop_back();
      return;
    }
  }
  const char* tail = nullptr;
  if (sqlite3_prepare_v3(db_, sql_.c_str(), static_cast<int>(sql_.size()),
                         SQLITE_PREPARE_PERSISTENT, &statement_, &tail) != SQLITE_OK)
    fail("prepare");
  if (statement_ == nullptr) fail("prepare (no statement)");
  for (; tail != nullptr && *tail != '\0'; ++tail)
    if (!std::isspace(static_cast<unsigned char>(*tail)) && *tail != ';') {
      sqlite3_finalize(statement_);
      throw SqlError("more than one SQL statement in: " + sql_);
    }
}

Statement::~Statement() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
  try {
    idle_statements()[db_][sql_].push_back(statement_);
  } catch (...) {
    sqlite3_finalize(statement_);
  }
}

void forget_statements(sqlite3* db) noexcept {
  auto connection = idle_statements().find(db);
  if (connection == idle_statements().end()) return;
  for (auto& [sql, statements] : connection->second)
    for (sqlite3_stmt* statement : statements) sqlite3_finalize(statement);
  idle_statements().erase(connection);
}

Statement& Statement::bind(int index, std::string_view value) {
  if (sqlite3_bind_text(statement_, index, value.data(), static_cast<int>(value.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    fail("bind ?" + std::to_string(index));
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  if (sqlite3_bind_int64(statement_, index, value) != SQLITE_OK)
    fail("bind ?" + std::to_string(index));
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(statement_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail("step");
}

int Statement::run() {
  while (step()) {
  }
  return sqlite3_changes(db_);
}

void Statement::reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

std::int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(statement_, column);
}

std::string Statement::text(int column) const {
  const auto* data = sqlite3_column_text(statement_, column);
  if (data == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(data),
                     static_cast<std::size_t>(sqlite3_column_bytes(statement_, column)));
}

namespace {

// The storage failed (nullopt: the statement or the schema did).
std::optional<saga::StoreErrorCode> storage_error_code(int sqlite_code) {
  switch (sqlite_code & 0xff) {
    case SQLITE_BUSY:
      return saga::StoreErrorCode::busy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return saga::StoreErrorCode::corrupt;
    case SQLITE_LOCKED:  // this connection: not worth the busy path's giving up on a whole batch
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
      return saga::StoreErrorCode::io_error;
    default:
      return std::nullopt;
  }
}

}  // namespace

void Statement::fail(const std::string& what) const {
  const int code = sqlite3_extended_errcode(db_);
  std::string message =
      "SQLite " + what + " failed: " + sqlite3_errmsg(db_) + " (in: " + sql_ + ")";
  if (storage_error_code(code)) throw SqlStorageError(message, code);
  throw SqlError(message);
}

SqlStorageError::SqlStorageError(const std::string& what, int sqlite_code)
    : saga::StorageFailure(
          what, storage_error_code(sqlite_code).value_or(saga::StoreErrorCode::io_error)) {}

void in_transaction(sqlite3* db, const std::function<void()>& work) {
  execute(db, "BEGIN IMMEDIATE");
  try {
    work();
    execute(db, "COMMIT");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace services
