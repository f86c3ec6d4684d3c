// Delivery over an unreliable network: commands awaiting replies are re-sent after their
// timeout (on simulated time), replies stop that, and it all survives a restart. Lifecycle
// events are published after each commit.
#include <gtest/gtest.h>

#include <cctype>
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
    options.command_retry = {10s, 2.0, 30s, 0.0, 0};
    options.compensation_retry = {10s, 2.0, 30s, 0.0, 0};
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
  for (int i = 0; i < 3; ++i) {  // capped at max_timeout
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

TEST_F(EngineDeliveryTest, CommandSentOnceIsSentAgainAtOnceByANewEngine) {
  std::string id = start();
  engine->run_once();
  auto first = take_commands(transport).at(0);
  engine->run_once();
  EXPECT_FALSE(store->outbox(id).value()[0].dispatched) << "a first send is not recorded";
  make_engine();  // a restart on the same store: that send may never have left the process
  engine->run_once();
  auto again = take_commands(transport);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].bytes, first.bytes);
  engine->run_once();
  auto row = store->outbox(id).value()[0];
  EXPECT_TRUE(row.dispatched) << "sending it again after a restart is a re-send, recorded";
  EXPECT_EQ(row.attempts, 2);
}

TEST_F(EngineDeliveryTest, ReSendIsRecordedWithItsAttemptCountByTheTurnThatMakesIt) {
  std::string id = start();
  engine->run_once();
  take_commands(transport);
  EXPECT_FALSE(store->outbox(id).value()[0].dispatched) << "a first send is not recorded";
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);
  auto row = store->outbox(id).value()[0];
  EXPECT_TRUE(row.dispatched);
  EXPECT_EQ(row.attempts, 2);
  EXPECT_EQ(row.dispatched_at, clock.now());
}

TEST_F(EngineDeliveryTest, CommandsReSentAndAwaitingRepliesAreResentByANewEngineAfterTheirTimeout) {
  std::string id = start();
  engine->run_once();
  auto first = take_commands(transport).at(0);
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);
  engine->run_once();  // the re-send is recorded
  auto row = store->outbox(id).value()[0];
  EXPECT_TRUE(row.dispatched);
  EXPECT_EQ(row.attempts, 2);
  make_engine();  // a restart on the same store
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "not yet overdue";
  clock.advance(21s);  // the second wait is twice as long
  engine->run_once();
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0].envelope.event_id, first.envelope.event_id);
  engine->run_once();
  EXPECT_EQ(store->outbox(id).value()[0].attempts, 3);
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

namespace {

// Retry policies running out, on simulated time: 10 s per attempt, no backoff, no jitter.
class EngineTimeoutTest : public EngineDeliveryTest {
 protected:
  void SetUp() override {
    EngineDeliveryTest::SetUp();
    options.command_retry = {10s, 1.0, 10s, 0.0, 3};
    options.compensation_retry = {10s, 1.0, 10s, 0.0, 2};
    make_engine();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) { outcomes.push_back(outcome); });
  }

  // Starts a saga and answers the reservation; returns the payment.Charge command (and, when
  // asked, the inventory.Reserve command in `reserve_sent`).
  saga::test::SentCommand reserved(std::string& id,
                                   saga::test::SentCommand* reserve_sent = nullptr) {
    id = start();
    engine->run_once();
    auto reserve = take_commands(transport).at(0);
    if (reserve_sent) *reserve_sent = reserve;
    transport.deliver(
        reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
    engine->run_once();
    return take_commands(transport).at(0);
  }

  // A saga reserved and charged: returns the Ship command (and the Charge, when asked).
  saga::test::SentCommand charged(std::string& id, saga::test::SentCommand* charge_sent = nullptr) {
    auto charge = reserved(id);
    if (charge_sent) *charge_sent = charge;
    transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
    engine->run_once();
    return take_commands(transport).at(0);
  }

  std::size_t journal_count(const std::string& id, saga::JournalKind kind) {
    std::size_t n = 0;
    for (const auto& entry : store->journal(id).value()) n += entry.kind == kind ? 1 : 0;
    return n;
  }

  std::vector<saga::SagaOutcome> outcomes;
};

