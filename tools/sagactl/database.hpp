// sagactl's access to the orchestrator's SQLite file: a thin RAII wrapper over one connection.
//
// Reads use a read-only connection (SQLITE_OPEN_READONLY, busy timeout): safe while the
// orchestrator runs, since the database is in WAL mode and readers never block its writer.
// The only write sagactl ever makes is the INSERT of an operator request (requests.cpp), on a
// separate read-write connection held for that one short transaction.
//
// Errors: every SQLite failure throws Failure with exit code 3 (database error) and a message
// that names the file. Thread safety: one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace sagactl {

// Exit codes, documented in --help and the README.
enum ExitCode : int {
  kOk = 0,
  kNotFound = 1,  // not found, or refused (by sagactl's checks or by the engine)
  kUsage = 2,
  kDatabaseError = 3,
  kQueued = 4,  // an operator request was queued but not applied within --wait
};

// What a command throws to end sagactl with a one-line message and an exit code.
class Failure : public std::runtime_error {
 public:
  Failure(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string path) noexcept
      : db_(db), stmt_(stmt), path_(std::move(path)) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), path_(other.path_) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;

  // Parameters are numbered from 1. Text is copied.
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::int64_t value);
  // Advances to the next row; false when there are no more rows.
  bool step();
  void reset() noexcept { sqlite3_reset(stmt_); }

  std::string text(int column) const;
  std::string blob(int column) const;
  std::int64_t integer(int column) const noexcept { return sqlite3_column_int64(stmt_, column); }
  std::optional<std::int64_t> optional_integer(int column) const noexcept;
  bool is_null(int column) const noexcept {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string path_;
};

class Database {
 public:
  // Opens an existing saga database read-only. Throws Failure (exit 3) when the file does not
  // exist, is not an SQLite database or has no saga schema.
  static Database open_read_only(const std::string& path);
  // Opens an existing database read-write, for an operator request's INSERT only.
  static Database open_read_write(const std::string& path);

  Statement prepare(std::string_view sql);
  void execute(const char* sql);

  bool has_table(std::string_view table);
  bool has_column(std::string_view table, std::string_view column);
  // PRAGMA user_version: the number of the last migration applied.
  int schema_version();
  std::int64_t last_insert_id() const noexcept { return sqlite3_last_insert_rowid(db_.get()); }
  const std::string& path() const noexcept { return path_; }

 private:
  struct Closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
  };
  Database(std::unique_ptr<sqlite3, Closer> db, std::string path)
      : db_(std::move(db)), path_(std::move(path)) {}
  static Database open(const std::string& path, int flags);

  std::unique_ptr<sqlite3, Closer> db_;
  std::string path_;
};

// Runs the reads of one command in one read transaction, so they see one consistent snapshot.
class ReadTransaction {
 public:
  explicit ReadTransaction(Database& db) : db_(db) { db_.execute("BEGIN"); }
  ~ReadTransaction() {
    try {
      db_.execute("COMMIT");
    } catch (...) {
    }
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  Database& db_;
};

}  // namespace sagactl
