// The participant's idempotent-consumer ledger on SQLite: the handler's writes and the
// "processed" record commit together, and a duplicate gets the first reply back.
#include "saga/sqlite_participant_ledger.hpp"
#include "saga/sqlite_tuning.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

namespace {

std::unique_ptr<saga::SqliteParticipantLedger> open_ledger() {
  saga::StoreOptions options;
  options.path = ":memory:";
  auto ledger = std::move(saga::SqliteParticipantLedger::open(options).value());
  sqlite3_exec(ledger->connection(), "CREATE TABLE stock (sku TEXT PRIMARY KEY, units INTEGER)",
               nullptr, nullptr, nullptr);
  sqlite3_exec(ledger->connection(), "INSERT INTO stock VALUES ('pen', 10)", nullptr, nullptr,
               nullptr);
  return ledger;
}

int units(sqlite3* db) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, "SELECT units FROM stock WHERE sku = 'pen'", -1, &statement, nullptr);
  sqlite3_step(statement);
  int value = sqlite3_column_int(statement, 0);
  sqlite3_finalize(statement);
  return value;
}

std::string take_one(saga::ParticipantLedger::Unit& unit) {
  sqlite3_exec(saga::sqlite_connection(unit), "UPDATE stock SET units = units - 1", nullptr,
               nullptr, nullptr);
  return "reply-" + std::to_string(units(saga::sqlite_connection(unit)));
}

TEST(SqliteParticipantLedger, FirstDeliveryRunsTheHandlerAndCommitsItsWrites) {
  auto ledger = open_ledger();
  auto result = ledger->process_once("cmd-1", take_one);
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result.value().duplicate);
  EXPECT_EQ(result.value().reply, "reply-9");
  EXPECT_EQ(units(ledger->connection()), 9);
}

TEST(SqliteParticipantLedger, DuplicateGetsTheFirstReplyAndTheHandlerDoesNotRun) {
  auto ledger = open_ledger();
  ASSERT_TRUE(ledger->process_once("cmd-1", take_one).ok());
  int calls = 0;
  auto again = ledger->process_once("cmd-1", [&](saga::ParticipantLedger::Unit& unit) {
    ++calls;
    return take_one(unit);
  });
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.value().duplicate);
  EXPECT_EQ(again.value().reply, "reply-9");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(units(ledger->connection()), 9);
}

TEST(SqliteParticipantLedger, CommandRecordedCompensatedNeverRunsAndComesBackWithAnEmptyReply) {
  auto ledger = open_ledger();
  auto refund = ledger->process_once("refund-1", [&](saga::ParticipantLedger::Unit& unit) {
    ledger->record_compensated(unit, "charge-1");
    return std::string("refunded");
  });
  ASSERT_TRUE(refund.ok());
  int calls = 0;
  auto late = ledger->process_once("charge-1", [&](saga::ParticipantLedger::Unit& unit) {
    ++calls;
    return take_one(unit);
  });
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE(late.value().duplicate);
  EXPECT_EQ(late.value().reply, "");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(units(ledger->connection()), 10);
  EXPECT_EQ(ledger->recorded_reply("charge-1").value(), std::optional<std::string>(""));
}

TEST(SqliteParticipantLedger, RecordingAHandledCommandCompensatedKeepsItsReply) {
  auto ledger = open_ledger();
  ASSERT_TRUE(ledger->process_once("charge-1", take_one).ok());
  ASSERT_TRUE(ledger
                  ->process_once("refund-1",
                                 [&](saga::ParticipantLedger::Unit& unit) {
                                   ledger->record_compensated(unit, "charge-1");
                                   return std::string("refunded");
                                 })
                  .ok());
  EXPECT_EQ(ledger->recorded_reply("charge-1").value(), std::optional<std::string>("reply-9"));
}

