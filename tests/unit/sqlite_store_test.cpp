// Tests of saga::SqliteStore: migrations, PRAGMAs, the atomic group commit, the read side, the
// exclusive writer lock and error mapping. File-level behaviour is checked through a second raw
// sqlite3 connection; per-connection PRAGMAs through the store's own connection, captured with
// an SQLite auto-extension (nothing is added to the public API for tests).
#include "saga/sqlite_store.hpp"
#include "saga/sqlite_tuning.hpp"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

namespace saga {
namespace {

namespace fs = std::filesystem;
using std::chrono::microseconds;

const Timestamp kEpoch2020{std::chrono::seconds{1577836800}};

Timestamp from_micros_for_test(std::int64_t micros) {
  return Timestamp{std::chrono::duration_cast<Timestamp::duration>(microseconds{micros})};
}

Timestamp at_us(std::int64_t offset_us) {
  return kEpoch2020 + microseconds{offset_us};
}

// A sqlite3 connection of the test's own, beside the store's.
class RawDb {
 public:
  explicit RawDb(const fs::path& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db_);
    }
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (error != nullptr ? error : "?");
    }
    sqlite3_free(error);
  }
  std::string text(const char* sql) { return query_text(db_, sql); }
  std::int64_t integer(const char* sql) { return query_integer(db_, sql); }
  // EXPLAIN QUERY PLAN's details, one line per step.
  std::string plan(const std::string& sql) {
    const std::string explain = "EXPLAIN QUERY PLAN " + sql;
    sqlite3_stmt* stmt = nullptr;
    std::string result;
    if (sqlite3_prepare_v2(db_, explain.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
      ADD_FAILURE() << explain << ": " << sqlite3_errmsg(db_);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW)
      result += std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3))) + "\n";
    sqlite3_finalize(stmt);
    return result;
  }

  static std::string query_text(sqlite3* db, const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string result;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      result = text != nullptr ? text : "";
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
    return result;
  }
  static std::int64_t query_integer(sqlite3* db, const char* sql) {
    return std::stoll(query_text(db, sql));
  }

 private:
  sqlite3* db_ = nullptr;
};

// Captures the sqlite3 handle of the first connection opened while it lives (the store's
// writer; its checkpoint connection is opened after it).
sqlite3* g_captured = nullptr;
int capture_connection(sqlite3* db, const char**, const sqlite3_api_routines*) {
  if (g_captured == nullptr) g_captured = db;
  return SQLITE_OK;
}
class CaptureConnection {
 public:
  CaptureConnection() {
    g_captured = nullptr;
    sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(&capture_connection));
  }
  ~CaptureConnection() {
    sqlite3_cancel_auto_extension(reinterpret_cast<void (*)(void)>(&capture_connection));
  }
  sqlite3* handle() const { return g_captured; }
};

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sqlite_store_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

StoreOptions memory_options() {
  StoreOptions options;
  options.path = ":memory:";
  return options;
}

StoreOptions file_options(const fs::path& path) {
  StoreOptions options;
  options.path = path.string();
  return options;
}

std::unique_ptr<SqliteStore> open_or_fail(const StoreOptions& options) {
  auto opened = SqliteStore::open(options);
  if (!opened) {
    ADD_FAILURE() << "open(" << options.path << "): " << opened.error().message;
    return nullptr;
  }
  return std::move(opened).value();
}

// A store and its writer connection (the first one open() makes).
struct OpenedWithConnection {
  std::unique_ptr<SqliteStore> store;
  sqlite3* connection = nullptr;
};

OpenedWithConnection open_capturing_connection(const StoreOptions& options) {
  CaptureConnection capture;
  OpenedWithConnection opened;
  opened.store = open_or_fail(options);
  opened.connection = capture.handle();
  return opened;
}

SagaRecord make_saga(const std::string& id, SagaStatus status = SagaStatus::Running,
                     Timestamp created = at_us(0)) {
  SagaRecord record;
  record.id = id;
  record.type = "order";
  record.definition_version = 3;
  record.state = "AwaitingPayment";
  record.status = status;
  record.data = R"({"orderId":")" + id + R"(","amount":42})";
  record.row_version = 0;
  record.created_at = created;
  record.updated_at = created;
  return record;
}

SagaWrite insert(SagaRecord record) {
  return SagaWrite{std::move(record), std::nullopt};
}

SagaWrite update(SagaRecord record, std::int64_t expected) {
  return SagaWrite{std::move(record), expected};
}

OutboxMessage make_outbox(const std::string& id, const std::string& saga_id,
                          Timestamp created = at_us(0)) {
  OutboxMessage message;
  message.message_id = id;
  message.saga_id = saga_id;
  message.destination = "payment";
  message.message_type = "payment.Charge";
  message.payload = R"({"eventId":")" + id + R"("})";
  message.created_at = created;
  return message;
}

JournalEntry make_journal(const std::string& saga_id, JournalKind kind, Timestamp when) {
  JournalEntry entry;
  entry.saga_id = saga_id;
  entry.at = when;
  entry.kind = kind;
  return entry;
}

void expect_same_saga(const SagaRecord& expected, const SagaRecord& actual) {
  EXPECT_EQ(expected.id, actual.id);
  EXPECT_EQ(expected.type, actual.type);
  EXPECT_EQ(expected.definition_version, actual.definition_version);
  EXPECT_EQ(expected.state, actual.state);
  EXPECT_EQ(expected.status, actual.status);
  EXPECT_EQ(expected.data, actual.data);
  EXPECT_EQ(expected.row_version, actual.row_version);
  EXPECT_EQ(expected.created_at, actual.created_at);
  EXPECT_EQ(expected.updated_at, actual.updated_at);
}

std::vector<std::string> ids_of(const std::vector<OutboxMessage>& messages) {
  std::vector<std::string> ids;
  for (const auto& message : messages) ids.push_back(message.message_id);
  return ids;
}

// --- Opening and migrations -------------------------------------------------------------------

// Brings a raw database to schema `version` by running the first `version` migration files, as
// an engine built at that version would have left it.
void migrate_to(RawDb& raw, std::size_t version) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(SAGA_SQLITE_MIGRATIONS_DIR))
    files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), version);
  for (std::size_t i = 0; i < version; ++i) {
    std::ifstream in(files[i]);
    const std::string sql((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    raw.exec(sql.c_str());
  }
  raw.exec(("PRAGMA user_version = " + std::to_string(version)).c_str());
}

// A database file at schema `version` holding the rows the statements insert.
void create_at_schema(const fs::path& db, std::size_t version,
                      std::initializer_list<const char*> statements) {
  RawDb raw(db);
  ASSERT_NO_FATAL_FAILURE(migrate_to(raw, version));
  for (const char* sql : statements) raw.exec(sql);
}

// In a process of its own (a death test re-runs this binary for this test alone), so that
// SQLite is not yet initialized when the setting is made, as at the start of an application.
TEST(SqliteTuning, MemoryStatisticsTurnedOffBeforeFirstUseStayOffAndCannotBeChangedAfter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const bool took_effect = disable_sqlite_memory_statistics();
        StoreOptions in_memory;
        in_memory.path = ":memory:";
        auto store = SqliteStore::open(in_memory);
        WriteBatch batch;
        batch.inbox.push_back("m1");
        const bool committed = store && store.value()->commit(batch);
        // Counted allocations would show here; with the statistics off nothing is counted.
        const bool uncounted = sqlite3_memory_used() == 0;
        const bool later_call_refused = !disable_sqlite_memory_statistics();
        std::exit(took_effect && committed && uncounted && later_call_refused ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(SqliteTuning, MemoryStatisticsStayOnWhenSqliteIsAlreadyInUse) {
  StoreOptions in_memory;
  in_memory.path = ":memory:";
  auto store = SqliteStore::open(in_memory);
  ASSERT_TRUE(store);
  EXPECT_FALSE(disable_sqlite_memory_statistics());
  EXPECT_GT(sqlite3_memory_used(), 0);
}

TEST(SqliteStoreOpen, LatestSchemaVersionIsTheNumberOfMigrations) {
  EXPECT_EQ(SqliteStore::latest_schema_version(), 9);
}

TEST(SqliteStoreOpen, InMemoryDatabaseOpensAndIsIntact) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  auto ok = store->integrity_ok();
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_TRUE(ok.value());
}

TEST(SqliteStoreOpen, MigrationsCreateEveryTableAndSetUserVersion) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  { ASSERT_TRUE(open_or_fail(file_options(db))); }
  RawDb raw(db);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), SqliteStore::latest_schema_version());
  for (const char* table : {"sagas", "journal", "outbox", "inbox", "dead_letters", "timers"}) {
    const std::string sql =
        std::string("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '") +
        table + "'";
    EXPECT_EQ(raw.integer(sql.c_str()), 1) << table;
  }
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_list WHERE strict = 1 AND name IN "
                        "('sagas', 'journal', 'outbox', 'inbox', 'dead_letters', 'timers')"),
            6);
}

TEST(SqliteStoreOpen, ReopeningKeepsDataAndDoesNotReapplyMigrations) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  {
    auto store = open_or_fail(file_options(db));
    ASSERT_TRUE(store);
    WriteBatch batch;
    batch.sagas.push_back(insert(make_saga("s1")));
    ASSERT_TRUE(store->commit(batch));
  }
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  auto loaded = store->load_saga("s1");
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded.value().has_value());
}