// Replies name their command in lower case (the envelope's form). Ids from a generator that
// wrote upper case used to be kept as generated: no reply found its command, which was re-sent
// until given up on, and the saga's reply was routed by correlation alone.
TEST_F(EngineDeliveryTest, IdsFromTheGeneratorAreLowerCasedSoRepliesCloseTheirCommand) {
  options.id_generator = [] {
    std::string id = saga::new_uuid();
    for (char& c : id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return id;
  };
  make_engine();
  std::string id = start();
  EXPECT_TRUE(saga::is_uuid(id)) << id;
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  EXPECT_EQ(reserve.envelope.correlation_id, id);
  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  EXPECT_EQ(take_commands(transport).at(0).envelope.event_type, "payment.Charge");
  auto row = store->outbox_message(reserve.envelope.event_id).value();
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->replied_at.has_value()) << "the reply closed its command";

  options.id_generator = [] { return std::string("not-a-uuid"); };
  make_engine();
  EXPECT_THROW(start(), std::invalid_argument);
}

// A command whose re-send was refused waits in the send queue; if the reply to its first send is
// applied meanwhile, the command is closed and must leave the queue. It used to be sent again
// and tracked as awaiting a reply it already had, re-sent at every timeout, and finally given
// up on, failing whatever step the saga had moved on to.
TEST_F(EngineTimeoutTest, ReplyAppliedWhileTheResendWaitsForTheTransportClosesTheCommand) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  ASSERT_EQ(reserve.envelope.event_type, "inventory.Reserve");

  clock.advance(11s);
  transport.refuse_sends(saga::SendResult::unroutable);
  engine->run_once();  // the re-send is refused: Reserve waits in the send queue
  ASSERT_TRUE(take_commands(transport).empty());

  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();  // the late reply to the first send is applied; sends are still refused
  ASSERT_TRUE(take_commands(transport).empty());
  ASSERT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");

  transport.refuse_sends(std::nullopt);
  engine->run_once();
  auto sent = take_commands(transport);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].envelope.event_type, "payment.Charge");

  clock.advance(11s);
  engine->run_once();
  sent = take_commands(transport);
  ASSERT_EQ(sent.size(), 1u) << "only Charge is overdue";
  EXPECT_EQ(sent[0].envelope.event_type, "payment.Charge");
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");
  EXPECT_EQ(store->awaiting_reply(10).value().size(), 1u);
}

// The participant may have charged and only the replies were lost: a step that timed out is
// compensated itself (Refund, naming the Charge it undoes) before the steps before it (Release).
TEST_F(EngineTimeoutTest, StepWhoseRepliesNeverComeIsCompensatedItselfThenTheStepsBefore) {
  std::string id;
  auto charge = reserved(id);
  ASSERT_EQ(charge.envelope.event_type, "payment.Charge");
  for (int attempt = 2; attempt <= 3; ++attempt) {
    clock.advance(11s);
    engine->run_once();
    ASSERT_EQ(take_commands(transport).size(), 1u) << "attempt " << attempt;
  }
  clock.advance(11s);
  engine->run_once();  // the third wait ran out: the step fails
  auto refund = take_commands(transport);
  ASSERT_EQ(refund.size(), 1u);
  EXPECT_EQ(refund[0].envelope.event_type, "payment.Refund");
  EXPECT_EQ(refund[0].envelope.compensates, charge.envelope.event_id);
  EXPECT_EQ(refund[0].envelope.data["payment_id"], "") << "the charge's reply never came";
  EXPECT_EQ(store->load_saga(id).value()->state, "compensating:payment.Refund");
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
  EXPECT_EQ(engine->stats().command_timeouts, 1u);
  transport.deliver(reply_bytes(refund[0].envelope, "payment.Refunded", {{"payment_id", ""}}));
  engine->run_once();
  auto release = take_commands(transport);
  ASSERT_EQ(release.size(), 1u);
  EXPECT_EQ(release[0].envelope.event_type, "inventory.Release");
  transport.deliver(
      reply_bytes(release[0].envelope, "inventory.Released", {{"reservation_id", "r-1"}}));
  engine->run_once();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Compensated);
  clock.advance(60s);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "an ended saga's command was re-sent";
}