TEST(SqliteParticipantLedger, ACompensationThatCannotBeRecordedIsAStorageErrorNotAHandlerError) {
  auto ledger = open_ledger();
  ASSERT_EQ(
      sqlite3_exec(ledger->connection(),
                   "CREATE TRIGGER refuse BEFORE INSERT ON saga_processed_commands "
                   "WHEN NEW.command_id = 'charge-1' BEGIN SELECT RAISE(ABORT, 'disk says no'); "
                   "END",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  auto compensate = [&](saga::ParticipantLedger::Unit& unit) {
    take_one(unit);
    ledger->record_compensated(unit, "charge-1");
    return std::string("refunded");
  };
  auto once = ledger->process_once("refund-1", compensate);
  ASSERT_FALSE(once.ok());
  EXPECT_NE(once.error().message.find("disk says no"), std::string::npos) << once.error().message;
  auto batch = ledger->process_batch(
      {"refund-1"},
      [&](std::size_t, saga::ParticipantLedger::Unit& unit) { return compensate(unit); });
  ASSERT_FALSE(batch.ok()) << "reported as the handler's failure";
  EXPECT_EQ(units(ledger->connection()), 10);
  EXPECT_FALSE(ledger->recorded_reply("refund-1").value());
}

TEST(SqliteParticipantLedger, ThrowingHandlerRollsBackItsWritesAndCanRunAgain) {
  auto ledger = open_ledger();
  EXPECT_THROW(ledger->process_once("cmd-1",
                                    [](saga::ParticipantLedger::Unit& unit) -> std::string {
                                      take_one(unit);
                                      throw std::runtime_error("payment gateway down");
                                    }),
               std::runtime_error);
  EXPECT_EQ(units(ledger->connection()), 10) << "the failed attempt's write was not rolled back";
  auto retry = ledger->process_once("cmd-1", take_one);
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry.value().duplicate);
  EXPECT_EQ(units(ledger->connection()), 9);
}

TEST(SqliteParticipantLedger, LedgerOnAFileRemembersAcrossReopen) {
  std::string path = ::testing::TempDir() + "ledger-" + std::to_string(::getpid()) + ".db";
  std::remove(path.c_str());
  saga::StoreOptions options;
  options.path = path;
  {
    auto ledger = std::move(saga::SqliteParticipantLedger::open(options).value());
    ASSERT_TRUE(
        ledger->process_once("cmd-1", [](saga::ParticipantLedger::Unit&) { return "first"; }).ok());
  }
  auto reopened = std::move(saga::SqliteParticipantLedger::open(options).value());
  auto result =
      reopened->process_once("cmd-1", [](saga::ParticipantLedger::Unit&) { return "second"; });
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.value().duplicate);
  EXPECT_EQ(result.value().reply, "first");
  reopened.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
}

// ---- group commit: process_batch ---------------------------------------------------------

using Kind = saga::ParticipantLedger::Outcome::Kind;

int commit_count = 0;
int count_commit(void*) {
  ++commit_count;
  return 0;  // 0: let the commit proceed
}

TEST(SqliteParticipantLedgerBatch, AllCommandsOfABatchCommitInOneTransaction) {
  auto ledger = open_ledger();
  commit_count = 0;
  sqlite3_commit_hook(ledger->connection(), count_commit, nullptr);
  auto outcomes = ledger->process_batch(
      {"cmd-1", "cmd-2", "cmd-3", "cmd-4"},
      [](std::size_t, saga::ParticipantLedger::Unit& unit) { return take_one(unit); });
  sqlite3_commit_hook(ledger->connection(), nullptr, nullptr);
  ASSERT_TRUE(outcomes.ok()) << outcomes.error().message;
  ASSERT_EQ(outcomes.value().size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(outcomes.value()[i].kind, Kind::handled);
    EXPECT_EQ(outcomes.value()[i].reply, "reply-" + std::to_string(9 - static_cast<int>(i)));
  }
  EXPECT_EQ(commit_count, 1);
  EXPECT_EQ(units(ledger->connection()), 6);
  auto again = ledger->process_once("cmd-3", take_one);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.value().duplicate);
  EXPECT_EQ(again.value().reply, "reply-7");
}

TEST(SqliteParticipantLedgerBatch, ThrowingCommandUndoesOnlyItsOwnWritesAndIsNotRecorded) {
  auto ledger = open_ledger();
  auto outcomes = ledger->process_batch(
      {"cmd-1", "cmd-2", "cmd-3"},
      [](std::size_t index, saga::ParticipantLedger::Unit& unit) -> std::string {
        std::string reply = take_one(unit);
        if (index == 1) throw std::runtime_error("warehouse offline");
        return reply;
      });
  ASSERT_TRUE(outcomes.ok()) << outcomes.error().message;
  EXPECT_EQ(outcomes.value()[0].kind, Kind::handled);
  EXPECT_EQ(outcomes.value()[1].kind, Kind::failed);
  EXPECT_EQ(outcomes.value()[1].error, "warehouse offline");
  EXPECT_EQ(outcomes.value()[2].kind, Kind::handled);
  EXPECT_EQ(outcomes.value()[2].reply, "reply-8") << "the failed command's write was not undone";
  EXPECT_EQ(units(ledger->connection()), 8);
  int calls = 0;
  auto retry = ledger->process_once("cmd-2", [&](saga::ParticipantLedger::Unit& unit) {
    ++calls;
    return take_one(unit);
  });
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry.value().duplicate) << "a failed command must not be recorded as handled";
  EXPECT_EQ(calls, 1);
}

