// Restarts on a database file: a clean close, an abandoned process, a held write lock, and a
// second engine on the same file.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;

order::OrderData an_order() {
  return {"order-1", "customer-1", "1 Main St", {{"sku-1", 1, 100}}};
}

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory = std::filesystem::temp_directory_path() /
                ("saga-restart-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory);
    std::filesystem::create_directories(directory);
    options.store.path = (directory / "saga.db").string();
    options.idle_wait = 0ms;
  }
  void TearDown() override { std::filesystem::remove_all(directory); }

  struct Running {
    std::unique_ptr<saga::SqliteStore> store;
    std::unique_ptr<saga::Engine> engine;
  };

  Running open() {
    Running running;
    auto opened = saga::SqliteStore::open(options.store);
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().message);
    running.store = std::move(opened.value());
    running.engine = std::make_unique<saga::Engine>(options, *running.store, transport, clock);
    running.engine->register_saga<order::OrderSaga>();
    return running;
  }

  saga::SagaRecord row(saga::Store& store, const std::string& id) {
    return store.load_saga(id).value().value();
  }

  std::filesystem::path directory;
  saga::Options options;
  saga::MemoryTransport transport;
  saga::ManualClock clock;
};

TEST_F(RestartTest, SagaContinuesFromItsPersistedStateAfterACleanClose) {
  std::string id;
  saga::Envelope charge;
  {
    Running first = open();
    id = first.engine->start<order::OrderSaga>(an_order());
    first.engine->run_once();
    auto reserve = take_commands(transport).at(0);
    transport.deliver(
        reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
    first.engine->run_once();
    charge = take_commands(transport).at(0).envelope;
    first.engine->run_once();
  }
  Running second = open();
  EXPECT_EQ(row(*second.store, id).state, "awaiting:payment.Charge");
  second.engine->run_once();
  auto again = take_commands(transport);  // sent once before the restart, so sent again
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].envelope.event_id, charge.event_id);
  transport.deliver(reply_bytes(charge, "payment.Charged", {{"payment_id", "p"}}));
  second.engine->run_once();
  auto ship = take_commands(transport);
  ASSERT_EQ(ship.size(), 1u);
  EXPECT_EQ(ship[0].envelope.event_type, "shipping.Ship");
  transport.deliver(reply_bytes(ship[0].envelope, "shipping.Shipped", {{"tracking_number", "t"}}));
  second.engine->run_once();
  EXPECT_EQ(row(*second.store, id).status, saga::SagaStatus::Completed);
  EXPECT_TRUE(second.store->integrity_ok().value());
}

TEST_F(RestartTest, AbandonedProcessLosesNothingAndPendingCommandsAreSentAgain) {
  // The child commits a saga, hands its command to the transport (which the store does not
  // record) and dies: no destructor, no checkpoint, no clean close.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Running running = open();
    std::string id = running.engine->start<order::OrderSaga>(an_order());
    running.engine->run_once();
    bool sent = transport.take_sent().size() == 1;
    ::_exit(sent ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);

  Running restarted = open();
  auto running_sagas = restarted.store->sagas_with_status(saga::SagaStatus::Running, 10).value();
  ASSERT_EQ(running_sagas.size(), 1u);
  EXPECT_EQ(running_sagas[0].state, "awaiting:inventory.Reserve");
  restarted.engine->run_once();
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0].envelope.event_type, "inventory.Reserve");
  EXPECT_EQ(resent[0].envelope.correlation_id, running_sagas[0].id);

  // And the saga goes on from there.
  transport.deliver(
      reply_bytes(resent[0].envelope, "inventory.OutOfStock", {{"sku", "sku-1"}, {"reason", ""}}));
  restarted.engine->run_once();
  EXPECT_EQ(row(*restarted.store, running_sagas[0].id).status, saga::SagaStatus::Compensated);
}

TEST_F(RestartTest, FailedCommitSendsNothingAndTheTurnIsRetried) {
  options.store.busy_timeout = 20ms;
  options.commit_backoff = 1ms;
  Running running = open();

  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(options.store.path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  std::string id = running.engine->start<order::OrderSaga>(an_order());
  running.engine->run_once();
  EXPECT_EQ(running.engine->stats().commit_failures, 1u);
  EXPECT_TRUE(transport.take_sent().empty()) << "a command was sent before its commit";

  ASSERT_EQ(sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  running.engine->run_once();
  auto sent = take_commands(transport);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].envelope.correlation_id, id);
  EXPECT_EQ(row(*running.store, id).state, "awaiting:inventory.Reserve");
  EXPECT_EQ(running.engine->stats().sagas_started, 1u);
}

TEST_F(RestartTest, ReplyDuringAFailedCommitIsAppliedOnceAfterRetry) {
  options.store.busy_timeout = 20ms;
  options.commit_backoff = 1ms;
  Running running = open();
  std::string id = running.engine->start<order::OrderSaga>(an_order());
  running.engine->run_once();
  auto reserve = take_commands(transport).at(0);
  running.engine->run_once();

  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(options.store.path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  transport.deliver(reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  running.engine->run_once();
  EXPECT_TRUE(transport.take_sent().empty());
  ASSERT_EQ(sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);

  running.engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
  EXPECT_EQ(row(*running.store, id).state, "awaiting:payment.Charge");
  EXPECT_EQ(row(*running.store, id).row_version, 1);
}

TEST_F(RestartTest, SecondWriterOnTheSameDatabaseIsRefused) {
  Running first = open();
  auto second = saga::SqliteStore::open(options.store);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, saga::StoreErrorCode::busy);
  EXPECT_NE(second.error().message.find("already open for writing"), std::string::npos);
}

}  // namespace
