// The order saga, specified with saga::testing: no transport, no store.
#include "order/order_saga.hpp"

#include <gtest/gtest.h>

#include "saga/testing.hpp"

namespace {

order::OrderData an_order() {
  return {"order-1", "customer-1", "1 Main St", {{"sku-1", 2, 500}, {"sku-2", 1, 250}}};
}

TEST(OrderSaga, HappyPathReservesChargesShipsAndCompletes) {
  auto scenario = saga::testing::given<order::OrderSaga>(an_order());
  scenario.expect_command<inventory::Reserve>()
      .to("inventory")
      .with<inventory::Reserve>([](const inventory::Reserve& command) {
        EXPECT_EQ(command.order_id, "order-1");
        EXPECT_EQ(command.items.size(), 2u);
      })
      .expect_state("awaiting:inventory.Reserve")
      .expect_status(saga::SagaStatus::Running)
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>()
      .to("payment")
      .with<payment::Charge>(
          [](const payment::Charge& command) { EXPECT_EQ(command.amount_cents, 1250); })
      .when_reply(payment::Charged{"pay-1"})
      .expect_command<shipping::Ship>()
      .to("shipping")
      .when_reply(shipping::Shipped{"track-1"})
      .expect_completed()
      .expect_state("Completed");
  EXPECT_EQ(scenario.data().tracking_number, "track-1");
  EXPECT_EQ(scenario.data().payment_id, "pay-1");
}

TEST(OrderSaga, OutOfStockAtFirstStepEndsCompensatedWithoutCompensations) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_reply(inventory::OutOfStock{"sku-1", "none left"})
      .expect_rolled_back()
      .expect_state("Compensated");
}

TEST(OrderSaga, DeclinedPaymentReleasesTheReservation) {
  auto scenario = saga::testing::given<order::OrderSaga>(an_order());
  scenario.expect_command<inventory::Reserve>()
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>()
      .when_reply(payment::Declined{"card expired"})
      .expect_compensation<inventory::Release>()
      .to("inventory")
      .with<inventory::Release>(
          [](const inventory::Release& command) { EXPECT_EQ(command.reservation_id, "res-1"); })
      .expect_status(saga::SagaStatus::Compensating)
      .when_reply(inventory::Released{"res-1"})
      .expect_rolled_back();
  EXPECT_EQ(scenario.data().failure_reason, "payment declined: card expired");
}

TEST(OrderSaga, TimedOutReservationIsReleasedByOrder) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_timed_out()
      .expect_compensation<inventory::Release>()
      .undoing<inventory::Reserve>()
      .with<inventory::Release>([](const inventory::Release& command) {
        EXPECT_EQ(command.order_id, "order-1");
        EXPECT_EQ(command.reservation_id, "") << "no reply brought one";
      })
      .when_reply(inventory::Released{""})
      .expect_rolled_back();
}

TEST(OrderSaga, TimedOutChargeIsRefundedThenTheReservationReleased) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>()
      .when_timed_out()
      .expect_compensation<payment::Refund>()
      .undoing<payment::Charge>()
      .expect_no_command()
      .when_reply(payment::Refunded{""})
      .expect_compensation<inventory::Release>()
      .undoing<inventory::Reserve>()
      .with<inventory::Release>(
          [](const inventory::Release& command) { EXPECT_EQ(command.reservation_id, "res-1"); })
      .when_reply(inventory::Released{"res-1"})
      .expect_rolled_back();
}

TEST(OrderSaga, TimedOutPivotParksTheSagaWaitingForIt) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>()
      .when_reply(payment::Charged{"pay-1"})
      .expect_command<shipping::Ship>()
      .when_timed_out()
      .expect_failed()
      .expect_state("awaiting:shipping.Ship");
}

TEST(OrderSaga, FailedPivotCompensatesInReverseOrderOneAtATime) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>()
      .when_reply(payment::Charged{"pay-1"})
      .expect_command<shipping::Ship>()
      .when_reply(shipping::Undeliverable{"no such street"})
      .expect_compensation<payment::Refund>()
      .to("payment")
      .expect_no_command()  // the release waits for the refund's acknowledgement
      .expect_state("compensating:payment.Refund")
      .when_reply(payment::Refunded{"pay-1"})
      .expect_compensation<inventory::Release>()
      .when_reply(inventory::Released{"res-1"})
      .expect_rolled_back();
}