TEST(SqliteStoreOpen, NewerSchemaVersionIsRefusedNamingBothVersions) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  { ASSERT_TRUE(open_or_fail(file_options(db))); }
  {
    RawDb raw(db);
    raw.exec("PRAGMA user_version = 99");
  }
  auto opened = SqliteStore::open(file_options(db));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, StoreErrorCode::corrupt);
  EXPECT_EQ(opened.error().message,
            "database schema version 99 is newer than this build supports (" +
                std::to_string(SqliteStore::latest_schema_version()) + ")");
}

TEST(SqliteStoreOpen, FileThatIsNotADatabaseIsReportedCorrupt) {
  TempDir dir;
  const fs::path db = dir.path() / "not_a.db";
  std::ofstream(db) << std::string(4096, 'x');
  auto opened = SqliteStore::open(file_options(db));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, StoreErrorCode::corrupt) << opened.error().message;
}

// Durability::full makes the commits durable on the store's sync thread by default, so COMMIT
// itself runs with synchronous = NORMAL (see SqliteStoreBackgroundSync below).
TEST(SqliteStoreOpen,
     FileDatabaseUsesWalSynchronousNormalWithTheSyncThreadTheBusyTimeoutA16MibCacheAnd8KibPages) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  StoreOptions options = file_options(db);
  EXPECT_EQ(options.durability, Durability::full);
  EXPECT_TRUE(options.sync_in_background);
  auto [store, connection] = open_capturing_connection(options);
  ASSERT_TRUE(store);
  ASSERT_NE(connection, nullptr);
  EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA synchronous"), 1);  // NORMAL
  EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA busy_timeout"), 5000);
  EXPECT_EQ(RawDb::query_text(connection, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA cache_size"), -16384);  // 16 MiB
  EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA page_size"), 8192);

  RawDb raw(db);  // journal_mode = WAL and the page size are persistent: another connection sees
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.integer("PRAGMA page_size"), 8192);
}

// The page size is chosen when the store creates a database; an existing one (here made with
// SQLite's default 4 KiB, as every database was before 8 KiB became the default) keeps its own,
// whatever the options say, and works as before.
TEST(SqliteStoreOpen, AnExistingDatabaseKeepsThePageSizeItWasCreatedWith) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  {
    StoreOptions created = file_options(db);
    created.page_size = 4096;
    auto store = open_or_fail(created);
    ASSERT_TRUE(store);
    WriteBatch batch;
    batch.at = at_us(1);
    batch.sagas.push_back(insert(make_saga("s1")));
    ASSERT_TRUE(store->commit(batch));
  }
  EXPECT_EQ(RawDb(db).integer("PRAGMA page_size"), 4096);
  auto store = open_or_fail(file_options(db));  // asks for 8 KiB
  ASSERT_TRUE(store);
  EXPECT_EQ(RawDb(db).integer("PRAGMA page_size"), 4096);
  WriteBatch batch;
  batch.at = at_us(2);
  batch.sagas.push_back(insert(make_saga("s2")));
  ASSERT_TRUE(store->commit(batch));
  EXPECT_TRUE(store->load_saga("s1").value().has_value());
  EXPECT_TRUE(store->load_saga("s2").value().has_value());
  EXPECT_TRUE(store->integrity_ok().value());
}

TEST(SqliteStoreOpen, APageSizeSqliteCannotUseIsRefusedBeforeAnythingIsCreated) {
  TempDir dir;
  for (std::size_t bad :
       {std::size_t{0}, std::size_t{256}, std::size_t{6000}, std::size_t{131072}}) {
    StoreOptions options = file_options(dir.path() / "saga.db");
    options.page_size = bad;
    EXPECT_THROW(SqliteStore::open(options), std::invalid_argument) << bad;
  }
  EXPECT_FALSE(fs::exists(dir.path() / "saga.db"));
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.page_size = 65536;
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(RawDb(dir.path() / "saga.db").integer("PRAGMA page_size"), 65536);
}

TEST(SqliteStoreOpen, DurabilityNormalAndOffSetPragmaSynchronous) {
  TempDir dir;
  for (const auto& [durability, expected] :
       {std::pair{Durability::normal, 1}, std::pair{Durability::off, 0}}) {
    StoreOptions options = file_options(dir.path() / "saga.db");
    options.durability = durability;
    options.busy_timeout = std::chrono::milliseconds{50};
    auto [store, connection] = open_capturing_connection(options);
    ASSERT_TRUE(store);
    ASSERT_NE(connection, nullptr);
    EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA synchronous"), expected);
    EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA busy_timeout"), 50);
  }
}

// A database at schema 6 (migrations 0001..0006 applied from the source tree, as a release with
// six migrations left it), with data, upgraded by opening it: the journal keeps its rows and
// their sequences, and new rows get larger sequences than every old one.
TEST(SqliteStoreMigration, Schema6DatabaseWithDataIsUpgradedKeepingJournalSequences) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  ASSERT_NO_FATAL_FAILURE(create_at_schema(
      db, 6,
      {"INSERT INTO sagas (id, type, definition_version, state, status, data, row_version, "
       "created_at, updated_at, correlation_id) VALUES "
       "('s1', 'order', 1, 'AwaitingPayment', 'Running', '{}', 3, 1, 2, 'c1')",
       "INSERT INTO journal (saga_id, at, kind, detail) VALUES ('s1', 10, 'started', '{}'), "
       "('other', 11, 'started', ''), ('s1', 12, 'transition', '')",
       "INSERT INTO outbox (message_id, saga_id, destination, message_type, payload, "
       "created_at) VALUES ('m1', 's1', 'payment', 'payment.Charge', '{}', 5)"}));
  ASSERT_EQ(RawDb(db).integer("SELECT max(sequence) FROM journal"), 3);

  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  auto journal = store->journal("s1").value();
  ASSERT_EQ(journal.size(), 2u);
  EXPECT_EQ(journal[0].sequence, 1);
  EXPECT_EQ(journal[0].kind, JournalKind::started);
  EXPECT_EQ(journal[0].at, from_micros_for_test(10));
  EXPECT_EQ(journal[0].detail, "{}");
  EXPECT_EQ(journal[1].sequence, 3);
  EXPECT_EQ(journal[1].kind, JournalKind::transition);
  ASSERT_EQ(store->journal("other").value().size(), 1u);
  EXPECT_EQ(store->journal("other").value()[0].sequence, 2);
  auto saga = store->load_saga("s1").value();
  ASSERT_TRUE(saga.has_value());
  EXPECT_EQ(saga->row_version, 3);
  EXPECT_EQ(saga->correlation_id, "c1");
  EXPECT_EQ(store->pending_outbox(10).value().size(), 1u);

  WriteBatch batch;
  batch.journal = {make_journal("s1", JournalKind::message_in, at_us(1)),
                   make_journal("new", JournalKind::started, at_us(2))};
  ASSERT_TRUE(store->commit(batch));
  journal = store->journal("s1").value();
  ASSERT_EQ(journal.size(), 3u);
  EXPECT_EQ(journal[2].sequence, 4);
  EXPECT_EQ(store->journal("new").value().at(0).sequence, 5);
  EXPECT_TRUE(store->integrity_ok().value());
  store.reset();

  RawDb raw(db);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), SqliteStore::latest_schema_version());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = "
                        "'journal_by_saga' AND tbl_name = 'journal'"),
            1);
  // Migration 0007: sequences are assigned without AUTOINCREMENT (no sqlite_sequence row).
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_schema WHERE name = 'journal' AND sql LIKE "
                        "'%AUTOINCREMENT%'"),
            0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_sequence WHERE name = 'journal'"), 0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_list WHERE name = 'journal' AND "
                        "strict = 1"),
            1);
}