// Every compensation names the step command it undoes, also one whose step succeeded.
TEST_F(EngineTimeoutTest, CompensationOfACompletedStepNamesTheCommandItUndoes) {
  std::string id;
  saga::test::SentCommand reserve;
  auto charge = reserved(id, &reserve);
  transport.deliver(reply_bytes(charge.envelope, "payment.Declined", {{"reason", "no"}}));
  engine->run_once();
  auto release = take_commands(transport);
  ASSERT_EQ(release.size(), 1u);
  EXPECT_EQ(release[0].envelope.event_type, "inventory.Release");
  EXPECT_EQ(release[0].envelope.compensates, reserve.envelope.event_id);
  EXPECT_EQ(release[0].envelope.data["reservation_id"], "r-1");
}

// The pivot cannot be undone, and a pivot that timed out may have happened: the saga is parked
// in place for an operator, whose retry re-sends the same command (the participant answers a
// repeat from its ledger). Compensating the steps before it could refund a shipped order.
TEST_F(EngineTimeoutTest, PivotWhoseRepliesNeverComeParksTheSagaInPlace) {
  std::string id;
  auto ship = charged(id);
  ASSERT_EQ(ship.envelope.event_type, "shipping.Ship");
  for (int attempt = 1; attempt <= 3; ++attempt) {
    clock.advance(11s);
    engine->run_once();
  }
  EXPECT_EQ(take_commands(transport).size(), 2u) << "two re-sends, then nothing: no compensation";
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Failed);
  auto record = store->load_saga(id).value();
  EXPECT_EQ(record->status, saga::SagaStatus::Failed);
  EXPECT_EQ(record->state, "awaiting:shipping.Ship") << "parked in place";
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);

  auto retried = engine->retry(id);
  engine->run_once();
  ASSERT_TRUE(retried.get().ok);
  auto again = take_commands(transport);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].envelope.event_id, ship.envelope.event_id);
  transport.deliver(reply_bytes(again[0].envelope, "shipping.Shipped", {{"tracking_number", "t"}}));
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
}

// A reply is applied to the saga that sent the command it names; the saga's state decides
// whether its type fits. A second, different reply naming a command that was answered already
// (stale, or forged by a peer) used to be applied too: here a "payment.Charged" naming the
// answered inventory.Reserve would have shipped an order that was never charged.
TEST_F(EngineTimeoutTest, ReplyNamingACommandAnsweredBeforeIsDeadLetteredNotApplied) {
  std::string id;
  saga::test::SentCommand reserve;
  auto charge = reserved(id, &reserve);
  ASSERT_EQ(charge.envelope.event_type, "payment.Charge");
  transport.deliver(reply_bytes(reserve.envelope, "payment.Charged", {{"payment_id", "forged"}}));
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "no Ship";
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unexpected");
  EXPECT_NE(letters[0].reason.find("answered already"), std::string::npos) << letters[0].reason;

  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
  engine->run_once();
  auto ship = take_commands(transport);
  ASSERT_EQ(ship.size(), 1u) << "the real answer is applied";
  EXPECT_EQ(ship[0].envelope.event_type, "shipping.Ship");
}