TEST(SqliteParticipantLedgerBatch, RecordedAndRepeatedIdsGetTheirFirstReplyWithoutRunningAgain) {
  auto ledger = open_ledger();
  ASSERT_TRUE(ledger->process_once("cmd-1", take_one).ok());
  int calls = 0;
  auto outcomes = ledger->process_batch({"cmd-1", "cmd-2", "cmd-2"},
                                        [&](std::size_t, saga::ParticipantLedger::Unit& unit) {
                                          ++calls;
                                          return take_one(unit);
                                        });
  ASSERT_TRUE(outcomes.ok()) << outcomes.error().message;
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(outcomes.value()[0].kind, Kind::duplicate);
  EXPECT_EQ(outcomes.value()[0].reply, "reply-9");
  EXPECT_EQ(outcomes.value()[1].kind, Kind::handled);
  EXPECT_EQ(outcomes.value()[1].reply, "reply-8");
  EXPECT_EQ(outcomes.value()[2].kind, Kind::duplicate);
  EXPECT_EQ(outcomes.value()[2].reply, "reply-8");
  EXPECT_EQ(units(ledger->connection()), 8);
}

TEST(SqliteParticipantLedgerBatch, StorageErrorCommitsNothingOfTheBatch) {
  auto ledger = open_ledger();
  ASSERT_EQ(
      sqlite3_exec(ledger->connection(),
                   "CREATE TRIGGER refuse BEFORE INSERT ON saga_processed_commands "
                   "WHEN NEW.command_id = 'cmd-3' BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  auto outcomes = ledger->process_batch(
      {"cmd-1", "cmd-2", "cmd-3"},
      [](std::size_t, saga::ParticipantLedger::Unit& unit) { return take_one(unit); });
  ASSERT_FALSE(outcomes.ok());
  EXPECT_NE(outcomes.error().message.find("disk says no"), std::string::npos)
      << outcomes.error().message;
  EXPECT_EQ(units(ledger->connection()), 10);
  auto first = ledger->process_once("cmd-1", take_one);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first.value().duplicate) << "an earlier command of the failed batch was committed";
}

// Storage failing under a handler's own statements is the ledger's storage error, not the
// handler's failure: nothing of the batch is committed, whether the handler said so
// (saga::StorageFailure) or SQLite ended the transaction itself and the handler went on.
TEST(SqliteParticipantLedgerBatch, StorageFailureInAHandlerCommitsNothingOfTheBatch) {
  for (bool rolled_back : {false, true}) {
    SCOPED_TRACE(rolled_back ? "transaction rolled back under the handler" : "StorageFailure");
    auto ledger = open_ledger();
    auto outcomes = ledger->process_batch(
        {"cmd-1", "cmd-2", "cmd-3"},
        [&](std::size_t index, saga::ParticipantLedger::Unit& unit) -> std::string {
          std::string reply = take_one(unit);
          if (index == 1 && !rolled_back)
            throw saga::StorageFailure("database or disk is full", saga::StoreErrorCode::busy);
          if (index == 1)
            sqlite3_exec(saga::sqlite_connection(unit), "ROLLBACK", nullptr, nullptr, nullptr);
          return reply;
        });
    ASSERT_FALSE(outcomes.ok());
    EXPECT_EQ(outcomes.error().code,
              rolled_back ? saga::StoreErrorCode::io_error : saga::StoreErrorCode::busy);
    EXPECT_EQ(units(ledger->connection()), 10);
    for (const char* id : {"cmd-1", "cmd-2"})
      EXPECT_FALSE(ledger->recorded_reply(id).value()) << id;
    auto once = ledger->process_once("cmd-2", [&](saga::ParticipantLedger::Unit& unit) {
      take_one(unit);
      if (!rolled_back) throw saga::StorageFailure("still full");
      sqlite3_exec(saga::sqlite_connection(unit), "ROLLBACK", nullptr, nullptr, nullptr);
      return std::string("reply");
    });
    ASSERT_FALSE(once.ok()) << "process_once: a storage error as well";
    EXPECT_EQ(units(ledger->connection()), 10);
    EXPECT_FALSE(ledger->recorded_reply("cmd-2").value());
  }
}

// A ledger with only process_once: the interface's default process_batch.
class OneByOneLedger final : public saga::ParticipantLedger {
 public:
  saga::StoreResult<Result> process_once(const std::string& command_id,
                                         const std::function<std::string(Unit&)>& work) override {
    ++transactions;
    if (auto found = replies.find(command_id); found != replies.end())
      return Result{true, found->second};
    Unit unit;
    std::string reply = work(unit);
    replies.emplace(command_id, reply);
    return Result{false, reply};
  }
  saga::StoreResult<std::optional<std::string>> recorded_reply(
      const std::string& command_id) override {
    auto found = replies.find(command_id);
    return found == replies.end() ? std::nullopt : std::optional<std::string>(found->second);
  }
  void record_compensated(Unit&, const std::string& command_id) override {
    replies.emplace(command_id, "");
  }
  std::map<std::string, std::string> replies;
  int transactions = 0;
};

// ---- savepoint journals: saga::keep_sqlite_statement_journals_in_memory -------------------