TEST(SqliteStoreMigration, Schema7OutboxIsServedByOneOpenCommandsIndex) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  // pending, awaiting its reply, replied, and replied before its dispatch mark was committed
  ASSERT_NO_FATAL_FAILURE(create_at_schema(
      db, 7,
      {"INSERT INTO outbox (message_id, saga_id, destination, message_type, payload, created_at, "
       "dispatched, dispatched_at, replied_at) VALUES "
       "('pending', 's1', 'inventory', 'inventory.Reserve', '{}', 4, 0, NULL, NULL), "
       "('awaiting', 's1', 'payment', 'payment.Charge', '{}', 3, 1, 7, NULL), "
       "('replied', 's1', 'payment', 'payment.Charge', '{}', 2, 1, 5, 6), "
       "('closed', 's1', 'shipping', 'shipping.Ship', '{}', 1, 0, NULL, 8)"}));

  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  EXPECT_EQ(ids_of(store->pending_outbox(10).value()), std::vector<std::string>{"pending"});
  EXPECT_EQ(ids_of(store->awaiting_reply(10).value()), std::vector<std::string>{"awaiting"});

  WriteBatch batch;
  batch.dispatched = {{"pending", 2}};
  batch.replied = {"awaiting"};
  ASSERT_TRUE(store->commit(batch));
  EXPECT_TRUE(store->pending_outbox(10).value().empty());
  EXPECT_EQ(ids_of(store->awaiting_reply(10).value()), std::vector<std::string>{"pending"});
  store.reset();

  RawDb raw(db);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), SqliteStore::latest_schema_version());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN "
                        "('outbox_pending', 'outbox_awaiting_reply')"),
            0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM outbox INDEXED BY outbox_open "
                        "WHERE replied_at IS NULL"),
            1);
  // The engine's start-up reads (and sagactl's counts) are searches of that index, not scans of
  // the outbox, which holds every command ever sent.
  for (const char* query :
       {"SELECT message_id FROM outbox WHERE replied_at IS NULL AND dispatched = 0 "
        "ORDER BY created_at, rowid",
        "SELECT message_id FROM outbox WHERE replied_at IS NULL AND dispatched = 1 "
        "ORDER BY dispatched_at, rowid",
        "SELECT count(*) FROM outbox WHERE replied_at IS NULL AND dispatched = 0"}) {
    const std::string plan = raw.plan(query);
    EXPECT_NE(plan.find("USING INDEX outbox_open"), std::string::npos) << query << "\n" << plan;
  }
  // A destination's backlog is read in rowid order from a sequence on: a range of the table
  // itself, never a sort of every open command.
  const std::string plan = raw.plan(
      "SELECT message_id FROM outbox WHERE destination = 'payment' AND replied_at IS "
      "NULL AND rowid > 1 AND dispatched = 0 ORDER BY rowid LIMIT 10");
  EXPECT_NE(plan.find("USING INTEGER PRIMARY KEY (rowid>?)"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

// --- Exclusive writer ---------------------------------------------------------------------------

TEST(SqliteStoreExclusiveWriter, SecondWriterIsRefusedUntilTheFirstIsDestroyed) {
  TempDir dir;
  const std::string db = (dir.path() / "saga.db").string();
  auto first = open_or_fail(file_options(db));
  ASSERT_TRUE(first);

  auto second = SqliteStore::open(file_options(db));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, StoreErrorCode::busy);
  EXPECT_EQ(second.error().message, "database " + db +
                                        " is already open for writing by another engine (lock "
                                        "file " +
                                        db + ".lock)");

  first.reset();
  auto third = SqliteStore::open(file_options(db));
  EXPECT_TRUE(third) << third.error().message;
}

// The lock file was named after the path as given: a second engine reaching the same database
// through a symlink (or "dir/../saga.db") got a lock of its own and wrote beside the first.
TEST(SqliteStoreExclusiveWriter, ASecondWriterThroughAnotherPathToTheSameFileIsRefused) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  auto first = open_or_fail(file_options(db));
  ASSERT_TRUE(first);
  fs::create_directory(dir.path() / "sub");
  fs::create_symlink(db, dir.path() / "link.db");
  for (const fs::path& other : {dir.path() / "link.db", dir.path() / "sub" / ".." / "saga.db"}) {
    auto second = SqliteStore::open(file_options(other));
    ASSERT_FALSE(second) << other;
    EXPECT_EQ(second.error().code, StoreErrorCode::busy) << other;
  }
}

// A database opened through a symlink: SQLite writes its WAL beside the file the link points
// to. The store synced "<link>-wal", which does not exist: the open-time sync synced nothing, and
// the first sync() failed for good, refusing every commit after it.
TEST(SqliteStoreExclusiveWriter, DatabaseOpenedThroughASymlinkSyncsTheWalSqliteWrites) {
  TempDir dir;
  fs::create_directory(dir.path() / "real");
  fs::create_directory(dir.path() / "links");
  // The link comes first, its target does not exist yet: the first open creates it.
  fs::create_symlink(dir.path() / "real" / "saga.db", dir.path() / "links" / "saga.db");
  auto store = open_or_fail(file_options(dir.path() / "links" / "saga.db"));
  ASSERT_TRUE(store);
  for (int i = 0; i < 3; ++i) {
    WriteBatch batch;
    batch.outbox = {make_outbox("m" + std::to_string(i), "s1")};
    ASSERT_TRUE(store->commit(batch));
    StoreStatus synced = store->sync();
    ASSERT_TRUE(synced) << synced.error->message;
  }
  EXPECT_EQ(store->durable_through(), store->last_commit());
  EXPECT_TRUE(fs::exists(dir.path() / "real" / "saga.db-wal"));
  EXPECT_FALSE(fs::exists(dir.path() / "links" / "saga.db-wal"));
  auto second = SqliteStore::open(file_options(dir.path() / "real" / "saga.db"));
  ASSERT_FALSE(second) << "one lock for both names, also when the link came before its target";
  EXPECT_EQ(second.error().code, StoreErrorCode::busy);
}

TEST(SqliteStoreExclusiveWriter, WithoutExclusiveWriterTwoStoresMayShareADatabase) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.exclusive_writer = false;
  auto first = open_or_fail(options);
  auto second = open_or_fail(options);
  EXPECT_TRUE(first);
  EXPECT_TRUE(second);
}

// --- Commit round trips -------------------------------------------------------------------------

TEST(SqliteStoreCommit, EmptyBatchIsANoOpSuccess) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.at = at_us(1);
  EXPECT_TRUE(store->commit(batch));
  auto pending = store->pending_outbox(10);
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending.value().empty());
}

TEST(SqliteStoreCommit, SagaRecordRoundTripsWithMicrosecondTimestamps) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  SagaRecord record = make_saga("s1", SagaStatus::Compensating, at_us(123456));
  record.updated_at = at_us(987654);
  record.data = "{\"text\":\"caf\xc3\xa9\",\"nul\":\"\"}";
  WriteBatch batch;
  batch.sagas.push_back(insert(record));
  ASSERT_TRUE(store->commit(batch));

  auto loaded = store->load_saga("s1");
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_TRUE(loaded.value().has_value());
  expect_same_saga(record, *loaded.value());
}

// SagaWrite::stored_status only lets the store pick its statement: whatever it says, right or
// wrong, the row written and the conflicts found are the same.
TEST(SqliteStoreCommit, StoredStatusHintNeverChangesWhatIsWrittenOrWhatConflicts) {
  const std::optional<SagaStatus> hints[] = {std::nullopt, SagaStatus::Running,
                                             SagaStatus::Completed, SagaStatus::Failed};
  for (SagaStatus next : {SagaStatus::Running, SagaStatus::Completed}) {
    for (const auto& hint : hints) {
      for (bool stale : {false, true}) {
        auto store = open_or_fail(memory_options());
        ASSERT_TRUE(store);
        WriteBatch first;
        first.sagas.push_back(insert(make_saga("s1")));
        ASSERT_TRUE(store->commit(first));
        SagaRecord changed = make_saga("s1", next);
        changed.state = "Elsewhere";
        changed.data = R"({"changed":true})";
        changed.updated_at = at_us(5);
        WriteBatch second;
        second.sagas.push_back(update(changed, stale ? 7 : 0));
        second.sagas.back().stored_status = hint;
        StoreStatus status = store->commit(second);
        SCOPED_TRACE(std::string(to_string(next)) + " hint " +
                     (hint ? std::string(to_string(*hint)) : "none") + (stale ? " stale" : ""));
        auto loaded = store->load_saga("s1").value();
        ASSERT_TRUE(loaded.has_value());
        if (stale) {
          ASSERT_FALSE(status);
          EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
          EXPECT_EQ(loaded->status, SagaStatus::Running);
          EXPECT_EQ(loaded->row_version, 0);
        } else {
          ASSERT_TRUE(status) << status.error->message;
          EXPECT_EQ(loaded->status, next);
          EXPECT_EQ(loaded->state, "Elsewhere");
          EXPECT_EQ(loaded->data, R"({"changed":true})");
          EXPECT_EQ(loaded->row_version, 1);
        }
      }
    }
  }
}

TEST(SqliteStoreCommit, LoadingAnUnknownSagaGivesNullopt) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  auto loaded = store->load_saga("nope");
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded.value().has_value());
}

TEST(SqliteStoreCommit, JournalRoundTripsInOrderWithAscendingSequences) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  JournalEntry first = make_journal("s1", JournalKind::started, at_us(1));
  first.detail = R"({"amount":42})";
  JournalEntry second = make_journal("s1", JournalKind::transition, at_us(2));
  second.message_id = "m1";
  second.message_type = "payment.Charged";
  second.from_state = "AwaitingPayment";
  second.to_state = "Shipping";
  WriteBatch batch;
  batch.journal = {first, second, make_journal("other", JournalKind::started, at_us(3))};
  ASSERT_TRUE(store->commit(batch));
  WriteBatch later;
  later.journal = {make_journal("s1", JournalKind::status_changed, at_us(4))};
  ASSERT_TRUE(store->commit(later));

  auto journal = store->journal("s1");
  ASSERT_TRUE(journal) << journal.error().message;
  ASSERT_EQ(journal.value().size(), 3u);
  const auto& entries = journal.value();
  EXPECT_LT(entries[0].sequence, entries[1].sequence);
  EXPECT_LT(entries[1].sequence, entries[2].sequence);
  EXPECT_EQ(entries[0].kind, JournalKind::started);
  EXPECT_EQ(entries[0].detail, first.detail);
  EXPECT_EQ(entries[0].at, at_us(1));
  EXPECT_EQ(entries[1].kind, JournalKind::transition);
  EXPECT_EQ(entries[1].saga_id, "s1");
  EXPECT_EQ(entries[1].message_id, "m1");
  EXPECT_EQ(entries[1].message_type, "payment.Charged");
  EXPECT_EQ(entries[1].from_state, "AwaitingPayment");
  EXPECT_EQ(entries[1].to_state, "Shipping");
  EXPECT_EQ(entries[2].kind, JournalKind::status_changed);
}