// A transport that knows which service a reply came from (the ZeroMQ transport: the peer's
// ANNOUNCE, held to its CURVE key's service where keys are bound) lets the engine refuse a reply
// to a command sent to another service: the payment service cannot answer inventory's Reserve,
// with any type, even knowing its id. A sender the transport does not know is not checked.
TEST_F(EngineTimeoutTest, ReplyFromAServiceOtherThanItsCommandsDestinationIsDeadLettered) {
  std::string id = start();
  engine->run_once();
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 1u);
  const auto& reserve = commands[0];
  ASSERT_EQ(reserve.envelope.event_type, "inventory.Reserve");
  transport.deliver_from("payment", reply_bytes(reserve.envelope, "inventory.Reserved",
                                                {{"reservation_id", "forged"}}));
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "no Charge";
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:inventory.Reserve");
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "wrong_sender");
  ASSERT_EQ(letters[0].id, 1);
  EXPECT_NE(letters[0].reason.find("sent to service 'inventory', but came from service 'payment'"),
            std::string::npos)
      << letters[0].reason;
  EXPECT_EQ(journal_count(id, saga::JournalKind::unexpected), 1u);

  // Naming no command (no causationId, or one the engine never sent) does not get around it:
  // such a reply may come only from a service the saga awaits a reply from.
  saga::Envelope unnamed = reserve.envelope;
  for (std::string causation : {std::string(), saga::new_uuid()}) {
    unnamed.event_id = causation;
    transport.deliver_from(
        "payment", reply_bytes(unnamed, "inventory.Reserved", {{"reservation_id", "forged"}}));
  }
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "no Charge";
  letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 3u);
  for (const auto& letter : letters) {
    EXPECT_EQ(letter.reason_code, "wrong_sender");
    if (letter.id != 1) {
      EXPECT_NE(letter.reason.find("to which the saga has no command awaiting a reply"),
                std::string::npos)
          << letter.reason;
    }
  }

  transport.deliver_from("inventory", reply_bytes(reserve.envelope, "inventory.Reserved",
                                                  {{"reservation_id", "r-1"}}));
  engine->run_once();
  auto charge = take_commands(transport);
  ASSERT_EQ(charge.size(), 1u) << "the reply from inventory is applied";
  EXPECT_EQ(charge[0].envelope.event_type, "payment.Charge");
}

// The sender check must not refuse a real answer: a reply naming no command, from the service
// whose command waits in the send queue (its re-send refused, so not in flight), is applied.
TEST_F(EngineTimeoutTest, ReplyNamingNoCommandFromTheServiceOfAQueuedCommandIsApplied) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  clock.advance(11s);
  transport.refuse_sends(saga::SendResult::unroutable);
  engine->run_once();  // the re-send is refused: Reserve waits in the send queue
  ASSERT_TRUE(take_commands(transport).empty());

  saga::Envelope unnamed = reserve.envelope;
  unnamed.event_id.clear();
  transport.deliver_from("inventory",
                         reply_bytes(unnamed, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  EXPECT_TRUE(store->dead_letters(10).value().empty());
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");
}

// A reply that names no command (causationId is optional) is routed by its correlationId. It
// used to leave its command open: re-sent, and in the end timed out against whatever step the
// saga had gone on to (here it failed the charge, which had not timed out, and compensated). It
// closes the command the saga waited for.
TEST_F(EngineTimeoutTest, ReplyWithoutCausationClosesTheCommandItsSagaWaitedFor) {
  options.retry_by_command["inventory.Reserve"] = {2s, 1.0, 2s, 0.0, 1};
  make_engine();
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  auto reply = nlohmann::json::parse(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  reply.erase("causationId");
  transport.deliver(reply.dump());
  engine->run_once();
  ASSERT_EQ(take_commands(transport).at(0).envelope.event_type, "payment.Charge");
  EXPECT_TRUE(store->outbox_message(reserve.envelope.event_id).value()->replied_at);
  clock.advance(3s);  // the Reserve's only attempt would run out; the Charge has 10 s
  engine->run_once();
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "no compensation";
  auto record = store->load_saga(id).value();
  EXPECT_EQ(record->status, saga::SagaStatus::Running);
  EXPECT_EQ(record->state, "awaiting:payment.Charge");
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 0u);
}

TEST_F(EngineTimeoutTest, PerCommandPolicyOverridesTheDefaultForThatStepOnly) {
  // payment.Charge: one send, then 2 s; everything else keeps the 3 x 10 s default.
  options.retry_by_command["payment.Charge"] = {2s, 1.0, 2s, 0.0, 1};
  make_engine();
  engine->on_outcome([this](const saga::SagaOutcome& outcome) { outcomes.push_back(outcome); });
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  clock.advance(3s);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "the reservation keeps its 10 s timeout";
  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  ASSERT_EQ(take_commands(transport).at(0).envelope.event_type, "payment.Charge");
  clock.advance(3s);
  engine->run_once();  // the charge's only attempt ran out after 2 s: the step fails
  auto refund = take_commands(transport);
  ASSERT_EQ(refund.size(), 1u);
  EXPECT_EQ(refund[0].envelope.event_type, "payment.Refund");
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
}

// The parked saga still waits for the Ship it gave up on: when that command's answer comes after
// all, it is applied as an operator's retry would have had it applied, and the saga completes.
TEST_F(EngineTimeoutTest, PivotParkedByATimeoutIsResumedByALateReplyToThatCommand) {
  std::string id;
  saga::test::SentCommand charge;
  auto ship = charged(id, &charge);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    clock.advance(11s);
    engine->run_once();
  }
  ASSERT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);
  // A late answer to an earlier command is no answer to the pivot: still parked.
  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);

  transport.deliver(reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "t"}}));
  engine->run_once();
  auto record = store->load_saga(id).value();
  EXPECT_EQ(record->status, saga::SagaStatus::Completed);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Failed);
  EXPECT_EQ(outcomes[1].status, saga::SagaStatus::Completed);
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u) << "only the stray Charged";
  EXPECT_EQ(letters[0].reason_code, "unexpected") << letters[0].reason;
}

