// SqliteStore: saga::Store on one SQLite connection. See saga/sqlite_store.hpp for the contract
// and migrations/0001_initial.sql for the schema and its conventions (timestamps are integer
// microseconds since the Unix epoch).
#include "saga/sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "migrations.hpp"
#include "wal_syncer.hpp"

namespace saga {
namespace {

using Error = std::optional<StoreError>;

std::int64_t to_micros(Timestamp at) noexcept {
  return std::chrono::floor<std::chrono::microseconds>(at.time_since_epoch()).count();
}

Timestamp from_micros(std::int64_t micros) noexcept {
  return Timestamp{
      std::chrono::duration_cast<Timestamp::duration>(std::chrono::microseconds{micros})};
}

std::int64_t to_limit(std::size_t limit) noexcept {
  constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, kMax));
}

StoreErrorCode code_for(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return StoreErrorCode::busy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StoreErrorCode::corrupt;
    case SQLITE_CONSTRAINT:
      return StoreErrorCode::conflict;
    default:  // SQLITE_FULL, SQLITE_IOERR_*, SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_NOMEM, ...
      return StoreErrorCode::io_error;
  }
}

std::string describe(sqlite3* db, int rc) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return message != nullptr ? std::string(message) : std::string(sqlite3_errstr(rc));
}

StoreError sqlite_error(sqlite3* db, int rc, std::string_view what) {
  return StoreError{code_for(rc), std::string(what) + ": " + describe(db, rc)};
}

struct ConnectionDeleter {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using Connection = std::unique_ptr<sqlite3, ConnectionDeleter>;

struct StatementDeleter {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

// One execution of a prepared statement: bind, step, read columns. The statement is reset and
// its bindings cleared when this goes out of scope, whatever happened, so a cached statement is
// always ready for the next use. Text and blobs are bound without copying: the bound data must
// outlive the Use.
class Use {
 public:
  explicit Use(sqlite3_stmt* stmt) noexcept : stmt_(stmt) {}
  ~Use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  Use& text(int index, std::string_view value) noexcept {
    const char* data = value.data() != nullptr ? value.data() : "";
    return check(sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  Use& blob(int index, std::string_view value) noexcept {
    const char* data = value.data() != nullptr ? value.data() : "";
    return check(sqlite3_bind_blob64(stmt_, index, data, value.size(), SQLITE_STATIC));
  }
  Use& integer(int index, std::int64_t value) noexcept {
    return check(sqlite3_bind_int64(stmt_, index, value));
  }
  Use& time(int index, Timestamp value) noexcept { return integer(index, to_micros(value)); }
  Use& optional_time(int index, std::optional<Timestamp> value) noexcept {
    return value ? time(index, *value) : check(sqlite3_bind_null(stmt_, index));
  }

  // SQLITE_ROW, SQLITE_DONE or an error code (including a failed bind).
  int step() noexcept { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }

  std::string text(int column) const {
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (data == nullptr) return {};
    return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  std::string blob(int column) const {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    if (data == nullptr) return {};
    return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  std::int64_t integer(int column) const noexcept { return sqlite3_column_int64(stmt_, column); }
  Timestamp time(int column) const noexcept { return from_micros(integer(column)); }
  std::optional<Timestamp> optional_time(int column) const noexcept {
    if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::nullopt;
    return time(column);
  }

 private:
  Use& check(int rc) noexcept {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

// Runs a statement that returns no rows (or whose rows do not matter).
Error run(sqlite3* db, sqlite3_stmt* stmt, std::string_view what) {
  Use use(stmt);
  const int rc = use.step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sqlite_error(db, rc, what);
  return std::nullopt;
}

Error prepare(sqlite3* db, const char* sql, Statement& out) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  out.reset(stmt);
  if (rc == SQLITE_OK) return std::nullopt;
  StoreError error = sqlite_error(db, rc, std::string("preparing \"") + sql + "\"");
  if ((rc & 0xff) == SQLITE_ERROR) error.code = StoreErrorCode::corrupt;  // schema mismatch
  return error;
}

// Rows of one table are written by statements of 16, 4 and 1 rows: every execution of a
// statement has a fixed cost (about 4,000 instructions: the program's start and halt, its
// cursors) that the rows of one statement share.
//
// A statement of several rows is `INSERT OR ROLLBACK` (`UPDATE OR ROLLBACK`): a broken primary
// key, NOT NULL or CHECK constraint rolls the whole transaction back. Under SQLite's default
// (ABORT) it would undo only the statement, which needs a statement journal: a copy of every page
// the statement changes, in a temporary file once past 64 KiB, which a statement of 16 rows
// across a table and its indexes soon is. Without one, a failed grouped statement may leave some
// of its rows in the open transaction (a STRICT type error aborts the statement alone), so a
// batch never goes on after one: commit_batch returns, and the transaction is rolled back.
// SqliteStore::commit writes a batch whose grouped statement broke a constraint again, one row
// per statement, so the error names the row as before.
constexpr std::size_t kRowsPerStatement[] = {16, 4, 1};
constexpr std::size_t kOneRow = std::size(kRowsPerStatement) - 1;  // its index
using RowStatements = std::array<Statement, std::size(kRowsPerStatement)>;

// `rows` copies of `row`, separated by ", ", with its '?'s numbered in order from `first`:
// numbered_rows("(?, 0, ?)", 2) is "(?1, 0, ?2), (?3, 0, ?4)".
std::string numbered_rows(std::string_view row, std::size_t rows, int first = 1) {
  std::string sql;
  int next = first;
  for (std::size_t i = 0; i < rows; ++i) {
    if (i > 0) sql += ", ";
    for (char c : row) {
      sql += c;
      if (c == '?') sql += std::to_string(next++);
    }
  }
  return sql;
}

// `verb` is INSERT or UPDATE; `head` what follows it up to the rows.
Error prepare_rows(sqlite3* db, std::string_view verb, std::string_view head, std::string_view row,
                   std::string_view tail, int first_row_parameter, RowStatements& out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::string sql =
        std::string(verb) + (i == kOneRow ? " " : " OR ROLLBACK ") + std::string(head) +
        numbered_rows(row, kRowsPerStatement[i], first_row_parameter) + std::string(tail);
    if (Error error = prepare(db, sql.c_str(), out[i])) return error;
  }
  return std::nullopt;
}

// How a batch's rows are written: grouped (the sizes of kRowsPerStatement), or one per statement,
// and whether a grouped statement broke a constraint (its transaction is then rolled back).
struct RowWriting {
  bool grouped = true;
  bool grouped_statement_broke_constraint = false;
};

// Writes `rows` through `statements` (prepared by prepare_rows). bind_shared(use) binds the
// parameters before the rows' (none, or ?1 for a time they share); bind_row(use, offset, row)
// binds a row's, ?offset+1 on. failed(rc, row) is the error of one row alone.
template <class Row, class BindShared, class BindRow, class Failed>
Error write_rows(RowWriting& writing, const RowStatements& statements, std::span<const Row> rows,
                 int shared_parameters, int parameters_per_row, BindShared bind_shared,
                 BindRow bind_row, Failed failed) {
  std::size_t next = 0;
  for (std::size_t size = writing.grouped ? 0 : kOneRow; size < statements.size(); ++size) {
    const std::size_t count = kRowsPerStatement[size];
    for (; rows.size() - next >= count; next += count) {
      int rc = SQLITE_OK;
      {
        Use use(statements[size].get());
        bind_shared(use);
        for (std::size_t i = 0; i < count; ++i)
          bind_row(use, shared_parameters + static_cast<int>(i) * parameters_per_row,
                   rows[next + i]);
        rc = use.step();
      }
      if (rc == SQLITE_DONE) continue;
      StoreError error = failed(rc, rows[next]);
      if (count > 1) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT) writing.grouped_statement_broke_constraint = true;
        error.message += " (one statement writing " + std::to_string(count) + " rows)";
      }
      return error;
    }
  }
  return std::nullopt;
}

// A write transaction (BEGIN IMMEDIATE) that rolls back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, sqlite3_stmt* begin, sqlite3_stmt* commit,
              sqlite3_stmt* rollback) noexcept
      : db_(db), begin_(begin), commit_(commit), rollback_(rollback) {}
  ~Transaction() {
    if (open_ && sqlite3_get_autocommit(db_) == 0) {
      Use use(rollback_);
      use.step();
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Error begin() {
    if (Error error = run(db_, begin_, "beginning a write transaction")) return error;
    open_ = true;
    return std::nullopt;
  }
  Error commit() {
    if (Error error = run(db_, commit_, "committing")) return error;
    open_ = false;
    return std::nullopt;
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* begin_;
  sqlite3_stmt* commit_;
  sqlite3_stmt* rollback_;
  bool open_ = false;
};

// "<path>.lock", held with flock(LOCK_EX) while the store lives; closing the descriptor releases
// it (also when the process dies). It is named after the path SQLite opened (symlinks, "..", "."
// resolved), so two paths to one database find one lock; a hard link to the database is not
// detected.
class LockFile {
 public:
  LockFile() = default;
  ~LockFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

  // `db_path` as given, for messages; `resolved_path` is the file's name with symlinks resolved.
  Error acquire(const std::string& db_path, const std::string& resolved_path) {
    const std::string lock_path = resolved_path + ".lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return StoreError{StoreErrorCode::io_error, "cannot open lock file " + lock_path + ": " +
                                                      std::system_category().message(errno)};
    }
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        std::string message = "database " + db_path;
        message += " is already open for writing by another engine (lock file ";
        message += lock_path + ")";
        return StoreError{StoreErrorCode::busy, std::move(message)};
      }
      return StoreError{StoreErrorCode::io_error,
                        "cannot lock " + lock_path + ": " + std::system_category().message(err)};
    }
    fd_ = fd;
    return std::nullopt;
  }