TEST(SqliteStoreCommit, OutboxRoundTripsAsPending) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  OutboxMessage message = make_outbox("m1", "s1", at_us(77));
  message.attempts = 2;
  WriteBatch batch;
  batch.outbox.push_back(message);
  ASSERT_TRUE(store->commit(batch));

  auto rows = store->outbox("s1");
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows.value().size(), 1u);
  const OutboxMessage& row = rows.value()[0];
  EXPECT_EQ(row.message_id, "m1");
  EXPECT_EQ(row.saga_id, "s1");
  EXPECT_EQ(row.destination, "payment");
  EXPECT_EQ(row.message_type, "payment.Charge");
  EXPECT_EQ(row.payload, message.payload);
  EXPECT_EQ(row.attempts, 2);
  EXPECT_FALSE(row.dispatched);
  EXPECT_EQ(row.created_at, at_us(77));
  EXPECT_EQ(ids_of(store->pending_outbox(10).value()), std::vector<std::string>{"m1"});
}

TEST(SqliteStoreCommit, InboxRecordsMessageIds) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.inbox = {"in-1", "in-2"};
  batch.at = at_us(5);
  ASSERT_TRUE(store->commit(batch));
  EXPECT_TRUE(store->inbox_contains("in-1").value());
  EXPECT_TRUE(store->inbox_contains("in-2").value());
  EXPECT_FALSE(store->inbox_contains("in-3").value());
}

TEST(SqliteStoreCommit, DeadLetterRoundTripsRawBytesAndOriginalSize) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  DeadLetter letter;
  letter.at = at_us(9);
  letter.reason_code = "bad_uuid";
  letter.reason = "eventId is not a UUID";
  letter.message_id = "not-a-uuid";
  letter.message_type = "payment.Charged";
  letter.saga_id = "s1";
  letter.raw = std::string("{\"a\":\0\xff\xfe", 8);
  letter.raw_size = 100000;
  WriteBatch batch;
  batch.dead_letters = {letter, DeadLetter{}};
  ASSERT_TRUE(store->commit(batch));

  auto rows = store->dead_letters(10);
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows.value().size(), 2u);
  const DeadLetter& row = rows.value()[0];
  EXPECT_GT(row.id, 0);
  EXPECT_EQ(row.at, at_us(9));
  EXPECT_EQ(row.reason_code, "bad_uuid");
  EXPECT_EQ(row.reason, letter.reason);
  EXPECT_EQ(row.message_id, "not-a-uuid");
  EXPECT_EQ(row.message_type, "payment.Charged");
  EXPECT_EQ(row.saga_id, "s1");
  EXPECT_EQ(row.raw, letter.raw);
  EXPECT_EQ(row.raw_size, 100000u);
  EXPECT_LT(row.id, rows.value()[1].id);
  EXPECT_TRUE(rows.value()[1].raw.empty());

  auto limited = store->dead_letters(1);
  ASSERT_TRUE(limited);
  ASSERT_EQ(limited.value().size(), 1u);
  EXPECT_EQ(limited.value()[0].id, row.id);
}

TEST(SqliteStoreCommit, WholeBatchAcrossEveryTableCommitsTogether) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.at = at_us(10);
  batch.sagas.push_back(insert(make_saga("s1")));
  batch.journal.push_back(make_journal("s1", JournalKind::started, at_us(10)));
  batch.outbox.push_back(make_outbox("m1", "s1", at_us(10)));
  batch.inbox.push_back("in-1");
  batch.dead_letters.push_back(DeadLetter{});
  batch.dispatched.push_back({"m1", 2});  // a row of the same batch
  ASSERT_TRUE(store->commit(batch));

  EXPECT_TRUE(store->load_saga("s1").value().has_value());
  EXPECT_EQ(store->journal("s1").value().size(), 1u);
  EXPECT_TRUE(store->inbox_contains("in-1").value());
  EXPECT_EQ(store->dead_letters(10).value().size(), 1u);
  auto outbox = store->outbox("s1").value();
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_TRUE(outbox[0].dispatched);
  EXPECT_EQ(outbox[0].attempts, 2);
}

// --- Optimistic concurrency and conflicts -----------------------------------------------------

TEST(SqliteStoreCommit, UpdateWithMatchingRowVersionStoresNextRowVersion) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch first;
  first.sagas.push_back(insert(make_saga("s1", SagaStatus::Running, at_us(1))));
  ASSERT_TRUE(store->commit(first));

  SagaRecord changed = make_saga("s1", SagaStatus::Completed, at_us(999));
  changed.state = "Done";
  changed.data = R"({"done":true})";
  changed.definition_version = 4;
  changed.updated_at = at_us(50);
  WriteBatch second;
  second.sagas.push_back(update(changed, 0));
  ASSERT_TRUE(store->commit(second));

  auto loaded = store->load_saga("s1").value();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->row_version, 1);
  EXPECT_EQ(loaded->state, "Done");
  EXPECT_EQ(loaded->status, SagaStatus::Completed);
  EXPECT_EQ(loaded->data, R"({"done":true})");
  EXPECT_EQ(loaded->definition_version, 4);
  EXPECT_EQ(loaded->updated_at, at_us(50));
  EXPECT_EQ(loaded->created_at, at_us(1));  // created_at is never rewritten

  WriteBatch third;
  third.sagas.push_back(update(changed, 1));
  ASSERT_TRUE(store->commit(third));
  EXPECT_EQ(store->load_saga("s1").value()->row_version, 2);
}

TEST(SqliteStoreCommit, StaleRowVersionIsConflictAndRollsBackTheWholeBatch) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch setup;
  setup.sagas.push_back(insert(make_saga("s1")));
  setup.sagas.push_back(insert(make_saga("s2")));
  ASSERT_TRUE(store->commit(setup));

  SagaRecord s2 = make_saga("s2");
  s2.state = "Moved";
  WriteBatch batch;
  batch.at = at_us(3);
  batch.sagas.push_back(update(s2, 0));               // would succeed
  batch.sagas.push_back(insert(make_saga("s3")));     // would succeed
  batch.sagas.push_back(update(make_saga("s1"), 7));  // stale
  batch.journal.push_back(make_journal("s1", JournalKind::transition, at_us(3)));
  batch.outbox.push_back(make_outbox("m1", "s1"));
  batch.inbox.push_back("in-1");
  batch.dead_letters.push_back(DeadLetter{});
  StoreStatus status = store->commit(batch);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
  EXPECT_NE(status.error->message.find("s1"), std::string::npos) << status.error->message;

  EXPECT_EQ(store->load_saga("s2").value()->state, "AwaitingPayment");
  EXPECT_EQ(store->load_saga("s2").value()->row_version, 0);
  EXPECT_FALSE(store->load_saga("s3").value().has_value());
  EXPECT_TRUE(store->journal("s1").value().empty());
  EXPECT_TRUE(store->outbox("s1").value().empty());
  EXPECT_TRUE(store->pending_outbox(10).value().empty());
  EXPECT_FALSE(store->inbox_contains("in-1").value());
  EXPECT_TRUE(store->dead_letters(10).value().empty());
}

// An update that keeps the status and type and one that changes them take different statements
// (the first leaves the status indexes alone); both must store the whole record and keep the
// status queries right.
TEST(SqliteStoreCommit, UpdatesKeepingAndChangingStatusAndTypeAreVisibleToStatusQueries) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch setup;
  setup.sagas = {insert(make_saga("s1", SagaStatus::Running, at_us(1))),
                 insert(make_saga("s2", SagaStatus::Running, at_us(2)))};
  ASSERT_TRUE(store->commit(setup));

  SagaRecord same_status = make_saga("s1", SagaStatus::Running, at_us(1));
  same_status.state = "AwaitingShipment";
  same_status.data = R"({"step":2})";
  same_status.definition_version = 5;
  same_status.updated_at = at_us(10);
  WriteBatch keep;
  keep.sagas.push_back(update(same_status, 0));
  ASSERT_TRUE(store->commit(keep));
  same_status.row_version = 1;
  expect_same_saga(same_status, *store->load_saga("s1").value());
  EXPECT_EQ(store->sagas_with_status(SagaStatus::Running, 10).value().size(), 2u);

  SagaRecord completed = same_status;
  completed.status = SagaStatus::Completed;
  completed.state = "Done";
  completed.updated_at = at_us(20);
  SagaRecord retyped = make_saga("s2", SagaStatus::Running, at_us(2));
  retyped.type = "loan";
  retyped.state = "Moved";
  WriteBatch change;
  change.sagas = {update(completed, 1), update(retyped, 0)};
  ASSERT_TRUE(store->commit(change));
  completed.row_version = 2;
  retyped.row_version = 1;
  expect_same_saga(completed, *store->load_saga("s1").value());
  expect_same_saga(retyped, *store->load_saga("s2").value());

  auto running = store->sagas_with_status(SagaStatus::Running, 10).value();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].id, "s2");
  auto done = store->sagas_with_status(SagaStatus::Completed, 10).value();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, "s1");
  std::vector<std::tuple<std::string, SagaStatus, std::int64_t>> rows;
  for (const auto& count : store->count_sagas().value())
    rows.emplace_back(count.type, count.status, count.count);
  std::sort(rows.begin(), rows.end());
  EXPECT_EQ(rows, (std::vector<std::tuple<std::string, SagaStatus, std::int64_t>>{
                      {"loan", SagaStatus::Running, 1}, {"order", SagaStatus::Completed, 1}}));
  EXPECT_TRUE(store->integrity_ok().value());
}