TEST_F(EngineTimeoutTest, CompensationWhoseRepliesNeverComeParksTheSagaAsFailed) {
  std::string id;
  auto charge = reserved(id);
  transport.deliver(reply_bytes(charge.envelope, "payment.Declined", {{"reason", "no"}}));
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);  // inventory.Release, attempt 1
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);  // attempt 2
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Failed);
  EXPECT_NE(outcomes[0].reason.find("no reply to inventory.Release"), std::string::npos)
      << outcomes[0].reason;
  auto record = store->load_saga(id).value();
  EXPECT_EQ(record->status, saga::SagaStatus::Failed);
  EXPECT_EQ(record->state, "compensating:inventory.Release") << "parked in place";

  // The release's answer after all: the compensation is done, and so is the saga.
  auto release = store->outbox(id).value().back();
  ASSERT_EQ(release.message_type, "inventory.Release");
  auto decoded = std::get<saga::Envelope>(saga::decode_envelope(release.payload));
  transport.deliver(reply_bytes(decoded, "inventory.Released", {{"reservation_id", "r-1"}}));
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1].status, saga::SagaStatus::Compensated);
}

TEST_F(EngineTimeoutTest, ReplyCommittedBeforeTheTimeoutWins) {
  std::string id;
  auto charge = reserved(id);
  clock.advance(11s);
  engine->run_once();
  clock.advance(11s);
  engine->run_once();
  take_commands(transport);
  // The reply arrives in the same turn in which the last wait runs out: replies go first.
  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
  clock.advance(11s);
  engine->run_once();
  auto next = take_commands(transport);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].envelope.event_type, "shipping.Ship");
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 0u);
  EXPECT_EQ(engine->stats().command_timeouts, 0u);
}

TEST_F(EngineTimeoutTest, TimeoutCommittedBeforeTheReplyWinsAndTheLateReplyIsJournaled) {
  std::string id;
  auto charge = reserved(id);
  for (int i = 0; i < 3; ++i) {
    clock.advance(11s);
    engine->run_once();
  }
  ASSERT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
  take_commands(transport);
  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  EXPECT_EQ(store->load_saga(id).value()->state, "compensating:payment.Refund");
  EXPECT_EQ(journal_count(id, saga::JournalKind::unexpected), 1u);
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  // Not an ordinary unexpected reply: it answers a command the saga gave up on, and whose
  // compensation (the Refund naming it) is already on its way.
  EXPECT_EQ(letters[0].reason_code, "late_reply");
  EXPECT_NE(letters[0].reason.find(charge.envelope.event_id), std::string::npos);
  EXPECT_NE(letters[0].reason.find("compensat"), std::string::npos) << letters[0].reason;
}

TEST_F(EngineTimeoutTest, AnUnexpectedReplyToACommandNotGivenUpOnStaysUnexpected) {
  std::string id;
  auto charge = reserved(id);
  transport.deliver(reply_bytes(charge.envelope, "shipping.Shipped", {{"tracking_number", "t"}}));
  engine->run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unexpected");
}

