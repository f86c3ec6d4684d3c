// Operator requests queued in the store by another process (sagactl) are applied by the running
// engine, each answered in the commit that applies it, exactly once.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/diagram.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;
namespace fs = std::filesystem;

struct Answer {
  bool done = false;
  bool ok = false;
  std::string result;
};

// A second connection to the database, as sagactl has.
class ToolConnection {
 public:
  explicit ToolConnection(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~ToolConnection() { sqlite3_close(db_); }

  std::int64_t request(const std::string& action, const std::string& target,
                       const std::string& status = "", const std::string& note = "") {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_,
                       "INSERT INTO operator_requests (requested_at, action, target, status, note,"
                       " requested_by) VALUES (0, ?1, ?2, ?3, ?4, 'test')",
                       -1, &stmt, nullptr);
    sqlite3_bind_text(stmt, 1, action.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, target.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, status.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 4, note.c_str(), -1, SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
    return sqlite3_last_insert_rowid(db_);
  }

  std::string text(const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW)
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return value;
  }

  Answer answer(std::int64_t id) {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_,
                       "SELECT done_at IS NOT NULL, ok, result FROM operator_requests "
                       "WHERE id = ?1",
                       -1, &stmt, nullptr);
    sqlite3_bind_int64(stmt, 1, id);
    Answer answer;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      answer.done = sqlite3_column_int(stmt, 0) != 0;
      answer.ok = sqlite3_column_int(stmt, 1) != 0;
      answer.result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
    }
    sqlite3_finalize(stmt);
    return answer;
  }

 private:
  sqlite3* db_ = nullptr;
};

class OperatorRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "operator_requests.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory = pattern;
    options.store.path = (directory / "saga.db").string();
    options.idle_wait = 0ms;
    options.command_retry = {10s, 1.0, 10s, 0.0, 3};
    options.compensation_retry = {10s, 1.0, 10s, 0.0, 2};
    options.operator_poll_interval = 1s;
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
    tool = std::make_unique<ToolConnection>(options.store.path);
  }
  void TearDown() override {
    tool.reset();
    engine.reset();
    store.reset();
    fs::remove_all(directory);
  }

  // A declined payment whose compensation is never acknowledged: parked as Failed.
  std::string parked_saga() {
    std::string id = engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
    engine->run_once();
    auto reserve = take_commands(transport).at(0);
    transport.deliver(
        reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
    engine->run_once();
    auto charge = take_commands(transport).at(0);
    transport.deliver(reply_bytes(charge.envelope, "payment.Declined", {{"reason", "no"}}));
    engine->run_once();
    for (int i = 0; i < 3; ++i) {
      clock.advance(11s);
      engine->run_once();
    }
    take_commands(transport);
    EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);
    return id;
  }

  // Lets the engine see the table again and apply what it finds.
  void next_poll() {
    clock.advance(1s);
    engine->run_once();
  }

  fs::path directory;
  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::unique_ptr<ToolConnection> tool;
};

TEST_F(OperatorRequestsTest, QueuedRetryIsAppliedByTheRunningEngineAndAnswered) {
  std::string id = parked_saga();
  auto request = tool->request("retry", id);
  EXPECT_FALSE(tool->answer(request).done);
  next_poll();
  Answer answer = tool->answer(request);
  EXPECT_TRUE(answer.done);
  EXPECT_TRUE(answer.ok) << answer.result;
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
  EXPECT_EQ(take_commands(transport).size(), 1u) << "the release is sent again";
}

TEST_F(OperatorRequestsTest, QueuedResolveClosesTheSagaAndASecondOneIsRefused) {
  std::string id = parked_saga();
  auto first = tool->request("resolve", id, "Compensated", "released by hand");
  auto second = tool->request("resolve", id, "Completed", "again");
  next_poll();
  EXPECT_TRUE(tool->answer(first).ok) << tool->answer(first).result;
  Answer refused = tool->answer(second);
  EXPECT_TRUE(refused.done);
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.result.find("not Failed"), std::string::npos) << refused.result;
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
}

TEST_F(OperatorRequestsTest, DiscardedDeadLetterCannotBeReplayedAndIsDiscardedOnce) {
  transport.deliver("not json at all");
  engine->run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  std::string letter = std::to_string(letters[0].id);
  auto discard = tool->request("discard_dead_letter", letter);
  auto replay = tool->request("replay_dead_letter", letter);
  auto discard_again = tool->request("discard_dead_letter", letter);
  next_poll();
  EXPECT_TRUE(tool->answer(discard).ok) << tool->answer(discard).result;
  EXPECT_FALSE(tool->answer(replay).ok);
  EXPECT_NE(tool->answer(replay).result.find("discarded"), std::string::npos);
  EXPECT_FALSE(tool->answer(discard_again).ok);
  EXPECT_TRUE(store->dead_letter(letters[0].id).value()->discarded_at.has_value());
  EXPECT_FALSE(store->dead_letter(letters[0].id).value()->replayed_at.has_value());
}

TEST_F(OperatorRequestsTest, MalformedRequestsAreRefusedWithAReasonAndDoNotBlockOthers) {
  std::string id = parked_saga();
  auto unknown = tool->request("explode", id);
  auto bad_status = tool->request("resolve", id, "Sideways");
  auto bad_letter = tool->request("replay_dead_letter", "twelve");
  auto missing = tool->request("retry", "no-such-saga");
  auto good = tool->request("resolve", id, "Completed", "fixed by hand");
  next_poll();
  EXPECT_NE(tool->answer(unknown).result.find("unknown operator action"), std::string::npos);
  EXPECT_NE(tool->answer(bad_status).result.find("Sideways"), std::string::npos);
  EXPECT_NE(tool->answer(bad_letter).result.find("not a dead-letter id"), std::string::npos);
  EXPECT_NE(tool->answer(missing).result.find("no saga"), std::string::npos);
  for (auto request : {unknown, bad_status, bad_letter, missing}) {
    EXPECT_TRUE(tool->answer(request).done);
    EXPECT_FALSE(tool->answer(request).ok);
  }
  EXPECT_TRUE(tool->answer(good).ok);
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
}

TEST_F(OperatorRequestsTest, RequestsQueuedWhileNoEngineRunsAreAppliedAtTheNextStart) {
  std::string id = parked_saga();
  engine.reset();
  store.reset();
  auto request = tool->request("resolve", id, "Compensated", "while it was down");
  store = std::move(saga::SqliteStore::open(options.store).value());
  engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
  engine->register_saga<order::OrderSaga>();
  engine->run_once();
  EXPECT_TRUE(tool->answer(request).ok) << tool->answer(request).result;
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
}

TEST_F(OperatorRequestsTest, TheTableIsReadOncePerPollInterval) {
  std::string id = parked_saga();
  next_poll();
  auto request = tool->request("resolve", id, "Compensated", "x");
  engine->run_once();  // same instant: not polled again yet
  EXPECT_FALSE(tool->answer(request).done);
  next_poll();
  EXPECT_TRUE(tool->answer(request).done);
}

TEST_F(OperatorRequestsTest, RegisteredDefinitionsAreRecordedForToolsToDraw) {
  engine->run_once();
  std::string stored = tool->text("SELECT graph FROM saga_definitions WHERE type = 'order'");
  ASSERT_FALSE(stored.empty());
  saga::Graph graph = nlohmann::json::parse(stored).get<saga::Graph>();
  EXPECT_EQ(saga::to_dot(graph), saga::to_dot(saga::make_saga_type<order::OrderSaga>()->graph()));
}

}  // namespace