TEST(SqliteStoreCommit, StaleRowVersionIsConflictWhetherOrNotTheStatusChanges) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch setup;
  setup.sagas.push_back(insert(make_saga("s1", SagaStatus::Running)));
  ASSERT_TRUE(store->commit(setup));
  WriteBatch bump;
  bump.sagas.push_back(update(make_saga("s1", SagaStatus::Running), 0));
  ASSERT_TRUE(store->commit(bump));

  for (SagaStatus status : {SagaStatus::Running, SagaStatus::Failed}) {
    SagaRecord stale = make_saga("s1", status);
    stale.state = "Elsewhere";
    WriteBatch batch;
    batch.sagas.push_back(update(stale, 0));
    StoreStatus result = store->commit(batch);
    ASSERT_FALSE(result) << to_string(status);
    EXPECT_EQ(result.error->code, StoreErrorCode::conflict);
    auto loaded = store->load_saga("s1").value();
    EXPECT_EQ(loaded->row_version, 1);
    EXPECT_EQ(loaded->status, SagaStatus::Running);
    EXPECT_EQ(loaded->state, "AwaitingPayment");
  }
}

// The store keeps no memory of statuses it wrote: a reopened store changes a status that an
// earlier store wrote.
TEST(SqliteStoreCommit, StatusWrittenBeforeReopeningCanBeChangedAfterIt) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  {
    auto store = open_or_fail(file_options(db));
    ASSERT_TRUE(store);
    WriteBatch batch;
    batch.sagas.push_back(insert(make_saga("s1", SagaStatus::Running)));
    ASSERT_TRUE(store->commit(batch));
  }
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas.push_back(update(make_saga("s1", SagaStatus::Compensating), 0));
  ASSERT_TRUE(store->commit(batch));
  EXPECT_EQ(store->load_saga("s1").value()->status, SagaStatus::Compensating);
  EXPECT_TRUE(store->sagas_with_status(SagaStatus::Running, 10).value().empty());
  EXPECT_EQ(store->sagas_with_status(SagaStatus::Compensating, 10).value().size(), 1u);
}

TEST(SqliteStoreCommit, UpdateOfAMissingSagaIsConflict) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas.push_back(update(make_saga("ghost"), 0));
  StoreStatus status = store->commit(batch);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
}

TEST(SqliteStoreCommit, DuplicateSagaInsertIsConflict) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas.push_back(insert(make_saga("s1")));
  ASSERT_TRUE(store->commit(batch));

  WriteBatch again;
  again.sagas.push_back(insert(make_saga("s1")));
  again.journal.push_back(make_journal("s1", JournalKind::started, at_us(1)));
  StoreStatus status = store->commit(again);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
  EXPECT_EQ(status.error->message, "saga s1 already exists");
  EXPECT_TRUE(store->journal("s1").value().empty());
}

TEST(SqliteStoreCommit, DuplicateInboxIdIsConflictAndRollsBack) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.inbox.push_back("in-1");
  ASSERT_TRUE(store->commit(batch));

  WriteBatch again;
  again.sagas.push_back(insert(make_saga("s1")));
  again.inbox.push_back("in-1");
  StoreStatus status = store->commit(again);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
  EXPECT_FALSE(store->load_saga("s1").value().has_value());
}

TEST(SqliteStoreCommit, UnknownStatusNameInARowIsReportedCorrupt) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas.push_back(insert(make_saga("s1")));
  ASSERT_TRUE(store->commit(batch));
  {
    RawDb raw(db);
    raw.exec("UPDATE sagas SET status = 'Exploded' WHERE id = 's1'");
  }
  auto loaded = store->load_saga("s1");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, StoreErrorCode::corrupt);
}

// --- Outbox dispatch and reads ----------------------------------------------------------------

TEST(SqliteStoreOutbox, DispatchMarksSetTheFlagRecordTheAttemptsGivenAndStampTheTime) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.outbox = {make_outbox("m1", "s1", at_us(1)), make_outbox("m2", "s1", at_us(2))};
  ASSERT_TRUE(store->commit(batch));

  WriteBatch dispatched;
  dispatched.at = at_us(1000);
  dispatched.dispatched = {{"m1", 2}, {"unknown-id-is-ignored", 2}};
  ASSERT_TRUE(store->commit(dispatched));
  EXPECT_EQ(ids_of(store->pending_outbox(10).value()), std::vector<std::string>{"m2"});

  WriteBatch resent;
  resent.at = at_us(2000);
  resent.dispatched = {{"m1", 3}};
  ASSERT_TRUE(store->commit(resent));

  auto rows = store->outbox("s1").value();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].message_id, "m1");
  EXPECT_TRUE(rows[0].dispatched);
  EXPECT_EQ(rows[0].attempts, 3);
  EXPECT_FALSE(rows[1].dispatched);
  EXPECT_EQ(rows[1].attempts, 0);

  RawDb raw(db);
  EXPECT_EQ(raw.integer("SELECT dispatched_at FROM outbox WHERE message_id = 'm1'"),
            std::chrono::duration_cast<microseconds>(at_us(2000).time_since_epoch()).count());
  EXPECT_EQ(raw.text("SELECT typeof(dispatched_at) FROM outbox WHERE message_id = 'm2'"), "null");
}

TEST(SqliteStoreOutbox, RetriesAfterFailureKeepTheirWaitAndAreReadBackWhileOpen) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  OutboxMessage waiting = make_outbox("waiting", "s1", at_us(10));
  waiting.not_before = at_us(5000);
  waiting.retry_failures = 3;
  OutboxMessage resent = make_outbox("resent", "s2", at_us(20));
  resent.not_before = at_us(100);
  resent.retry_failures = 1;
  OutboxMessage answered = make_outbox("answered", "s3", at_us(30));
  answered.not_before = at_us(100);
  answered.retry_failures = 1;
  WriteBatch batch;
  batch.outbox = {make_outbox("plain", "s1", at_us(5)), waiting, resent, answered};
  ASSERT_TRUE(store->commit(batch));
  WriteBatch later;
  later.at = at_us(6000);
  later.dispatched = {{"resent", 1}};
  later.replied = {"answered"};
  ASSERT_TRUE(store->commit(later));

  auto retries = store->retries_after_failure();
  ASSERT_TRUE(retries) << retries.error().message;
  ASSERT_EQ(ids_of(retries.value()), (std::vector<std::string>{"waiting", "resent"}));
  EXPECT_EQ(retries.value()[0].not_before, at_us(5000));
  EXPECT_EQ(retries.value()[0].retry_failures, 3);
  EXPECT_FALSE(retries.value()[0].dispatched);
  EXPECT_TRUE(retries.value()[0].payload.empty()) << "read without payloads";
  EXPECT_TRUE(retries.value()[1].dispatched);
  EXPECT_EQ(retries.value()[1].retry_failures, 1);
  EXPECT_EQ(store->outbox_message("waiting").value().value().payload, waiting.payload);
  const OutboxMessage plain = store->outbox_message("plain").value().value();
  EXPECT_FALSE(plain.not_before);
  EXPECT_EQ(plain.retry_failures, 0);

  WriteBatch reopened;  // an operator's re-send: no wait any more
  reopened.reopened = {"resent"};
  ASSERT_TRUE(store->commit(reopened));
  EXPECT_EQ(ids_of(store->retries_after_failure().value()), std::vector<std::string>{"waiting"});
  const OutboxMessage reopened_row = store->outbox_message("resent").value().value();
  EXPECT_FALSE(reopened_row.not_before);
  EXPECT_EQ(reopened_row.retry_failures, 0);

  store.reset();
  RawDb raw(db);
  EXPECT_EQ(raw.text("SELECT typeof(not_before) FROM outbox WHERE message_id = 'plain'"), "null");
  // Read through the open-commands index, not by scanning the outbox.
  EXPECT_NE(raw.plan("SELECT * FROM outbox WHERE replied_at IS NULL AND not_before IS NOT NULL "
                     "ORDER BY created_at, rowid")
                .find("outbox_open"),
            std::string::npos);
}

TEST(SqliteStoreOutbox, PendingOutboxIsOldestFirstTiesInInsertionOrderAndHonoursLimit) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.outbox = {make_outbox("c", "s1", at_us(30)), make_outbox("a", "s1", at_us(10)),
                  make_outbox("b2", "s2", at_us(20)), make_outbox("b1", "s2", at_us(20))};
  ASSERT_TRUE(store->commit(batch));

  EXPECT_EQ(ids_of(store->pending_outbox(10).value()),
            (std::vector<std::string>{"a", "b2", "b1", "c"}));
  EXPECT_EQ(ids_of(store->pending_outbox(2).value()), (std::vector<std::string>{"a", "b2"}));
  EXPECT_TRUE(store->pending_outbox(0).value().empty());

  WriteBatch dispatched;
  dispatched.dispatched = {{"a", 2}};
  ASSERT_TRUE(store->commit(dispatched));
  EXPECT_EQ(ids_of(store->pending_outbox(2).value()), (std::vector<std::string>{"b2", "b1"}));
}