// An engine that cannot load a saga (its type is not registered in this build) used to close the
// saga's timed-out command silently: once the right build ran again, nothing was in flight, and
// the saga waited for ever. The command now stays open for that build to give up on.
TEST_F(EngineTimeoutTest, CommandOfASagaThisEngineCannotLoadStaysOpenWhenItTimesOut) {
  std::string id = start();
  engine->run_once();
  engine->run_once();  // an idle turn
  take_commands(transport);
  engine.reset();

  auto unaware = std::make_unique<saga::Engine>(options, *store, transport, clock);
  unaware->run_once();
  for (int i = 0; i < 4; ++i) {
    clock.advance(11s);
    unaware->run_once();
    unaware->run_once();
  }
  unaware.reset();
  take_commands(transport);
  ASSERT_EQ(store->awaiting_reply(10).value().size(), 1u) << "closed by an engine that could "
                                                             "not load its saga";

  make_engine();
  engine->run_once();
  clock.advance(11s);
  engine->run_once();
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->state, "compensating:inventory.Release");
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
}

TEST_F(EngineTimeoutTest, JitterKeepsEachWaitWithinItsBounds) {
  options.command_retry = {10s, 1.0, 10s, 0.2, 0};
  options.random_seed = 7;
  make_engine();
  start();
  engine->run_once();
  take_commands(transport);
  clock.advance(7999ms);  // below 10 s - 20%
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  clock.advance(4002ms);  // past 10 s + 20%
  engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
}

// A first send is not recorded, so a restart sends an open command again at once. Each such
// restart used to start the command's first wait and its retry budget over: restarting more often
// than the timeout kept its saga Running for ever.
TEST_F(EngineTimeoutTest, RestartsUseUpTheRetryBudgetOfACommandSentOnce) {
  std::string id;
  auto charge = reserved(id);  // attempt 1, not recorded
  make_engine();               // a restart before the timeout: attempt 2, at once, recorded
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);
  EXPECT_EQ(store->outbox_message(charge.envelope.event_id).value()->attempts, 2);
  make_engine();  // another: the recorded re-send keeps its deadline
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "re-sent 0 s ago";
  clock.advance(11s);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u) << "attempt 3";
  make_engine();
  clock.advance(11s);
  engine->run_once();
  engine->run_once();
  for (const auto& sent : take_commands(transport))
    EXPECT_NE(sent.envelope.event_id, charge.envelope.event_id) << "three sends made, none left";
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
}

TEST_F(EngineTimeoutTest, CommandSentOnceWithNoAttemptLeftIsGivenUpOnAfterARestart) {
  options.retry_by_command["payment.Charge"] = {10s, 1.0, 10s, 0.0, 1};
  make_engine();
  std::string id;
  reserved(id);
  make_engine();
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "its one send was made before the restart";
  clock.advance(11s);
  engine->run_once();
  engine->run_once();
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
}

TEST_F(EngineTimeoutTest, ExpiredCommandIsGivenUpOnAfterARestartToo) {
  std::string id;
  reserved(id);
  for (int i = 0; i < 2; ++i) {
    clock.advance(11s);
    engine->run_once();
    engine->run_once();
  }
  make_engine();  // restart: the command has been sent 3 times
  engine->on_outcome([this](const saga::SagaOutcome& outcome) { outcomes.push_back(outcome); });
  clock.advance(11s);
  engine->run_once();
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u);
}

}  // namespace

namespace {

class EngineOperatorTest : public EngineTimeoutTest {
 protected:
  // Drives a saga to a declined payment whose compensation is never acknowledged: parked.
  std::string parked_saga(saga::test::SentCommand& release) {
    std::string id;
    auto charge = reserved(id);
    transport.deliver(reply_bytes(charge.envelope, "payment.Declined", {{"reason", "no"}}));
    engine->run_once();
    release = take_commands(transport).at(0);
    for (int i = 0; i < 2; ++i) {
      clock.advance(11s);
      engine->run_once();
      take_commands(transport);
    }
    EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);
    return id;
  }