 private:
  int fd_ = -1;
};

StoreResult<std::string> query_text(sqlite3* db, const char* sql) {
  Statement stmt;
  if (Error error = prepare(db, sql, stmt)) return *error;
  Use use(stmt.get());
  const int rc = use.step();
  if (rc == SQLITE_ROW) return use.text(0);
  if (rc == SQLITE_DONE) return std::string();
  return sqlite_error(db, rc, sql);
}

StoreResult<int> user_version(sqlite3* db) {
  Statement stmt;
  if (Error error = prepare(db, "PRAGMA user_version", stmt)) return *error;
  Use use(stmt.get());
  const int rc = use.step();
  if (rc != SQLITE_ROW) return sqlite_error(db, rc, "reading PRAGMA user_version");
  return static_cast<int>(use.integer(0));
}

StoreError newer_schema(int found) {
  return StoreError{StoreErrorCode::corrupt,
                    "database schema version " + std::to_string(found) +
                        " is newer than this build supports (" +
                        std::to_string(SqliteStore::latest_schema_version()) + ")"};
}

const char* synchronous_pragma(Durability durability) noexcept {
  switch (durability) {
    case Durability::normal:
      return "PRAGMA synchronous = NORMAL";
    case Durability::off:
      return "PRAGMA synchronous = OFF";
    case Durability::full:
      break;
  }
  return "PRAGMA synchronous = FULL";
}

bool syncs_in_background(const StoreOptions& options, bool is_file) noexcept {
  return is_file && options.durability == Durability::full && options.sync_in_background;
}

// The writer connection's page cache bound, in KiB (PRAGMA cache_size = -kCacheKib).
constexpr int kCacheKib = 16 * 1024;

constexpr const char* kSagaColumns =
    "id, type, definition_version, state, status, data, row_version, created_at, updated_at, "
    "correlation_id";

StoreResult<SagaRecord> read_saga(const Use& row) {
  SagaRecord record;
  record.id = row.text(0);
  record.type = row.text(1);
  record.definition_version = static_cast<int>(row.integer(2));
  record.state = row.text(3);
  const std::string status = row.text(4);
  const std::optional<SagaStatus> parsed = saga_status_from_string(status);
  if (!parsed) {
    return StoreError{StoreErrorCode::corrupt,
                      "saga " + record.id + " has an unknown status '" + status + "'"};
  }
  record.status = *parsed;
  record.data = row.text(5);
  record.row_version = row.integer(6);
  record.created_at = row.time(7);
  record.updated_at = row.time(8);
  record.correlation_id = row.text(9);
  return record;
}

StoreResult<OutboxMessage> read_outbox(const Use& row) {
  OutboxMessage message;
  message.message_id = row.text(0);
  message.saga_id = row.text(1);
  message.destination = row.text(2);
  message.message_type = row.text(3);
  message.payload = row.text(4);
  message.attempts = static_cast<int>(row.integer(5));
  message.dispatched = row.integer(6) != 0;
  message.created_at = row.time(7);
  message.dispatched_at = row.optional_time(8);
  message.replied_at = row.optional_time(9);
  message.compensation = row.integer(10) != 0;
  message.not_before = row.optional_time(11);
  message.retry_failures = static_cast<int>(row.integer(12));
  message.sequence = row.integer(13);
  return message;
}

StoreResult<JournalEntry> read_journal(const Use& row) {
  JournalEntry entry;
  entry.sequence = row.integer(0);
  entry.saga_id = row.text(1);
  entry.at = row.time(2);
  const std::string kind = row.text(3);
  const std::optional<JournalKind> parsed = journal_kind_from_string(kind);
  if (!parsed) {
    return StoreError{StoreErrorCode::corrupt, "journal entry " + std::to_string(entry.sequence) +
                                                   " has an unknown kind '" + kind + "'"};
  }
  entry.kind = *parsed;
  entry.message_id = row.text(4);
  entry.message_type = row.text(5);
  entry.from_state = row.text(6);
  entry.to_state = row.text(7);
  entry.detail = row.text(8);
  return entry;
}

StoreResult<DeadLetter> read_dead_letter(const Use& row) {
  DeadLetter letter;
  letter.id = row.integer(0);
  letter.at = row.time(1);
  letter.reason_code = row.text(2);
  letter.reason = row.text(3);
  letter.message_id = row.text(4);
  letter.message_type = row.text(5);
  letter.saga_id = row.text(6);
  letter.raw = row.blob(7);
  letter.raw_size = static_cast<std::size_t>(row.integer(8));
  letter.replayed_at = row.optional_time(9);
  letter.discarded_at = row.optional_time(10);
  letter.attempts = static_cast<int>(row.integer(11));
  return letter;
}

StoreResult<StoredOperatorRequest> read_operator_request(const Use& row) {
  StoredOperatorRequest request;
  request.id = row.integer(0);
  request.requested_at = row.time(1);
  request.action = row.text(2);
  request.target = row.text(3);
  request.status = row.text(4);
  request.note = row.text(5);
  request.requested_by = row.text(6);
  return request;
}

template <class T, class ReadRow>
StoreResult<std::vector<T>> read_all(sqlite3* db, Use& use, std::string_view what,
                                     ReadRow read_row) {
  std::vector<T> rows;
  for (;;) {
    const int rc = use.step();
    if (rc == SQLITE_DONE) return rows;
    if (rc != SQLITE_ROW) return sqlite_error(db, rc, what);
    StoreResult<T> row = read_row(use);
    if (!row) return row.error();
    rows.push_back(std::move(row).value());
  }
}

}  // namespace