// Files SQLite opens for sub-journals (the savepoint and statement journals that outgrew memory),
// counted by a VFS over the default one.
sqlite3_vfs* default_vfs = nullptr;
sqlite3_vfs counting_vfs{};
int subjournal_files = 0;
int open_counting_subjournals(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags,
                              int* out_flags) {
  if (flags & SQLITE_OPEN_SUBJOURNAL) ++subjournal_files;
  return default_vfs->xOpen(default_vfs, name, file, flags, out_flags);
}

// A batch of three commands on a ledger file, the second changing every page of a 200-row table
// (about 50 pages of 4 KiB, 200 KiB of savepoint journal): returns the sub-journal files SQLite
// opened for it, or 100 and more when the set-up failed. Runs in a process of its own, as the
// setting must come before SQLite's first use.
int subjournal_files_of_a_batch_with_one_large_command(bool journals_in_memory) {
  if (journals_in_memory && !saga::keep_sqlite_statement_journals_in_memory()) return 100;
  default_vfs = sqlite3_vfs_find(nullptr);
  counting_vfs = *default_vfs;
  counting_vfs.zName = "counting-subjournals";
  counting_vfs.xOpen = open_counting_subjournals;
  if (sqlite3_vfs_register(&counting_vfs, 1) != SQLITE_OK) return 101;
  struct ScratchFile {
    const std::string path =
        ::testing::TempDir() + "ledger-journal-" + std::to_string(::getpid()) + ".db";
    ScratchFile() { remove(); }
    ~ScratchFile() { remove(); }
    void remove() const {
      for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    }
  } scratch;
  const std::string& path = scratch.path;
  saga::StoreOptions options;
  options.path = path;
  options.durability = saga::Durability::off;
  auto opened = saga::SqliteParticipantLedger::open(options);
  if (!opened) return 102;
  auto ledger = std::move(opened.value());
  sqlite3* db = ledger->connection();
  if (sqlite3_exec(db,
                   "CREATE TABLE wide (id INTEGER PRIMARY KEY, n INTEGER, filler TEXT);"
                   "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 200) "
                   "INSERT INTO wide SELECT i, 0, printf('%.1000c', 'x') FROM k",
                   nullptr, nullptr, nullptr) != SQLITE_OK)
    return 103;
  auto outcomes = ledger->process_batch(
      {"cmd-1", "cmd-2", "cmd-3"}, [](std::size_t index, saga::ParticipantLedger::Unit& unit) {
        const char* sql =
            index == 1 ? "UPDATE wide SET n = n + 1" : "UPDATE wide SET n = n + 1 WHERE id = 1";
        if (sqlite3_exec(saga::sqlite_connection(unit), sql, nullptr, nullptr, nullptr) !=
            SQLITE_OK)
          throw std::runtime_error("update failed");
        return std::string("done");
      });
  if (!outcomes || outcomes.value()[1].kind != Kind::handled) return 104;
  return subjournal_files;
}

// Without the setting, SQLite's 64 KiB is exceeded and the journal moves to a temporary file:
// the scenario the next test relies on.
TEST(SqliteTuning, ByDefaultACommandJournalingMoreThan64KiBMovesItsBatchsJournalToAFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(subjournal_files_of_a_batch_with_one_large_command(false)),
              ::testing::ExitedWithCode(1), "");
}

TEST(SqliteTuning, StatementJournalsKeptInMemoryOpenNoFileForTheSameBatch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(subjournal_files_of_a_batch_with_one_large_command(true)),
              ::testing::ExitedWithCode(0), "");
}

TEST(SqliteTuning, StatementJournalSettingIsRefusedOnceSqliteIsInUse) {
  auto ledger = open_ledger();
  EXPECT_FALSE(saga::keep_sqlite_statement_journals_in_memory());
}

TEST(ParticipantLedgerDefaultBatch, HandlesEachCommandInTurnAndReportsAThrowAsFailed) {
  OneByOneLedger ledger;
  auto outcomes = ledger.process_batch(
      {"a", "b", "a"}, [](std::size_t index, saga::ParticipantLedger::Unit&) -> std::string {
        if (index == 1) throw std::runtime_error("nope");
        return "reply-" + std::to_string(index);
      });
  ASSERT_TRUE(outcomes.ok());
  EXPECT_EQ(ledger.transactions, 3);
  EXPECT_EQ(outcomes.value()[0].kind, Kind::handled);
  EXPECT_EQ(outcomes.value()[1].kind, Kind::failed);
  EXPECT_EQ(outcomes.value()[1].error, "nope");
  EXPECT_EQ(outcomes.value()[2].kind, Kind::duplicate);
  EXPECT_EQ(outcomes.value()[2].reply, "reply-0");
  EXPECT_EQ(ledger.replies.count("b"), 0u);
}

}  // namespace