TEST(SqliteStoreOutbox, PendingOutboxForOneDestinationIsInCommitOrderAfterASequence) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  auto to = [](OutboxMessage row, const char* destination) {
    row.destination = destination;
    return row;
  };
  WriteBatch batch;  // created_at does not decide the order: the commit does
  batch.outbox = {make_outbox("p1", "s1", at_us(30)), to(make_outbox("i1", "s1"), "inventory"),
                  make_outbox("p2", "s2", at_us(10)), make_outbox("p3", "s3", at_us(20))};
  ASSERT_TRUE(store->commit(batch));
  WriteBatch later;
  later.outbox = {make_outbox("p4", "s4", at_us(5)), make_outbox("p5", "s5", at_us(5))};
  later.dispatched = {{"p2", 2}};  // re-sent: not pending any more
  later.replied = {"p3"};          // closed
  ASSERT_TRUE(store->commit(later));

  auto all = store->pending_outbox_for("payment", 0, 10).value();
  EXPECT_EQ(ids_of(all), (std::vector<std::string>{"p1", "p4", "p5"}));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_LT(all[0].sequence, all[1].sequence);
  EXPECT_LT(all[1].sequence, all[2].sequence);
  EXPECT_EQ(store->outbox_message("p4").value()->sequence, all[1].sequence);
  EXPECT_EQ(ids_of(store->pending_outbox_for("payment", all[0].sequence, 1).value()),
            std::vector<std::string>{"p4"});
  EXPECT_TRUE(store->pending_outbox_for("payment", all[2].sequence, 10).value().empty());
  EXPECT_EQ(ids_of(store->pending_outbox_for("inventory", 0, 10).value()),
            std::vector<std::string>{"i1"});
  EXPECT_TRUE(store->pending_outbox_for("shipping", 0, 10).value().empty());

  auto backlog = store->outbox_backlog().value();
  ASSERT_EQ(backlog.size(), 2u);
  EXPECT_EQ(backlog[0].destination, "inventory");
  EXPECT_EQ(backlog[0].count, 1);
  EXPECT_EQ(backlog[1].destination, "payment");
  EXPECT_EQ(backlog[1].count, 3);
  EXPECT_EQ(backlog[1].first_sequence, all[0].sequence);
  EXPECT_EQ(backlog[1].last_sequence, all[2].sequence);
}

TEST(SqliteStoreOutbox, CommandReopenedAndRepliedInOneBatchEndsClosed) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.outbox = {make_outbox("p1", "s1")};
  batch.dispatched = {{"p1", 3}};
  ASSERT_TRUE(store->commit(batch));
  WriteBatch both;
  both.reopened = {"p1"};
  both.replied = {"p1"};
  both.at = at_us(50);
  ASSERT_TRUE(store->commit(both));
  auto row = store->outbox_message("p1").value();
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->replied_at.has_value());
  EXPECT_TRUE(store->pending_outbox_for("payment", 0, 10).value().empty());
}

TEST(SqliteStoreOutbox, DuplicateOutboxIdIsConflict) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.outbox = {make_outbox("m1", "s1"), make_outbox("m1", "s1")};
  StoreStatus status = store->commit(batch);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::conflict);
  EXPECT_TRUE(store->pending_outbox(10).value().empty());
}

// The store writes the rows of one table in statements of 16, 4 and 1 rows. 39 rows take every
// size (16 + 16 + 4 + 1 + 1 + 1); each row must land with its own values, in batch order.
constexpr int kRowsOfEveryStatementSize = 39;

TEST(SqliteStoreGroupedRows, EveryRowOfALargeBatchIsWrittenWithItsOwnValuesInOrder) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.at = at_us(9);
  for (int i = 0; i < kRowsOfEveryStatementSize; ++i) {
    const std::string n = std::to_string(i);
    JournalEntry entry = make_journal("s1", JournalKind::transition, at_us(i));
    entry.message_id = "m" + n;
    entry.message_type = "type" + n;
    entry.from_state = "from" + n;
    entry.to_state = "to" + n;
    entry.detail = "detail" + n;
    batch.journal.push_back(entry);
    OutboxMessage message = make_outbox("out-" + n, "s1", at_us(i));
    message.destination = "service" + n;
    message.attempts = i;
    message.compensation = i % 2 == 1;
    batch.outbox.push_back(message);
    batch.inbox.push_back("in-" + n);
  }
  ASSERT_TRUE(store->commit(batch));

  auto journal = store->journal("s1").value();
  ASSERT_EQ(journal.size(), static_cast<std::size_t>(kRowsOfEveryStatementSize));
  auto outbox = store->outbox("s1").value();
  ASSERT_EQ(outbox.size(), static_cast<std::size_t>(kRowsOfEveryStatementSize));
  for (int i = 0; i < kRowsOfEveryStatementSize; ++i) {
    const std::string n = std::to_string(i);
    const JournalEntry& entry = journal[static_cast<std::size_t>(i)];
    EXPECT_EQ(entry.message_id, "m" + n);
    EXPECT_EQ(entry.message_type, "type" + n);
    EXPECT_EQ(entry.from_state, "from" + n);
    EXPECT_EQ(entry.to_state, "to" + n);
    EXPECT_EQ(entry.detail, "detail" + n);
    EXPECT_EQ(entry.at, at_us(i));
    if (i > 0) {
      EXPECT_LT(journal[static_cast<std::size_t>(i) - 1].sequence, entry.sequence);
    }
    const OutboxMessage& row = outbox[static_cast<std::size_t>(i)];
    EXPECT_EQ(row.message_id, "out-" + n);
    EXPECT_EQ(row.destination, "service" + n);
    EXPECT_EQ(row.payload, batch.outbox[static_cast<std::size_t>(i)].payload);
    EXPECT_EQ(row.attempts, i);
    EXPECT_EQ(row.compensation, i % 2 == 1);
    EXPECT_FALSE(row.dispatched);
    EXPECT_TRUE(store->inbox_contains("in-" + n).value()) << n;
  }
  EXPECT_FALSE(store->inbox_contains("in-" + std::to_string(kRowsOfEveryStatementSize)).value());

  WriteBatch replies;
  replies.at = at_us(500);
  for (int i = 0; i < kRowsOfEveryStatementSize; ++i)
    if (i != 20) replies.replied.push_back("out-" + std::to_string(i));
  replies.replied.push_back("out-3");  // twice in one batch, and once not in the outbox at all
  replies.replied.push_back("not-in-the-outbox");
  ASSERT_TRUE(store->commit(replies));
  for (const OutboxMessage& row : store->outbox("s1").value()) {
    if (row.message_id == "out-20") {
      EXPECT_FALSE(row.replied_at.has_value());
    } else {
      ASSERT_TRUE(row.replied_at.has_value()) << row.message_id;
      EXPECT_EQ(*row.replied_at, at_us(500)) << row.message_id;
    }
  }
}

// A row that breaks a constraint inside a statement of several rows: the error names that row,
// as a statement of one row would, and nothing of the batch is written.
TEST(SqliteStoreGroupedRows, ADuplicateInsideAGroupedStatementIsAConflictNamingItsRow) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch earlier;
  earlier.outbox = {make_outbox("out-11", "s0")};
  earlier.inbox = {"in-27"};
  ASSERT_TRUE(store->commit(earlier));

  auto batch_with = [](bool outbox_duplicate) {
    WriteBatch batch;
    batch.sagas.push_back(insert(make_saga("s1")));
    for (int i = 0; i < kRowsOfEveryStatementSize; ++i) {
      const std::string n = std::to_string(i);
      batch.journal.push_back(make_journal("s1", JournalKind::transition, at_us(i)));
      batch.outbox.push_back(make_outbox((outbox_duplicate ? "out-" : "new-") + n, "s1"));
      batch.inbox.push_back((outbox_duplicate ? "new-in-" : "in-") + n);
    }
    return batch;
  };
  StoreStatus outbox_conflict = store->commit(batch_with(true));
  ASSERT_FALSE(outbox_conflict);
  EXPECT_EQ(outbox_conflict.error->code, StoreErrorCode::conflict);
  EXPECT_EQ(outbox_conflict.error->message, "outbox already contains message out-11");

  StoreStatus inbox_conflict = store->commit(batch_with(false));
  ASSERT_FALSE(inbox_conflict);
  EXPECT_EQ(inbox_conflict.error->code, StoreErrorCode::conflict);
  EXPECT_EQ(inbox_conflict.error->message,
            "inbox already contains message in-27 (a duplicate was not filtered)");

  EXPECT_FALSE(store->load_saga("s1").value().has_value());
  EXPECT_TRUE(store->journal("s1").value().empty());
  EXPECT_TRUE(store->outbox("s1").value().empty());
  EXPECT_FALSE(store->inbox_contains("in-0").value());
  EXPECT_FALSE(store->inbox_contains("new-in-0").value());
}

TEST(SqliteStoreRead, SagasWithStatusFiltersOrdersByCreationAndHonoursLimit) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas = {insert(make_saga("late", SagaStatus::Failed, at_us(300))),
                 insert(make_saga("running", SagaStatus::Running, at_us(50))),
                 insert(make_saga("early", SagaStatus::Failed, at_us(100))),
                 insert(make_saga("middle", SagaStatus::Failed, at_us(200)))};
  ASSERT_TRUE(store->commit(batch));

  auto failed = store->sagas_with_status(SagaStatus::Failed, 10);
  ASSERT_TRUE(failed) << failed.error().message;
  std::vector<std::string> ids;
  for (const auto& saga : failed.value()) ids.push_back(saga.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"early", "middle", "late"}));

  auto limited = store->sagas_with_status(SagaStatus::Failed, 2).value();
  ASSERT_EQ(limited.size(), 2u);
  EXPECT_EQ(limited[1].id, "middle");
  expect_same_saga(make_saga("early", SagaStatus::Failed, at_us(100)), limited[0]);
  EXPECT_TRUE(store->sagas_with_status(SagaStatus::Compensated, 10).value().empty());
}