// WAL checkpoints on a thread of their own, so they do not run inside the engine's commits.
// The writer's WAL hook (called after every commit with the WAL's size in pages) wakes the
// thread each time the WAL has grown by kThresholdBytes since the last wake (or since it was
// rewound); the thread runs a PASSIVE checkpoint on its own connection, which never blocks the
// writer. Waking it after every commit past the threshold instead made small commits pay for a
// pass (and its fsync of the database file) each. A failed checkpoint is retried at the next
// wake. Only a WAL of kWriterCheckpointBytes makes the writer wait (see there).
class Checkpointer {
 public:
  // SQLite's own auto-checkpoint default (1,000 pages) at its default page size.
  static constexpr std::int64_t kThresholdBytes = 1000 * 4096;
  // Under steady load the writer appends while the thread copies, so a background pass never
  // ends with the whole WAL copied and SQLite never rewinds the WAL: it would grow without bound.
  // Past this size the writer waits for the thread's pass to end and finishes the copy itself,
  // between two of its transactions; its next transaction then rewinds the WAL.
  static constexpr std::int64_t kWriterCheckpointBytes = 8 * kThresholdBytes;

  // `page_size`: the database's, in bytes (the WAL hook counts pages).
  Checkpointer(Connection connection, std::int64_t page_size)
      : threshold_pages_(static_cast<int>(kThresholdBytes / page_size)),
        writer_checkpoint_pages_(static_cast<int>(kWriterCheckpointBytes / page_size)),
        db_(std::move(connection)),
        thread_([this] { run(); }) {}
  ~Checkpointer() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  std::uint64_t passes() const noexcept { return passes_.load(std::memory_order_relaxed); }

  static int on_commit(void* self, sqlite3* writer, const char* schema, int pages) {
    auto& checkpointer = *static_cast<Checkpointer*>(self);
    int& requested_at = checkpointer.requested_at_pages_;
    if (pages < requested_at) requested_at = 0;  // the WAL was rewound
    if (pages >= checkpointer.writer_checkpoint_pages_) {
      checkpointer.checkpoint_in_writer(writer, schema);
    } else if (pages - requested_at >= checkpointer.threshold_pages_) {
      requested_at = pages;
      checkpointer.request();
    }
    return SQLITE_OK;
  }

 private:
  void request() {
    {
      std::lock_guard lock(mutex_);
      requested_ = true;
    }
    wake_.notify_all();
  }
  // Holding the mutex keeps the thread from starting a pass: two checkpoints never overlap (the
  // second would only get SQLITE_BUSY).
  void checkpoint_in_writer(sqlite3* writer, const char* schema) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return !in_pass_ || stopping_; });
    sqlite3_wal_checkpoint_v2(writer, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    requested_ = false;
  }
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return requested_ || stopping_; });
      if (stopping_) return;
      requested_ = false;
      in_pass_ = true;
      lock.unlock();
      sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      passes_.fetch_add(1, std::memory_order_relaxed);
      lock.lock();
      in_pass_ = false;
      wake_.notify_all();
    }
  }

  const int threshold_pages_;  // kThresholdBytes in pages
  const int writer_checkpoint_pages_;
  Connection db_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool in_pass_ = false;
  bool stopping_ = false;
  int requested_at_pages_ = 0;  // the WAL's size at the last wake; the writer's thread only
  std::atomic<std::uint64_t> passes_{0};
  std::thread thread_;
};

struct SqliteStore::Impl {
  // Destroyed bottom-up: statements, the syncer (a last sync), the checkpointer, the connection,
  // then the lock.
  LockFile lock;
  Connection db;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<sqlite_detail::WalSyncer> syncer;

  ~Impl() {
    end_reads();
    if (checkpointer) sqlite3_wal_hook(db.get(), nullptr, nullptr);
  }
  std::string path;

  Statement begin, commit, rollback, begin_read;
  bool reads_shared = false;  // between begin_reads() and end_reads()
  bool read_open = false;     // the shared read transaction has begun

  // Called first by every read: inside a read scope, the first read begins the transaction the
  // others join (BEGIN DEFERRED: the read lock is taken by the read itself). If it cannot begin,
  // each read stands alone.
  void join_reads() noexcept {
    if (!reads_shared || read_open) return;
    Use use(begin_read.get());
    read_open = use.step() == SQLITE_DONE;
  }
  void end_reads() noexcept {
    reads_shared = false;
    if (!read_open) return;
    read_open = false;
    if (sqlite3_get_autocommit(db.get()) != 0) return;  // an error already ended it
    Use use(commit.get());
    if (use.step() != SQLITE_DONE) {
      Use undo(rollback.get());
      undo.step();
    }
  }
  Statement insert_saga, update_saga, update_saga_same_status, insert_dead_letter, mark_dispatched,
      mark_replayed, reopen_outbox, mark_discarded, answer_operator_request, upsert_definition;
  Statement select_saga, select_inbox, select_pending_outbox, select_pending_outbox_for,
      select_outbox_backlog, select_journal, select_dead_letters, select_outbox,
      select_sagas_by_status, select_awaiting_reply, select_retries_after_failure,
      select_dead_letter, select_outbox_message, select_operator_requests, count_sagas,
      count_open_dead_letters;

