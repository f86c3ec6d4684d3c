// Delivery over an unreliable network: commands awaiting replies are re-sent after their
// timeout (on simulated time), replies stop that, and it all survives a restart. Lifecycle
// events are published after each commit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;

class EngineDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    options.command_timeout = 10s;
    options.command_timeout_backoff = 2.0;
    options.max_command_timeout = 30s;
    store = std::move(saga::SqliteStore::open(options.store).value());
    make_engine();
  }

  void make_engine() {
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }

  std::string start() {
    return engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  }

  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

TEST_F(EngineDeliveryTest, CommandWithoutReplyIsResentUnchangedAfterTimeoutWithBackoff) {
  std::string id = start();
  engine->run_once();
  auto first = take_commands(transport);
  ASSERT_EQ(first.size(), 1u);

  clock.advance(9s);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "re-sent before the timeout";
  clock.advance(2s);
  engine->run_once();
  auto second = take_commands(transport);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].bytes, first[0].bytes) << "a re-send must keep the eventId";

  clock.advance(19s);  // the second wait is twice as long
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  clock.advance(2s);
  engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
  for (int i = 0; i < 3; ++i) {  // capped at max_command_timeout
    clock.advance(31s);
    engine->run_once();
    EXPECT_EQ(take_commands(transport).size(), 1u);
  }
  engine->run_once();
  EXPECT_EQ(store->outbox(id).value()[0].attempts, 6);
  EXPECT_EQ(engine->stats().command_resends, 5u);
}

TEST_F(EngineDeliveryTest, AppliedReplyStopsTheResends) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  take_commands(transport);  // payment.Charge
  engine->run_once();
  auto rows = store->outbox(id).value();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[0].replied_at.has_value());
  EXPECT_FALSE(rows[1].replied_at.has_value());

  clock.advance(11s);
  engine->run_once();
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 1u) << "only the unanswered charge is re-sent";
  EXPECT_EQ(resent[0].envelope.event_type, "payment.Charge");
}

TEST_F(EngineDeliveryTest, CommandsAwaitingRepliesAreResentByANewEngineAfterTheirTimeout) {
  start();
  engine->run_once();
  auto first = take_commands(transport).at(0);
  engine->run_once();  // dispatch mark committed
  make_engine();       // a restart on the same store
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "not yet overdue";
  clock.advance(11s);
  engine->run_once();
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0].envelope.event_id, first.envelope.event_id);
}

TEST_F(EngineDeliveryTest, LateDuplicateReplyAfterAResendHasNoEffect) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);  // the re-send
  // The participant answers both copies with the same reply (same eventId).
  std::string reply =
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}});
  transport.deliver(reply);
  transport.deliver(reply);
  engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
  EXPECT_EQ(engine->stats().duplicates, 1u);
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");
}

TEST_F(EngineDeliveryTest, LifecycleEventsArePublishedAfterEachCommit) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  transport.deliver(reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  engine->run_once();
  auto charge = take_commands(transport).at(0);
  transport.deliver(reply_bytes(charge.envelope, "payment.Declined", {{"reason", "no"}}));
  engine->run_once();
  auto release = take_commands(transport).at(0);
  transport.deliver(reply_bytes(release.envelope, "inventory.Released", {{"reservation_id", "r"}}));
  engine->run_once();

  std::vector<std::string> types;
  for (const auto& event : transport.take_events()) {
    types.push_back(event.destination);
    auto decoded = std::get<saga::Envelope>(saga::decode_envelope(event.bytes));
    EXPECT_EQ(decoded.kind, saga::MessageKind::event);
    EXPECT_EQ(decoded.correlation_id, id);
    EXPECT_EQ(decoded.data["sagaId"], id);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"saga.Started", "saga.StepCompleted",
                                             "saga.Compensating", "saga.Compensated"}));
}

TEST_F(EngineDeliveryTest, NoEventsWhenPublishingIsOff) {
  options.publish_events = false;
  make_engine();
  start();
  engine->run_once();
  EXPECT_TRUE(transport.take_events().empty());
}

}  // namespace