TEST(SqliteStoreRead, CountsSagasByTypeAndStatusAndDeadLettersNeitherReplayedNorDiscarded) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch batch;
  batch.sagas = {insert(make_saga("a", SagaStatus::Running)),
                 insert(make_saga("b", SagaStatus::Running)),
                 insert(make_saga("c", SagaStatus::Failed))};
  SagaRecord other = make_saga("d", SagaStatus::Running);
  other.type = "loan";
  batch.sagas.push_back(insert(other));
  for (int i = 0; i < 3; ++i) {
    DeadLetter letter;
    letter.at = at_us(i);
    letter.reason_code = "not_json";
    letter.raw = "x";
    letter.raw_size = 1;
    batch.dead_letters.push_back(letter);
  }
  ASSERT_TRUE(store->commit(batch));
  auto letters = store->dead_letters(3).value();
  WriteBatch replay_and_discard;
  replay_and_discard.replayed = {letters.at(0).id};
  replay_and_discard.discarded = {letters.at(1).id};
  ASSERT_TRUE(store->commit(replay_and_discard));

  auto counts = store->count_sagas();
  ASSERT_TRUE(counts) << counts.error().message;
  std::vector<std::tuple<std::string, SagaStatus, std::int64_t>> rows;
  for (const auto& count : counts.value()) rows.emplace_back(count.type, count.status, count.count);
  const std::string type = make_saga("x").type;
  std::vector<std::tuple<std::string, SagaStatus, std::int64_t>> expected = {
      {"loan", SagaStatus::Running, 1},
      {type, SagaStatus::Failed, 1},
      {type, SagaStatus::Running, 2}};
  std::sort(rows.begin(), rows.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(rows, expected);
  EXPECT_EQ(store->count_open_dead_letters().value(), 1);
}

// --- Failures and recovery --------------------------------------------------------------------

TEST(SqliteStoreFailure, StoreIsUsableAfterAFailedCommit) {
  auto store = open_or_fail(memory_options());
  ASSERT_TRUE(store);
  WriteBatch setup;
  setup.sagas.push_back(insert(make_saga("s1")));
  ASSERT_TRUE(store->commit(setup));

  for (int i = 0; i < 3; ++i) {
    WriteBatch failing;
    failing.journal.push_back(make_journal("s1", JournalKind::started, at_us(1)));
    failing.sagas.push_back(insert(make_saga("s1")));
    ASSERT_FALSE(store->commit(failing));
  }

  WriteBatch good;
  good.sagas.push_back(update(make_saga("s1"), 0));
  good.journal.push_back(make_journal("s1", JournalKind::transition, at_us(2)));
  good.outbox.push_back(make_outbox("m1", "s1"));
  good.inbox.push_back("in-1");
  StoreStatus status = store->commit(good);
  ASSERT_TRUE(status) << status.error->message;
  EXPECT_EQ(store->load_saga("s1").value()->row_version, 1);
  EXPECT_EQ(store->journal("s1").value().size(), 1u);
  EXPECT_EQ(store->pending_outbox(10).value().size(), 1u);
  EXPECT_TRUE(store->inbox_contains("in-1").value());
  EXPECT_TRUE(store->integrity_ok().value());
}

TEST(SqliteStoreFailure, CommitWhileAnotherConnectionHoldsTheWriteLockIsBusyAndRetrySucceeds) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  StoreOptions options = file_options(db);
  options.busy_timeout = std::chrono::milliseconds{50};
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);

  WriteBatch batch;
  batch.at = at_us(1);
  batch.sagas.push_back(insert(make_saga("s1")));
  batch.journal.push_back(make_journal("s1", JournalKind::started, at_us(1)));
  batch.inbox.push_back("in-1");

  RawDb other(db);
  other.exec("BEGIN IMMEDIATE");
  const auto started = std::chrono::steady_clock::now();
  StoreStatus status = store->commit(batch);
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error->code, StoreErrorCode::busy) << status.error->message;
  EXPECT_GE(waited, std::chrono::milliseconds{40});
  EXPECT_FALSE(store->load_saga("s1").value().has_value());  // reads still work
  other.exec("ROLLBACK");

  StoreStatus retry = store->commit(batch);
  ASSERT_TRUE(retry) << retry.error->message;
  EXPECT_TRUE(store->load_saga("s1").value().has_value());
  EXPECT_EQ(store->journal("s1").value().size(), 1u);
  EXPECT_TRUE(store->inbox_contains("in-1").value());
}

// --- Read scopes --------------------------------------------------------------------------------

// A store on a file with its writer connection captured, and a second connection that writes
// behind its back (as nothing can in production, where the store is the only writer).
struct ScopedReadsFixture {
  TempDir dir;
  std::unique_ptr<SqliteStore> store;
  sqlite3* connection = nullptr;
  std::unique_ptr<RawDb> other;

  ScopedReadsFixture() {
    StoreOptions options = file_options(dir.path() / "saga.db");
    options.exclusive_writer = false;
    {
      CaptureConnection capture;
      store = open_or_fail(options);
      connection = capture.handle();
    }
    other = std::make_unique<RawDb>(dir.path() / "saga.db");
  }
  bool in_transaction() const { return sqlite3_get_autocommit(connection) == 0; }
};

TEST(SqliteStoreReadScope, ReadsInAScopeShareOneTransactionAndOneSnapshotUntilItEnds) {
  ScopedReadsFixture f;
  ASSERT_TRUE(f.store);
  f.store->begin_reads();
  EXPECT_FALSE(f.in_transaction()) << "a scope without reads costs nothing";
  EXPECT_FALSE(f.store->inbox_contains("in-1").value());
  EXPECT_TRUE(f.in_transaction()) << "the first read begins the shared transaction";
  f.other->exec("INSERT INTO inbox (message_id, processed_at) VALUES ('in-1', 1)");
  EXPECT_FALSE(f.store->inbox_contains("in-1").value()) << "a read in the scope left its snapshot";
  EXPECT_FALSE(f.store->load_saga("s-1").value().has_value());
  f.store->end_reads();
  EXPECT_FALSE(f.in_transaction());
  EXPECT_TRUE(f.store->inbox_contains("in-1").value());
  EXPECT_FALSE(f.in_transaction()) << "outside a scope each read stands alone";
}

TEST(SqliteStoreReadScope, CommitInsideAScopeEndsItAndCommits) {
  ScopedReadsFixture f;
  ASSERT_TRUE(f.store);
  f.store->begin_reads();
  EXPECT_FALSE(f.store->inbox_contains("in-1").value());
  WriteBatch batch;
  batch.at = at_us(1);
  batch.sagas.push_back(insert(make_saga("s-1")));
  batch.inbox.push_back("in-1");
  StoreStatus status = f.store->commit(batch);
  ASSERT_TRUE(status) << status.error->message;
  EXPECT_FALSE(f.in_transaction());
  EXPECT_EQ(f.other->integer("SELECT count(*) FROM inbox WHERE message_id = 'in-1'"), 1);
  EXPECT_TRUE(f.store->inbox_contains("in-1").value());
  EXPECT_TRUE(f.store->load_saga("s-1").value().has_value());
  f.store->end_reads();  // already ended: nothing to do
  EXPECT_FALSE(f.in_transaction());
}

TEST(SqliteStoreReadScope, EndingTwiceBeginningTwiceAndClosingInsideAScopeAreHarmless) {
  ScopedReadsFixture f;
  ASSERT_TRUE(f.store);
  f.store->end_reads();
  f.store->begin_reads();
  EXPECT_FALSE(f.store->inbox_contains("in-1").value());
  f.store->begin_reads();  // ends the first scope, opens another
  EXPECT_FALSE(f.in_transaction());
  f.other->exec("INSERT INTO inbox (message_id, processed_at) VALUES ('in-1', 1)");
  EXPECT_TRUE(f.store->inbox_contains("in-1").value());
  f.store->end_reads();
  f.store->end_reads();
  f.store->begin_reads();
  EXPECT_TRUE(f.store->inbox_contains("in-1").value());
  EXPECT_TRUE(f.in_transaction());
  f.store.reset();  // closing with a scope open ends it
  EXPECT_EQ(f.other->integer("SELECT count(*) FROM inbox"), 1);
  EXPECT_EQ(f.other->integer("PRAGMA wal_checkpoint(TRUNCATE)"), 0) << "a reader was left behind";
}

// A scope's snapshot holds back a checkpoint that would rewind the WAL (SQLite keeps the frames
// a reader may still read) until the scope ends: it must end with the turn.
TEST(SqliteStoreReadScope, EndingAScopeReleasesItsSnapshotForCheckpoints) {
  ScopedReadsFixture f;
  ASSERT_TRUE(f.store);
  WriteBatch batch;  // frames in the WAL that no checkpoint has copied yet
  batch.at = at_us(1);
  batch.inbox.push_back("in-1");
  ASSERT_TRUE(f.store->commit(batch));
  f.store->begin_reads();
  EXPECT_TRUE(f.store->inbox_contains("in-1").value());
  EXPECT_EQ(f.other->integer("PRAGMA wal_checkpoint(TRUNCATE)"), 1)
      << "busy: a reader holds the WAL";
  f.store->end_reads();
  EXPECT_EQ(f.other->integer("PRAGMA wal_checkpoint(TRUNCATE)"), 0);
}

// --- Checkpoints ----------------------------------------------------------------------------

// Commits one new saga "saga-<index>" whose data carries `blob_bytes` of payload, so that each
// commit adds a known few pages to the WAL.
::testing::AssertionResult commit_saga_with_blob(SqliteStore& store, int index,
                                                 std::size_t blob_bytes) {
  WriteBatch batch;
  SagaRecord record = make_saga("saga-" + std::to_string(index));
  record.data = "{\"blob\":\"" + std::string(blob_bytes, 'x') + "\"}";
  batch.sagas.push_back({record, std::nullopt});
  if (auto status = store.commit(batch); !status)
    return ::testing::AssertionFailure() << "commit " << index << ": " << status.error->message;
  return ::testing::AssertionSuccess();
}