  Transaction transaction() noexcept {
    return Transaction(db.get(), begin.get(), commit.get(), rollback.get());
  }

  Error configure(const StoreOptions& options, bool is_file);
  Error migrate();
  Error prepare_statements();

  Error write_saga(const SagaWrite& write);
  RowStatements insert_journal, insert_outbox, insert_inbox, mark_replied;  // see write_rows
  RowWriting row_writing;
  StoreStatus commit_batch(const WriteBatch& batch);
  Error write_journal(std::span<const JournalEntry> entries);
  Error write_outbox(std::span<const OutboxMessage> messages);
  Error write_inbox(std::span<const std::string> message_ids, Timestamp at);
  Error write_dead_letter(const DeadLetter& letter);
  Error write_dispatched(const DispatchMark& mark, Timestamp at);
  Error write_replied(std::span<const std::string> message_ids, Timestamp at);
};

Error SqliteStore::Impl::configure(const StoreOptions& options, bool is_file) {
  sqlite3* handle = db.get();
  sqlite3_extended_result_codes(handle, 1);
  const auto timeout = std::clamp<std::chrono::milliseconds::rep>(options.busy_timeout.count(), 0,
                                                                  std::numeric_limits<int>::max());
  sqlite3_busy_timeout(handle, static_cast<int>(timeout));

  // Takes effect only while the database is still empty (before the WAL switch below writes its
  // first page); an existing database keeps the page size it was created with.
  const std::string page_size = "PRAGMA page_size = " + std::to_string(options.page_size);
  if (int rc = sqlite3_exec(handle, page_size.c_str(), nullptr, nullptr, nullptr); rc != SQLITE_OK)
    return sqlite_error(handle, rc, "setting PRAGMA page_size");
  if (is_file) {
    StoreResult<std::string> mode = query_text(handle, "PRAGMA journal_mode = WAL");
    if (!mode) return mode.error();
    if (mode.value() != "wal") {
      std::string message = "database " + path + ": cannot switch to WAL journal mode";
      message += " (still '" + mode.value() + "')";
      return StoreError{StoreErrorCode::io_error, std::move(message)};
    }
  }
  // With the sync thread, COMMIT only writes the WAL; the thread makes it durable.
  const Durability in_commit =
      syncs_in_background(options, is_file) ? Durability::normal : options.durability;
  StoreResult<std::string> sync = query_text(handle, synchronous_pragma(in_commit));
  if (!sync) return sync.error();
  // A page cache of up to kCacheKib KiB (SQLite's default is 2,000 KiB): the index pages the
  // sagas in flight live on stay in memory instead of being read back from the WAL.
  const std::string cache_size = "PRAGMA cache_size = -" + std::to_string(kCacheKib);
  if (int rc = sqlite3_exec(handle, cache_size.c_str(), nullptr, nullptr, nullptr); rc != SQLITE_OK)
    return sqlite_error(handle, rc, "setting PRAGMA cache_size");
  return std::nullopt;
}

Error SqliteStore::Impl::migrate() {
  sqlite3* handle = db.get();
  StoreResult<int> initial = user_version(handle);
  if (!initial) return initial.error();
  if (initial.value() > latest_schema_version()) return newer_schema(initial.value());

  for (const sqlite_detail::Migration& migration : sqlite_detail::migrations()) {
    if (migration.version <= initial.value()) continue;
    Transaction tx = transaction();
    if (Error error = tx.begin()) return error;
    // Another process may have migrated between our first look and BEGIN IMMEDIATE.
    StoreResult<int> current = user_version(handle);
    if (!current) return current.error();
    if (current.value() > latest_schema_version()) return newer_schema(current.value());
    if (current.value() >= migration.version) continue;

    const std::string what =
        "database " + path + ": applying migration " + std::string(migration.name);
    const std::string sql(migration.sql);
    const std::string set_version(migration.set_version);
    for (const std::string* script : {&sql, &set_version}) {
      char* message = nullptr;
      const int rc = sqlite3_exec(handle, script->c_str(), nullptr, nullptr, &message);
      if (rc != SQLITE_OK) {
        StoreError error{code_for(rc), what + ": " + (message != nullptr ? message : "")};
        sqlite3_free(message);
        if ((rc & 0xff) == SQLITE_ERROR) error.code = StoreErrorCode::corrupt;
        return error;
      }
    }
    if (Error error = tx.commit()) return error;
  }

  StoreResult<int> final_version = user_version(handle);
  if (!final_version) return final_version.error();
  if (final_version.value() != latest_schema_version()) {
    return StoreError{StoreErrorCode::corrupt, "database " + path + ": schema version is " +
                                                   std::to_string(final_version.value()) +
                                                   " after migrating, expected " +
                                                   std::to_string(latest_schema_version())};
  }
  return std::nullopt;
}