TEST(OrderSaga, UnexpectedReplyIsRejectedAndLeavesTheSagaUnchanged) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_unexpected_reply(payment::Charged{"pay-1"})
      .when_unexpected_reply(inventory::Released{"res-1"})
      .expect_state("awaiting:inventory.Reserve")
      .when_reply(inventory::Reserved{"res-1"})
      .expect_command<payment::Charge>();
}

TEST(OrderSaga, RepliesAfterTheEndAreRejected) {
  saga::testing::given<order::OrderSaga>(an_order())
      .expect_command<inventory::Reserve>()
      .when_reply(inventory::OutOfStock{"sku-1", ""})
      .expect_rolled_back()
      .when_unexpected_reply(inventory::Reserved{"res-1"})
      .expect_state("Compensated");
}

TEST(OrderSaga, CommandBuilderExceptionFailsTheStepBeforeAnythingIsSent) {
  order::OrderData empty = an_order();
  empty.items.clear();  // make_command(Reserve) throws for an order without items
  saga::testing::given<order::OrderSaga>(empty)
      .expect_user_error("at least one item")
      .expect_rolled_back();
}

// A step that timed out is compensated although its reply (with the id the service assigned)
// never came: the compensation is keyed by the order, and the service undoes whatever it did.
TEST(OrderSaga, TimedOutChargeIsRefundedByOrderWithoutAPaymentId) {
  auto type = saga::make_saga_type<order::OrderSaga>();
  order::OrderData data = an_order();
  data.reservation_id = "res-1";
  auto restored =
      type->restore("awaiting:payment.Charge", saga::SagaStatus::Running, nlohmann::json(data));
  auto& instance = std::get<0>(restored);
  saga::Reaction reaction = instance->time_out("no reply to payment.Charge after 8 attempt(s)");
  ASSERT_TRUE(reaction.applied());
  EXPECT_EQ(instance->state(), "compensating:payment.Refund");
  ASSERT_EQ(reaction.commands.size(), 1u);
  EXPECT_EQ(reaction.commands[0].type, "payment.Refund");
  EXPECT_EQ(reaction.commands[0].undoes, "payment.Charge");
  EXPECT_EQ(reaction.commands[0].payload["order_id"], data.order_id);
  EXPECT_EQ(reaction.commands[0].payload["payment_id"], "");
  EXPECT_EQ(reaction.user_errors,
            std::vector<std::string>{"no reply to payment.Charge after 8 attempt(s)"});
}

TEST(OrderSaga, RestoresEveryStateByName) {
  auto type = saga::make_saga_type<order::OrderSaga>();
  for (std::string_view state : type->states()) {
    auto restored = type->restore(state, saga::SagaStatus::Running, nlohmann::json(an_order()));
    ASSERT_EQ(restored.index(), 0u) << state;
    EXPECT_EQ(std::get<0>(restored)->state(), state);
  }
}

TEST(OrderSaga, UnknownStateNameIsAClearRestoreError) {
  auto type = saga::make_saga_type<order::OrderSaga>();
  auto restored =
      type->restore("awaiting:legacy.Step", saga::SagaStatus::Running, nlohmann::json(an_order()));
  ASSERT_EQ(restored.index(), 1u);
  EXPECT_EQ(std::get<1>(restored),
            "state 'awaiting:legacy.Step' is not a state of saga 'order' version 1");
}

TEST(OrderSaga, UndecodablePayloadIsReportedNotApplied) {
  auto type = saga::make_saga_type<order::OrderSaga>();
  auto instance = type->create(nlohmann::json(an_order()));
  instance->begin();
  saga::Reaction reaction = instance->handle("inventory.Reserved", {{"reservation_id", 42}});
  EXPECT_EQ(reaction.outcome, saga::Reaction::Outcome::undecodable);
  EXPECT_EQ(instance->state(), "awaiting:inventory.Reserve");
}

TEST(OrderSaga, UnknownMessageTypeIsReportedNotApplied) {
  auto type = saga::make_saga_type<order::OrderSaga>();
  auto instance = type->create(nlohmann::json(an_order()));
  instance->begin();
  saga::Reaction reaction = instance->handle("inventory.Teleported", nlohmann::json::object());
  EXPECT_EQ(reaction.outcome, saga::Reaction::Outcome::unknown_type);
  EXPECT_EQ(reaction.reason, "saga 'order' does not consume message type 'inventory.Teleported'");
}

}  // namespace