// The WAL is copied into the database file by the store's checkpoint thread: the file grows
// without anyone closing the store, and what was committed reads back intact.
TEST(SqliteStoreCheckpoint, BackgroundCheckpointCopiesTheWalIntoTheDatabaseFile) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.durability = Durability::normal;
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);
  const auto initial = fs::file_size(options.path);
  for (int i = 0; i < 600; ++i)  // ~16 KiB of WAL each: twice the ~4 MiB threshold
    ASSERT_TRUE(commit_saga_with_blob(*store, i, 8000));
  for (int i = 0; i < 500 && fs::file_size(options.path) < initial + 2'000'000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  EXPECT_GT(fs::file_size(options.path), initial + 2'000'000) << "no checkpoint ran";
  EXPECT_TRUE(store->integrity_ok().value());
  EXPECT_TRUE(store->load_saga("saga-599").value().has_value());
}

// Without the thread, SQLite checkpoints inside the commit that crosses the same ~4 MiB (its own
// default is 1,000 pages whatever their size: 8 MiB of the store's default 8 KiB pages).
TEST(SqliteStoreCheckpoint, WithoutTheThreadSqliteCheckpointsAtTheSameSizeInBytes) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.durability = Durability::off;
  options.background_checkpoint = false;
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);
  const fs::path wal = options.path + "-wal";
  std::uintmax_t largest = 0;
  for (int i = 0; i < 1500; ++i) {  // ~16 KiB each: ~24 MiB in all
    ASSERT_TRUE(commit_saga_with_blob(*store, i, 8000));
    if (fs::exists(wal)) largest = std::max(largest, fs::file_size(wal));
  }
  EXPECT_GT(largest, 3u * 1024 * 1024);
  EXPECT_LT(largest, 6u * 1024 * 1024) << "checkpoints at 1,000 pages of 8 KiB";
  EXPECT_EQ(store->background_checkpoints(), 0u);
}

// A writer that never pauses must not outrun the checkpoint thread for ever: each pass would end
// with new frames behind it, SQLite would never rewind the WAL, and the file would grow until the
// disk is full. The WAL's size is its high-water mark (SQLite reuses, never shrinks, the file).
TEST(SqliteStoreCheckpoint, WalStaysBoundedWhileTheWriterNeverPauses) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.durability = Durability::normal;
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);
  const fs::path wal = options.path + "-wal";
  std::uintmax_t largest = 0;
  for (int i = 0; i < 8000; ++i) {  // ~16 KiB each: ~125 MiB if the WAL never rewinds
    ASSERT_TRUE(commit_saga_with_blob(*store, i, 8000));
    if (i % 100 == 0 && fs::exists(wal)) largest = std::max(largest, fs::file_size(wal));
  }
  largest = std::max(largest, fs::file_size(wal));
  EXPECT_LT(largest, 48u * 1024 * 1024) << "the WAL kept growing: " << largest << " bytes";
  EXPECT_TRUE(store->integrity_ok().value());
  EXPECT_TRUE(store->load_saga("saga-7999").value().has_value());
}

// Past the threshold the background thread is woken once per threshold's worth of new WAL
// pages, not after every commit: a pass copies pages and fsyncs the database file, and small
// commits (a lightly loaded engine commits a few steps at a time) each paid for one.
TEST(SqliteStoreCheckpoint, SmallCommitsWakeTheCheckpointThreadOncePerThresholdOfNewPages) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.durability = Durability::full;
  options.page_size = 4096;  // the counts below are in pages of this size
  auto store = open_or_fail(options);
  ASSERT_TRUE(store);
  for (int i = 0; i < 3000; ++i)  // ~2 pages each: ~6,000 WAL pages, some 6 wakes
    ASSERT_TRUE(commit_saga_with_blob(*store, i, 3000));
  const std::uint64_t passes = store->background_checkpoints();
  EXPECT_GE(passes, 1u) << "no background checkpoint ran";
  EXPECT_LE(passes, 20u) << "the thread ran a pass for most commits past the threshold";
  EXPECT_TRUE(store->integrity_ok().value());
}

TEST(SqliteStoreBackgroundSync, WithoutTheThreadCommitSyncsAndIsDurableOnReturn) {
  TempDir dir;
  StoreOptions options = file_options(dir.path() / "saga.db");
  options.sync_in_background = false;
  auto [store, connection] = open_capturing_connection(options);
  ASSERT_TRUE(store);
  ASSERT_NE(connection, nullptr);
  EXPECT_EQ(RawDb::query_integer(connection, "PRAGMA synchronous"), 2);  // FULL
  ASSERT_TRUE(commit_saga_with_blob(*store, 1, 100));
  EXPECT_EQ(store->durable_through(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(store->background_syncs(), 0u);
}

// With the thread (the default), commit() returns once the WAL is written; an fdatasync (sync()
// here) then makes the commits durable, and numbers count the successful commits.
TEST(SqliteStoreBackgroundSync, CommitsAreNumberedAndMadeDurableByTheSyncThread) {
  TempDir dir;
  auto store = open_or_fail(file_options(dir.path() / "saga.db"));
  ASSERT_TRUE(store);
  EXPECT_EQ(store->last_commit(), 0u);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(commit_saga_with_blob(*store, i, 100));
  EXPECT_EQ(store->last_commit(), 5u);
  WriteBatch duplicate;
  duplicate.at = at_us(1);
  duplicate.sagas.push_back(insert(make_saga("saga-0")));
  EXPECT_FALSE(store->commit(duplicate));  // a failed commit takes no number
  EXPECT_EQ(store->last_commit(), 5u);
  ASSERT_TRUE(store->sync());
  EXPECT_GE(store->durable_through(), 5u);
  EXPECT_GE(store->background_syncs(), 1u);
  EXPECT_LE(store->background_syncs(), 5u);
  ASSERT_TRUE(commit_saga_with_blob(*store, 5, 100));
  EXPECT_EQ(store->last_commit(), 6u);
  ASSERT_TRUE(store->sync());
  EXPECT_EQ(store->durable_through(), 6u);
}

// One fdatasync covers every commit made before it began: a turn's worth of commits costs one.
TEST(SqliteStoreBackgroundSync, OneSyncCoversEveryCommitMadeBeforeIt) {
  TempDir dir;
  auto store = open_or_fail(file_options(dir.path() / "saga.db"));
  ASSERT_TRUE(store);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(commit_saga_with_blob(*store, i, 100));
  EXPECT_EQ(store->durable_through(), 0u);
  ASSERT_TRUE(store->sync());
  EXPECT_EQ(store->durable_through(), 300u);
  EXPECT_EQ(store->background_syncs(), 1u);
}

// begin_sync() hands the fdatasync to the store's thread: the commits become durable while the
// caller goes on, without it calling sync().
TEST(SqliteStoreBackgroundSync, BeginSyncMakesTheCommitsDurableOnTheStoresThread) {
  TempDir dir;
  auto store = open_or_fail(file_options(dir.path() / "saga.db"));
  ASSERT_TRUE(store);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(commit_saga_with_blob(*store, i, 100));
  store->begin_sync();
  for (int i = 0; i < 500 && store->durable_through() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  EXPECT_EQ(store->durable_through(), 3u);
  EXPECT_EQ(store->background_syncs(), 1u);
}

// A WAL the store cannot sync (here: deleted under the store, so what is written to it is lost
// when the store closes, whatever file takes its name) is final: sync() reports it, and every later
// commit is refused with an I/O error saying why, instead of being acknowledged and lost.
TEST(SqliteStoreBackgroundSync, AFailedSyncIsReportedAndLaterCommitsAreRefused) {
  TempDir dir;
  const fs::path db = dir.path() / "saga.db";
  auto store = open_or_fail(file_options(db));
  ASSERT_TRUE(store);
  ASSERT_TRUE(commit_saga_with_blob(*store, 0, 100));
  ASSERT_TRUE(store->sync());
  const std::uint64_t durable = store->durable_through();
  fs::remove(fs::path(db.string() + "-wal"));
  ASSERT_TRUE(commit_saga_with_blob(*store, 1, 100));
  StoreStatus synced = store->sync();
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error->code, StoreErrorCode::io_error);
  EXPECT_NE(synced.error->message.find("-wal"), std::string::npos) << synced.error->message;
  EXPECT_EQ(store->durable_through(), durable);
  WriteBatch batch;
  batch.at = at_us(3);
  batch.sagas.push_back(insert(make_saga("saga-2")));
  StoreStatus refused = store->commit(batch);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error->code, StoreErrorCode::io_error);
  EXPECT_NE(refused.error->message.find("restart"), std::string::npos) << refused.error->message;
}

// Durability::normal and in-memory databases have nothing to sync: commits count as durable at
// once, as for a store without the thread.
TEST(SqliteStoreBackgroundSync, NormalDurabilityAndMemoryDatabasesHaveNoSyncThread) {
  TempDir dir;
  StoreOptions normal = file_options(dir.path() / "saga.db");
  normal.durability = Durability::normal;
  StoreOptions memory;
  memory.path = ":memory:";
  for (const StoreOptions& options : {normal, memory}) {
    auto store = open_or_fail(options);
    ASSERT_TRUE(store);
    ASSERT_TRUE(commit_saga_with_blob(*store, 1, 100));
    EXPECT_EQ(store->durable_through(), std::numeric_limits<std::uint64_t>::max());
    EXPECT_TRUE(store->sync());
    EXPECT_EQ(store->background_syncs(), 0u);
  }
}

}  // namespace
}  // namespace saga