Error SqliteStore::Impl::prepare_statements() {
  sqlite3* handle = db.get();
  const std::string select_sagas = std::string("SELECT ") + kSagaColumns + " FROM sagas ";
  // The columns read_outbox reads, the payload's given by `payload` (a column or a literal).
  auto select_outbox_columns = [](const char* payload) {
    return std::string("SELECT message_id, saga_id, destination, message_type, ") + payload +
           ", attempts, dispatched, created_at, dispatched_at, replied_at, compensation, "
           "not_before, retry_failures, rowid FROM outbox ";
  };
  const std::string select_outbox_rows = select_outbox_columns("payload");
  const std::string select_saga_sql = select_sagas + "WHERE id = ?1";
  const std::string select_by_status_sql =
      select_sagas + "WHERE status = ?1 ORDER BY created_at, rowid LIMIT ?2";
  const std::string select_pending_sql =
      select_outbox_rows +
      "WHERE replied_at IS NULL AND dispatched = 0 ORDER BY created_at, rowid LIMIT ?1";
  const std::string select_outbox_message_sql = select_outbox_rows + "WHERE message_id = ?1";
  const std::string select_outbox_sql =
      select_outbox_rows + "WHERE saga_id = ?1 ORDER BY created_at, rowid";
  const std::string select_pending_for_sql =
      select_outbox_rows +
      "WHERE destination = ?1 AND replied_at IS NULL AND rowid > ?2 AND dispatched = 0 "
      "ORDER BY rowid LIMIT ?3";
  // Through the open-commands index (outbox_open), and without payloads: only a start reads
  // them, and every open command's may be waiting.
  const std::string select_waiting_retries_sql =
      select_outbox_columns("''") +
      "WHERE replied_at IS NULL AND not_before IS NOT NULL ORDER BY created_at, rowid";
  const std::string select_awaiting_sql =
      select_outbox_rows +
      "WHERE replied_at IS NULL AND dispatched = 1 ORDER BY dispatched_at, rowid LIMIT ?1";

  const std::pair<Statement*, const char*> statements[] = {
      {&insert_saga,
       "INSERT INTO sagas (id, type, definition_version, state, status, data, row_version, "
       "created_at, updated_at, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
      {&update_saga,
       "UPDATE sagas SET type = ?2, definition_version = ?3, state = ?4, status = ?5, data = ?6, "
       "row_version = ?7 + 1, updated_at = ?8 WHERE id = ?1 AND row_version = ?7"},
      // The common update (state and data move, status and type stay) leaves the status indexes
      // (sagas_by_status, sagas_by_type_status) untouched: SQLite maintains an index only when
      // its columns are in the SET list.
      {&update_saga_same_status,
       "UPDATE sagas SET definition_version = ?3, state = ?4, data = ?6, row_version = ?7 + 1, "
       "updated_at = ?8 WHERE id = ?1 AND row_version = ?7 AND type = ?2 AND status = ?5"},
      {&insert_dead_letter,
       "INSERT INTO dead_letters (at, reason_code, reason, message_id, message_type, saga_id, "
       "raw, raw_size, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
      {&mark_dispatched,
       "UPDATE outbox SET dispatched = 1, attempts = ?3, dispatched_at = ?2 WHERE message_id = ?1"},
      {&select_awaiting_reply, select_awaiting_sql.c_str()},
      {&select_retries_after_failure, select_waiting_retries_sql.c_str()},
      {&select_saga, select_saga_sql.c_str()},
      {&select_inbox, "SELECT 1 FROM inbox WHERE message_id = ?1"},
      {&select_pending_outbox, select_pending_sql.c_str()},
      {&select_pending_outbox_for, select_pending_for_sql.c_str()},
      {&select_outbox_backlog,
       "SELECT destination, count(*), min(rowid), max(rowid) FROM outbox "
       "WHERE replied_at IS NULL AND dispatched = 0 GROUP BY destination ORDER BY destination"},
      {&select_journal,
       "SELECT sequence, saga_id, at, kind, message_id, message_type, from_state, to_state, "
       "detail FROM journal WHERE saga_id = ?1 ORDER BY sequence"},
      {&select_dead_letters,
       "SELECT id, at, reason_code, reason, message_id, message_type, saga_id, raw, raw_size, "
       "replayed_at, discarded_at, attempts FROM dead_letters ORDER BY id LIMIT ?1"},
      {&select_dead_letter,
       "SELECT id, at, reason_code, reason, message_id, message_type, saga_id, raw, raw_size, "
       "replayed_at, discarded_at, attempts FROM dead_letters WHERE id = ?1"},
      {&mark_replayed,
       "UPDATE dead_letters SET replayed_at = ?2 "
       "WHERE id = ?1 AND replayed_at IS NULL AND discarded_at IS NULL"},
      {&mark_discarded,
       "UPDATE dead_letters SET discarded_at = ?2 "
       "WHERE id = ?1 AND replayed_at IS NULL AND discarded_at IS NULL"},
      {&upsert_definition,
       "INSERT INTO saga_definitions (type, version, graph, registered_at) VALUES (?1, ?2, ?3, ?4) "
       "ON CONFLICT (type, version) DO UPDATE SET graph = excluded.graph, registered_at = "
       "excluded.registered_at WHERE graph <> excluded.graph"},
      {&answer_operator_request,
       "UPDATE operator_requests SET done_at = ?2, ok = ?3, result = ?4 "
       "WHERE id = ?1 AND done_at IS NULL"},
      {&select_operator_requests,
       "SELECT id, requested_at, action, target, status, note, requested_by FROM "
       "operator_requests WHERE done_at IS NULL ORDER BY id LIMIT ?1"},
      {&select_outbox_message, select_outbox_message_sql.c_str()},
      {&reopen_outbox,
       "UPDATE outbox SET replied_at = NULL, attempts = 0, dispatched = 0, "
       "dispatched_at = NULL, not_before = NULL, retry_failures = 0 WHERE message_id = ?1"},
      {&select_outbox, select_outbox_sql.c_str()},
      {&select_sagas_by_status, select_by_status_sql.c_str()},
      {&count_sagas,
       "SELECT type, status, COUNT(*) FROM sagas WHERE status IN ('Running', 'Compensating', "
       "'Completed', 'Compensated', 'Failed') GROUP BY type, status ORDER BY type, status"},
      {&count_open_dead_letters,
       "SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL AND discarded_at IS NULL"},
  };
  for (const auto& [statement, sql] : statements) {
    if (Error error = prepare(handle, sql, *statement)) return error;
  }
  const struct {
    RowStatements* statements;
    const char *verb, *head, *row, *tail;
    int first_row_parameter;
  } row_statements[] = {
      {&insert_journal, "INSERT",
       "INTO journal (saga_id, at, kind, message_id, message_type, from_state, to_state, "
       "detail) VALUES ",
       "(?, ?, ?, ?, ?, ?, ?, ?)", "", 1},
      {&insert_outbox, "INSERT",
       "INTO outbox (message_id, saga_id, destination, message_type, payload, attempts, "
       "dispatched, created_at, compensation, not_before, retry_failures) VALUES ",
       "(?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)", "", 1},
      {&insert_inbox, "INSERT", "INTO inbox (message_id, processed_at) VALUES ", "(?, ?)", "", 1},
      {&mark_replied, "UPDATE",
       "outbox SET replied_at = ?1 WHERE replied_at IS NULL AND message_id IN (", "?", ")", 2},
  };
  for (const auto& [out, verb, head, row, tail, first] : row_statements) {
    if (Error error = prepare_rows(handle, verb, head, row, tail, first, *out)) return error;
  }
  return std::nullopt;
}

Error SqliteStore::Impl::write_saga(const SagaWrite& write) {
  const SagaRecord& r = write.record;
  if (!write.expected_row_version) {
    Use use(insert_saga.get());
    use.text(1, r.id)
        .text(2, r.type)
        .integer(3, r.definition_version)
        .text(4, r.state)
        .text(5, to_string(r.status))
        .text(6, r.data)
        .integer(7, r.row_version)
        .time(8, r.created_at)
        .time(9, r.updated_at)
        .text(10, r.correlation_id.empty() ? r.id : r.correlation_id);
    const int rc = use.step();
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return StoreError{StoreErrorCode::conflict, "saga " + r.id + " already exists"};
    }
    return sqlite_error(db.get(), rc, "inserting saga " + r.id);
  }

  // First as an update that keeps the stored status and type; if no row matched (the status or
  // type changes, or the row version is stale, or the saga is missing), as the full update,
  // which then tells a conflict apart. A status change the writer announced goes straight to it.
  const std::int64_t expected = *write.expected_row_version;
  const std::string_view status = to_string(r.status);
  const bool status_changes = write.stored_status && *write.stored_status != r.status;
  for (sqlite3_stmt* statement : {update_saga_same_status.get(), update_saga.get()}) {
    if (status_changes && statement == update_saga_same_status.get()) continue;
    Use use(statement);
    use.text(1, r.id)
        .text(2, r.type)
        .integer(3, r.definition_version)
        .text(4, r.state)
        .text(5, status)
        .text(6, r.data)
        .integer(7, expected)
        .time(8, r.updated_at);
    const int rc = use.step();
    if (rc != SQLITE_DONE) return sqlite_error(db.get(), rc, "updating saga " + r.id);
    if (sqlite3_changes(db.get()) != 0) return std::nullopt;
  }
  return StoreError{StoreErrorCode::conflict, "saga " + r.id + " does not have row_version " +
                                                  std::to_string(expected) +
                                                  " (changed by another writer, or missing)"};
}

namespace {
void no_shared_parameters(Use&) noexcept {}
}  // namespace

Error SqliteStore::Impl::write_journal(std::span<const JournalEntry> entries) {
  return write_rows(
      row_writing, insert_journal, entries, 0, 8, no_shared_parameters,
      [](Use& use, int offset, const JournalEntry& e) {
        use.text(offset + 1, e.saga_id)
            .time(offset + 2, e.at)
            .text(offset + 3, to_string(e.kind))
            .text(offset + 4, e.message_id)
            .text(offset + 5, e.message_type)
            .text(offset + 6, e.from_state)
            .text(offset + 7, e.to_state)
            .text(offset + 8, e.detail);
      },
      [&](int rc, const JournalEntry& e) {
        return sqlite_error(db.get(), rc, "appending to the journal of saga " + e.saga_id);
      });
}

Error SqliteStore::Impl::write_outbox(std::span<const OutboxMessage> messages) {
  return write_rows(
      row_writing, insert_outbox, messages, 0, 10, no_shared_parameters,
      [](Use& use, int offset, const OutboxMessage& m) {
        use.text(offset + 1, m.message_id)
            .text(offset + 2, m.saga_id)
            .text(offset + 3, m.destination)
            .text(offset + 4, m.message_type)
            .text(offset + 5, m.payload)
            .integer(offset + 6, m.attempts)
            .time(offset + 7, m.created_at)
            .integer(offset + 8, m.compensation ? 1 : 0)
            .optional_time(offset + 9, m.not_before)
            .integer(offset + 10, m.retry_failures);
      },
      [&](int rc, const OutboxMessage& m) {
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
          return StoreError{StoreErrorCode::conflict,
                            "outbox already contains message " + m.message_id};
        return sqlite_error(db.get(), rc, "inserting outbox message " + m.message_id);
      });
}

Error SqliteStore::Impl::write_inbox(std::span<const std::string> message_ids, Timestamp at) {
  return write_rows(
      row_writing, insert_inbox, message_ids, 0, 2, no_shared_parameters,
      [at](Use& use, int offset, const std::string& message_id) {
        use.text(offset + 1, message_id).time(offset + 2, at);
      },
      [&](int rc, const std::string& message_id) {
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
          return StoreError{
              StoreErrorCode::conflict,
              "inbox already contains message " + message_id + " (a duplicate was not filtered)"};
        return sqlite_error(db.get(), rc, "recording inbox message " + message_id);
      });
}

Error SqliteStore::Impl::write_dead_letter(const DeadLetter& d) {
  Use use(insert_dead_letter.get());
  use.time(1, d.at)
      .text(2, d.reason_code)
      .text(3, d.reason)
      .text(4, d.message_id)
      .text(5, d.message_type)
      .text(6, d.saga_id)
      .blob(7, d.raw)
      .integer(8, static_cast<std::int64_t>(d.raw_size))
      .integer(9, d.attempts);
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::nullopt;
  return sqlite_error(db.get(), rc, "inserting a dead letter (" + d.reason_code + ")");
}

// An id that is not in the outbox is ignored: there is nothing to mark.
Error SqliteStore::Impl::write_dispatched(const DispatchMark& mark, Timestamp at) {
  Use use(mark_dispatched.get());
  use.text(1, mark.message_id).time(2, at).integer(3, mark.attempts);
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::nullopt;
  return sqlite_error(db.get(), rc, "marking outbox message " + mark.message_id + " dispatched");
}

// A reply to a command that is not (or no longer) awaiting one changes nothing.
Error SqliteStore::Impl::write_replied(std::span<const std::string> message_ids, Timestamp at) {
  return write_rows(
      row_writing, mark_replied, message_ids, 1, 1, [at](Use& use) { use.time(1, at); },
      [](Use& use, int offset, const std::string& message_id) { use.text(offset + 1, message_id); },
      [&](int rc, const std::string& message_id) {
        return sqlite_error(db.get(), rc, "marking outbox message " + message_id + " replied");
      });
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() = default;

int SqliteStore::latest_schema_version() noexcept {
  const auto all = sqlite_detail::migrations();
  return all.empty() ? 0 : all.back().version;
}

StoreResult<std::unique_ptr<SqliteStore>> SqliteStore::open(const StoreOptions& options) {
  if (options.page_size < 512 || options.page_size > 65536 ||
      !std::has_single_bit(options.page_size))
    throw std::invalid_argument(
        "StoreOptions::page_size must be a power of two from 512 to 65536, not " +
        std::to_string(options.page_size));
  auto impl = std::make_unique<Impl>();
  impl->path = options.path;
  const bool is_file = options.path != ":memory:" && !options.path.empty();

  sqlite3* handle = nullptr;
  const int rc =
      sqlite3_open_v2(options.path.c_str(), &handle,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  impl->db.reset(handle);
  if (rc != SQLITE_OK) {
    return sqlite_error(handle, rc, "cannot open database " + options.path);
  }
  // Before any statement reads or writes: the lock, on the file SQLite opened (its name, symlinks
  // resolved, is what a second engine through another path resolves to as well).
  if (options.exclusive_writer && is_file) {
    if (Error error = impl->lock.acquire(options.path, sqlite3_db_filename(handle, "main")))
      return *error;
  }

  if (Error error = impl->configure(options, is_file)) return *error;
  if (is_file && options.durability == Durability::full)
    if (Error error = sqlite_detail::sync_wal_file(sqlite_detail::wal_path_of(handle)))
      return *error;
  if (syncs_in_background(options, is_file))
    impl->syncer = std::make_unique<sqlite_detail::WalSyncer>(sqlite_detail::wal_path_of(handle));
  // The database's own page size (an existing database keeps the one it was created with).
  StoreResult<std::string> page_size_text = query_text(handle, "PRAGMA page_size");
  if (!page_size_text) return page_size_text.error();
  const std::int64_t page_size = std::stoll(page_size_text.value());
  if (is_file && options.background_checkpoint) {
    sqlite3* second = nullptr;
    const int opened = sqlite3_open_v2(options.path.c_str(), &second,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    Connection connection(second);
    if (opened != SQLITE_OK)
      return sqlite_error(second, opened,
                          "cannot open database " + options.path + " to checkpoint");
    sqlite3_busy_timeout(second, 100);
    // A connection opens the file lazily; until it has read the schema it does not know the
    // database is in WAL mode, and a checkpoint through it does nothing.
    if (int rc =
            sqlite3_exec(second, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
        rc != SQLITE_OK)
      return sqlite_error(second, rc, "cannot read database " + options.path + " to checkpoint");
    impl->checkpointer = std::make_unique<Checkpointer>(std::move(connection), page_size);
    sqlite3_wal_hook(handle, &Checkpointer::on_commit, impl->checkpointer.get());
  } else if (is_file) {
    // SQLite's own checkpoints, at the same size in bytes as the thread's.
    sqlite3_wal_autocheckpoint(handle, static_cast<int>(Checkpointer::kThresholdBytes / page_size));
  }
  for (const auto& [statement, sql] :
       {std::pair{&impl->begin, "BEGIN IMMEDIATE"}, std::pair{&impl->commit, "COMMIT"},
        std::pair{&impl->rollback, "ROLLBACK"}, std::pair{&impl->begin_read, "BEGIN DEFERRED"}}) {
    if (Error error = prepare(handle, sql, *statement)) return *error;
  }
  if (Error error = impl->migrate()) return *error;
  if (Error error = impl->prepare_statements()) return *error;
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

void SqliteStore::begin_reads() noexcept {
  impl_->end_reads();
  impl_->reads_shared = true;
}

void SqliteStore::end_reads() noexcept {
  impl_->end_reads();
}

StoreStatus SqliteStore::commit(const WriteBatch& batch) {
  impl_->end_reads();
  if (batch.empty()) return StoreStatus::success();
  Impl& s = *impl_;
  if (s.syncer)
    if (std::optional<StoreError> failed = s.syncer->failure()) return {std::move(failed)};
  s.row_writing = RowWriting{};
  StoreStatus status = s.commit_batch(batch);
  if (!status && s.row_writing.grouped_statement_broke_constraint) {
    // Rolled back whole (OR ROLLBACK, see kRowsPerStatement): again, one row per statement, so
    // the error names the row (or, should the constraint not break again, the batch commits).
    s.row_writing = RowWriting{.grouped = false};
    status = s.commit_batch(batch);
    s.row_writing = RowWriting{};
  }
  return status;
}

StoreStatus SqliteStore::Impl::commit_batch(const WriteBatch& batch) {
  Transaction tx = transaction();
  if (Error error = tx.begin()) return {std::move(error)};
  for (const SagaWrite& write : batch.sagas) {
    if (Error error = write_saga(write)) return {std::move(error)};
  }
  if (Error error = write_journal(batch.journal)) return {std::move(error)};
  if (Error error = write_outbox(batch.outbox)) return {std::move(error)};
  if (Error error = write_inbox(batch.inbox, batch.at)) return {std::move(error)};
  for (const DeadLetter& letter : batch.dead_letters) {
    if (Error error = write_dead_letter(letter)) return {std::move(error)};
  }
  for (const DispatchMark& mark : batch.dispatched) {
    if (Error error = write_dispatched(mark, batch.at)) return {std::move(error)};
  }
  // Reopened before replied: a command both reopened and answered in one batch ends closed.
  for (const std::string& message_id : batch.reopened) {
    Use use(reopen_outbox.get());
    use.text(1, message_id);
    if (int rc = use.step(); rc != SQLITE_DONE)
      return {sqlite_error(db.get(), rc, "reopening outbox message " + message_id)};
  }
  if (Error error = write_replied(batch.replied, batch.at)) return {std::move(error)};
  // Replaying or discarding closes an open dead letter, once: a closed one is a conflict.
  auto close_dead_letters = [&](sqlite3_stmt* mark, const std::vector<std::int64_t>& ids,
                                std::string_view what) -> Error {
    for (std::int64_t id : ids) {
      Use use(mark);
      use.integer(1, id).time(2, batch.at);
      if (int rc = use.step(); rc != SQLITE_DONE)
        return sqlite_error(db.get(), rc, std::string(what) + " dead letter " + std::to_string(id));
      if (sqlite3_changes(db.get()) != 1)
        return StoreError{StoreErrorCode::conflict, "dead letter " + std::to_string(id) +
                                                        " was already replayed or discarded"};
    }
    return std::nullopt;
  };
  if (Error error = close_dead_letters(mark_replayed.get(), batch.replayed, "replaying"))
    return {std::move(error)};
  if (Error error = close_dead_letters(mark_discarded.get(), batch.discarded, "discarding"))
    return {std::move(error)};
  for (const SagaDefinitionRecord& definition : batch.definitions) {
    Use use(upsert_definition.get());
    use.text(1, definition.type)
        .integer(2, definition.version)
        .text(3, definition.graph)
        .time(4, batch.at);
    if (int rc = use.step(); rc != SQLITE_DONE)
      return {sqlite_error(db.get(), rc, "recording saga definition " + definition.type)};
  }
  for (const OperatorAnswer& answer : batch.answers) {
    Use use(answer_operator_request.get());
    use.integer(1, answer.request_id)
        .time(2, batch.at)
        .integer(3, answer.ok ? 1 : 0)
        .text(4, answer.result);
    if (int rc = use.step(); rc != SQLITE_DONE)
      return {sqlite_error(db.get(), rc,
                           "answering operator request " + std::to_string(answer.request_id))};
  }
  if (Error error = tx.commit()) return {std::move(error)};
  if (syncer) syncer->committed();
  return StoreStatus::success();
}

std::uint64_t SqliteStore::last_commit() const noexcept {
  return impl_->syncer ? impl_->syncer->last() : Store::last_commit();
}

std::uint64_t SqliteStore::durable_through() const noexcept {
  return impl_->syncer ? impl_->syncer->durable() : Store::durable_through();
}

StoreStatus SqliteStore::sync() {
  return impl_->syncer ? impl_->syncer->sync() : StoreStatus::success();
}

void SqliteStore::begin_sync() {
  if (impl_->syncer) impl_->syncer->begin();
}

std::uint64_t SqliteStore::background_syncs() const noexcept {
  return impl_->syncer ? impl_->syncer->syncs() : 0;
}

StoreResult<std::optional<SagaRecord>> SqliteStore::load_saga(const std::string& saga_id) {
  impl_->join_reads();
  Use use(impl_->select_saga.get());
  use.text(1, saga_id);
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::optional<SagaRecord>();
  if (rc != SQLITE_ROW) return sqlite_error(impl_->db.get(), rc, "loading saga " + saga_id);
  StoreResult<SagaRecord> record = read_saga(use);
  if (!record) return record.error();
  return std::optional<SagaRecord>(std::move(record).value());
}

StoreResult<bool> SqliteStore::inbox_contains(const std::string& message_id) {
  impl_->join_reads();
  Use use(impl_->select_inbox.get());
  use.text(1, message_id);
  const int rc = use.step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_error(impl_->db.get(), rc, "looking up inbox message " + message_id);
}

StoreResult<std::vector<OutboxMessage>> SqliteStore::pending_outbox(std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_pending_outbox.get());
  use.integer(1, to_limit(limit));
  return read_all<OutboxMessage>(impl_->db.get(), use, "reading the pending outbox", read_outbox);
}

StoreResult<std::vector<OutboxMessage>> SqliteStore::pending_outbox_for(
    const std::string& destination, std::int64_t after_sequence, std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_pending_outbox_for.get());
  use.text(1, destination).integer(2, after_sequence).integer(3, to_limit(limit));
  return read_all<OutboxMessage>(impl_->db.get(), use,
                                 "reading the pending outbox of " + destination, read_outbox);
}

StoreResult<std::vector<OutboxBacklog>> SqliteStore::outbox_backlog() {
  impl_->join_reads();
  Use use(impl_->select_outbox_backlog.get());
  return read_all<OutboxBacklog>(
      impl_->db.get(), use, "counting the pending outbox",
      [](const Use& row) -> StoreResult<OutboxBacklog> {
        return OutboxBacklog{row.text(0), row.integer(1), row.integer(2), row.integer(3)};
      });
}

StoreResult<std::vector<OutboxMessage>> SqliteStore::awaiting_reply(std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_awaiting_reply.get());
  use.integer(1, to_limit(limit));
  return read_all<OutboxMessage>(impl_->db.get(), use, "reading commands awaiting replies",
                                 read_outbox);
}

StoreResult<std::vector<OutboxMessage>> SqliteStore::retries_after_failure() {
  impl_->join_reads();
  Use use(impl_->select_retries_after_failure.get());
  return read_all<OutboxMessage>(impl_->db.get(), use, "reading retries after failure replies",
                                 read_outbox);
}

StoreResult<std::optional<OutboxMessage>> SqliteStore::outbox_message(
    const std::string& message_id) {
  impl_->join_reads();
  Use use(impl_->select_outbox_message.get());
  use.text(1, message_id);
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::optional<OutboxMessage>();
  if (rc != SQLITE_ROW)
    return sqlite_error(impl_->db.get(), rc, "loading outbox message " + message_id);
  StoreResult<OutboxMessage> row = read_outbox(use);
  if (!row) return row.error();
  return std::optional<OutboxMessage>(std::move(row).value());
}

StoreResult<std::vector<StoredOperatorRequest>> SqliteStore::pending_operator_requests(
    std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_operator_requests.get());
  use.integer(1, to_limit(limit));
  return read_all<StoredOperatorRequest>(impl_->db.get(), use, "reading operator requests",
                                         read_operator_request);
}

StoreResult<std::vector<JournalEntry>> SqliteStore::journal(const std::string& saga_id) {
  impl_->join_reads();
  Use use(impl_->select_journal.get());
  use.text(1, saga_id);
  return read_all<JournalEntry>(impl_->db.get(), use, "reading the journal of saga " + saga_id,
                                read_journal);
}

StoreResult<std::vector<DeadLetter>> SqliteStore::dead_letters(std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_dead_letters.get());
  use.integer(1, to_limit(limit));
  return read_all<DeadLetter>(impl_->db.get(), use, "reading dead letters", read_dead_letter);
}

StoreResult<std::optional<DeadLetter>> SqliteStore::dead_letter(std::int64_t id) {
  impl_->join_reads();
  Use use(impl_->select_dead_letter.get());
  use.integer(1, id);
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::optional<DeadLetter>();
  if (rc != SQLITE_ROW)
    return sqlite_error(impl_->db.get(), rc, "loading dead letter " + std::to_string(id));
  StoreResult<DeadLetter> letter = read_dead_letter(use);
  if (!letter) return letter.error();
  return std::optional<DeadLetter>(std::move(letter).value());
}

StoreResult<std::vector<OutboxMessage>> SqliteStore::outbox(const std::string& saga_id) {
  impl_->join_reads();
  Use use(impl_->select_outbox.get());
  use.text(1, saga_id);
  return read_all<OutboxMessage>(impl_->db.get(), use, "reading the outbox of saga " + saga_id,
                                 read_outbox);
}

StoreResult<std::vector<SagaRecord>> SqliteStore::sagas_with_status(SagaStatus status,
                                                                    std::size_t limit) {
  impl_->join_reads();
  Use use(impl_->select_sagas_by_status.get());
  use.text(1, to_string(status)).integer(2, to_limit(limit));
  return read_all<SagaRecord>(impl_->db.get(), use,
                              "reading sagas with status " + std::string(to_string(status)),
                              read_saga);
}

StoreResult<std::vector<SagaCount>> SqliteStore::count_sagas() {
  impl_->join_reads();
  Use use(impl_->count_sagas.get());
  return read_all<SagaCount>(
      impl_->db.get(), use, "counting sagas", [](const Use& row) -> StoreResult<SagaCount> {
        std::string status = row.text(1);
        auto parsed = saga_status_from_string(status);
        if (!parsed)
          return StoreError{StoreErrorCode::corrupt, "unknown saga status '" + status + "'"};
        return SagaCount{row.text(0), *parsed, row.integer(2)};
      });
}

StoreResult<std::int64_t> SqliteStore::count_open_dead_letters() {
  impl_->join_reads();
  Use use(impl_->count_open_dead_letters.get());
  const int rc = use.step();
  if (rc != SQLITE_ROW) return sqlite_error(impl_->db.get(), rc, "counting dead letters");
  return use.integer(0);
}

std::uint64_t SqliteStore::background_checkpoints() const noexcept {
  return impl_->checkpointer ? impl_->checkpointer->passes() : 0;
}

StoreResult<bool> SqliteStore::integrity_ok() {
  impl_->join_reads();
  sqlite3* handle = impl_->db.get();
  Statement stmt;
  if (Error error = prepare(handle, "PRAGMA integrity_check", stmt)) return *error;
  Use use(stmt.get());
  bool ok = true;
  int rows = 0;
  for (;;) {
    const int rc = use.step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return sqlite_error(handle, rc, "PRAGMA integrity_check");
    ++rows;
    if (use.text(0) != "ok") ok = false;
  }
  return ok && rows == 1;
}

}  // namespace saga
