// The participant's idempotent-consumer ledger on SQLite: the handler's writes and the
// "processed" record commit together, and a duplicate gets the first reply back.
#include "saga/sqlite_participant_ledger.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <unistd.h>

#include <cstdio>
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

}  // namespace