  saga::OperatorResult apply(std::future<saga::OperatorResult> future) {
    engine->run_once();
    EXPECT_EQ(future.wait_for(0s), std::future_status::ready);
    return future.get();
  }
};

TEST_F(EngineOperatorTest, RetryResendsTheCommandAParkedSagaWaitsForAndItCarriesOn) {
  saga::test::SentCommand release;
  std::string id = parked_saga(release);
  auto result = apply(engine->retry(id));
  EXPECT_TRUE(result.ok) << result.message;
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0].envelope.event_id, release.envelope.event_id) << "same command, same id";
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensating);
  auto reopened = store->outbox_message(release.envelope.event_id).value();
  ASSERT_TRUE(reopened.has_value());
  EXPECT_FALSE(reopened->dispatched) << "its budget starts again with an unrecorded first send";
  EXPECT_EQ(reopened->attempts, 0);
  transport.deliver(
      reply_bytes(resent[0].envelope, "inventory.Released", {{"reservation_id", "r-1"}}));
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
}

// The operator's retry and the reply it hopes for arrive in one turn: the retry unparks the
// saga, the reply is applied, and the command stays closed. Reopened after its reply, it would be
// sent again by the next start, answered from the participant's ledger as a duplicate, and in
// the end time out against a saga that had its answer.
TEST_F(EngineOperatorTest, RetryAndTheLateReplyInOneTurnLeaveTheCommandClosed) {
  saga::test::SentCommand release;
  std::string id = parked_saga(release);
  auto retried = engine->retry(id);
  transport.deliver(
      reply_bytes(release.envelope, "inventory.Released", {{"reservation_id", "r-1"}}));
  auto result = apply(std::move(retried));
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_NE(result.message.find("arrived meanwhile and was applied; not sent"), std::string::npos)
      << result.message;
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
  take_commands(transport);
  auto row = store->outbox_message(release.envelope.event_id).value();
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->replied_at.has_value()) << "closed by its reply";

  make_engine();  // a start sends whatever the outbox holds open
  engine->run_once();
  clock.advance(60s);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  EXPECT_EQ(journal_count(id, saga::JournalKind::timed_out), 1u) << "only the one that parked it";
}

TEST_F(EngineOperatorTest, RetryOfASagaThatIsNotFailedIsRefused) {
  std::string id;
  reserved(id);
  auto result = apply(engine->retry(id));
  EXPECT_FALSE(result.ok);
  EXPECT_NE(result.message.find("not Failed"), std::string::npos) << result.message;
}

TEST_F(EngineOperatorTest, ResolveClosesAFailedSagaAndJournalsTheNote) {
  saga::test::SentCommand release;
  std::string id = parked_saga(release);
  outcomes.clear();
  auto result = apply(engine->resolve(id, saga::SagaStatus::Compensated, "released by hand"));
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Compensated);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Compensated);
  bool journaled = false;
  for (const auto& entry : store->journal(id).value())
    journaled |= entry.detail.find("released by hand") != std::string::npos;
  EXPECT_TRUE(journaled);
  EXPECT_FALSE(apply(engine->resolve(id, saga::SagaStatus::Completed, "again")).ok);
}

TEST_F(EngineOperatorTest, ReplayingADeadLetterTakesEffectExactlyOnce) {
  std::string id = start();
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  // An engine that does not (yet) know the order saga dead-letters the reply...
  auto unaware = std::make_unique<saga::Engine>(options, *store, transport, clock);
  transport.deliver(reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  unaware->run_once();
  unaware.reset();
  take_commands(transport);  // the unaware engine re-sent the pending Reserve on its start
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unknown_saga_type");
  // ... and once the saga type is deployed, the operator replays it.
  auto result = apply(engine->replay_dead_letter(letters[0].id));
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:payment.Charge");
  EXPECT_EQ(take_commands(transport).size(), 1u);
  auto again = apply(engine->replay_dead_letter(letters[0].id));
  EXPECT_FALSE(again.ok);
  EXPECT_NE(again.message.find("already replayed"), std::string::npos);
  EXPECT_TRUE(take_commands(transport).empty());
  EXPECT_FALSE(apply(engine->replay_dead_letter(9999)).ok);
}

}  // namespace
