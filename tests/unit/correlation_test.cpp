// A request's correlation id given at saga start travels with every command and event of the
// saga; replies are routed to their saga by causationId and must carry the same correlation id.
#include <gtest/gtest.h>

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

class CorrelationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }

  std::string start(std::string_view correlation_id) {
    return engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}},
                                           correlation_id);
  }

  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

TEST_F(CorrelationTest, RequestCorrelationIdIsCarriedThroughEveryCommandReplyAndEvent) {
  std::string id = start("request-42");
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->correlation_id, "request-42");
  const std::pair<const char*, nlohmann::json> replies[] = {
      {"inventory.Reserved", {{"reservation_id", "r-1"}}},
      {"payment.Charged", {{"payment_id", "p-1"}}},
      {"shipping.Shipped", {{"tracking_number", "t-1"}}}};
  for (const auto& [type, data] : replies) {
    auto commands = take_commands(transport);
    ASSERT_EQ(commands.size(), 1u);
    EXPECT_EQ(commands[0].envelope.correlation_id, "request-42");
    transport.deliver(reply_bytes(commands[0].envelope, type, data));
    engine->run_once();
  }
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
  auto events = transport.take_events();
  ASSERT_GE(events.size(), 4u);
  for (const auto& event : events) {
    auto decoded = std::get<saga::Envelope>(saga::decode_envelope(event.bytes));
    EXPECT_EQ(decoded.correlation_id, "request-42") << decoded.event_type;
    EXPECT_EQ(decoded.data.at("sagaId"), id);
  }
}

TEST_F(CorrelationTest, TwoSagasOfOneRequestShareItsCorrelationIdAndEachGetsItsOwnReplies) {
  std::string first = start("request-7");
  std::string second = start("request-7");
  engine->run_once();
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 2u);
  // Answer only the second saga's reservation: routing must not mix them up.
  const std::string second_reserve = store->outbox(second).value().at(0).message_id;
  const auto& second_command =
      commands[0].envelope.event_id == second_reserve ? commands[0] : commands[1];
  ASSERT_EQ(second_command.envelope.event_id, second_reserve);
  transport.deliver(
      reply_bytes(second_command.envelope, "inventory.Reserved", {{"reservation_id", "r-2"}}));
  engine->run_once();
  EXPECT_EQ(store->load_saga(first).value()->state, "awaiting:inventory.Reserve");
  EXPECT_EQ(store->load_saga(second).value()->state, "awaiting:payment.Charge");
}

TEST_F(CorrelationTest, ReplyWithAnotherCorrelationIdIsDeadLetteredAndChangesNothing) {
  std::string id = start("request-9");
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  saga::Envelope forged = reserve.envelope;
  forged.correlation_id = "someone-else";
  transport.deliver(reply_bytes(forged, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "correlation_mismatch");
  EXPECT_EQ(letters[0].saga_id, id);
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:inventory.Reserve");
}

TEST_F(CorrelationTest, WithoutARequestIdTheCorrelationIdIsTheSagaId) {
  std::string id = start("");
  engine->run_once();
  EXPECT_EQ(take_commands(transport).at(0).envelope.correlation_id, id);
  EXPECT_EQ(store->load_saga(id).value()->correlation_id, id);
}

}  // namespace
