// The engine loop over a real (in-memory) SQLite store and the in-memory transport.
#include "saga/engine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;

order::OrderData an_order(std::string id = "order-1") {
  return {std::move(id), "customer-1", "1 Main St", {{"sku-1", 2, 500}}};
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { open(default_options()); }

  static saga::Options default_options() {
    saga::Options options;
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    return options;
  }

  void open(const saga::Options& options) {
    engine.reset();
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) { outcomes.push_back(outcome); });
    engine->on_dead_letter([this](const saga::DeadLetter& letter) { letters.push_back(letter); });
  }

  // Starts a saga and returns the first command it sent.
  saga::test::SentCommand start_order(std::string* saga_id = nullptr) {
    std::string id = engine->start<order::OrderSaga>(an_order());
    if (saga_id) *saga_id = id;
    engine->run_once();
    auto sent = take_commands(transport);
    EXPECT_EQ(sent.size(), 1u);
    return sent.empty() ? saga::test::SentCommand{} : sent.front();
  }

  saga::SagaRecord saga_row(const std::string& id) {
    auto loaded = store->load_saga(id);
    EXPECT_TRUE(loaded.ok());
    EXPECT_TRUE(loaded.value().has_value()) << id;
    return loaded.value().value_or(saga::SagaRecord{});
  }

  std::vector<saga::JournalKind> journal_kinds(const std::string& id) {
    std::vector<saga::JournalKind> kinds;
    for (const auto& entry : store->journal(id).value()) kinds.push_back(entry.kind);
    return kinds;
  }

  std::size_t count(const std::vector<saga::JournalKind>& kinds, saga::JournalKind kind) {
    return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), kind));
  }

  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::vector<saga::SagaOutcome> outcomes;
  std::vector<saga::DeadLetter> letters;
};

TEST_F(EngineTest, StartPersistsTheSagaAndSendsItsFirstCommand) {
  std::string id;
  auto command = start_order(&id);
  EXPECT_EQ(command.destination, "inventory");
  EXPECT_EQ(command.envelope.event_type, "inventory.Reserve");
  EXPECT_EQ(command.envelope.kind, saga::MessageKind::command);
  EXPECT_EQ(command.envelope.correlation_id, id);
  EXPECT_EQ(command.envelope.source, "orchestrator");
  EXPECT_EQ(command.envelope.data["order_id"], "order-1");

  saga::SagaRecord row = saga_row(id);
  EXPECT_EQ(row.type, "order");
  EXPECT_EQ(row.definition_version, 1);
  EXPECT_EQ(row.state, "awaiting:inventory.Reserve");
  EXPECT_EQ(row.status, saga::SagaStatus::Running);
  EXPECT_EQ(nlohmann::json::parse(row.data)["customer_id"], "customer-1");
  auto outbox = store->outbox(id).value();
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].message_id, command.envelope.event_id);
  EXPECT_EQ(outbox[0].payload, command.bytes);
}

TEST_F(EngineTest, FirstSendOfACommandWritesNothingMore) {
  std::string id;
  start_order(&id);
  auto before = store->outbox(id).value()[0];
  engine->run_once();
  auto row = store->outbox(id).value()[0];
  EXPECT_FALSE(row.dispatched);
  EXPECT_EQ(row.attempts, 0);
  EXPECT_EQ(row.dispatched_at, std::nullopt);
  auto pending = store->pending_outbox(10).value();
  ASSERT_EQ(pending.size(), 1u) << "sent at most once, as far as the store knows";
  EXPECT_EQ(pending[0].message_id, before.message_id);
}

TEST_F(EngineTest, RepliesDriveTheSagaToCompletionAndTheOutcomeIsReported) {
  std::string id;
  auto reserve = start_order(&id);
  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r-1"}}));
  engine->run_once();
  auto charge = take_commands(transport).at(0);
  EXPECT_EQ(charge.envelope.event_type, "payment.Charge");
  EXPECT_EQ(charge.envelope.correlation_id, id);
  EXPECT_FALSE(charge.envelope.causation_id.empty());
  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p-1"}}));
  engine->run_once();
  auto ship = take_commands(transport).at(0);
  EXPECT_TRUE(outcomes.empty());
  transport.deliver(reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "t-1"}}));
  engine->run_once();

  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].saga_id, id);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Completed);
  EXPECT_EQ(outcomes[0].data["tracking_number"], "t-1");
  EXPECT_EQ(saga_row(id).status, saga::SagaStatus::Completed);
  EXPECT_EQ(engine->stats().sagas_completed, 1u);

  auto kinds = journal_kinds(id);
  EXPECT_EQ(kinds.front(), saga::JournalKind::started);
  EXPECT_EQ(count(kinds, saga::JournalKind::message_in), 3u);
  EXPECT_EQ(count(kinds, saga::JournalKind::message_out), 3u);
  EXPECT_EQ(kinds.back(), saga::JournalKind::status_changed);
  // Each input's entry carries the transition it caused; no entries of their own for them.
  EXPECT_EQ(count(kinds, saga::JournalKind::transition), 0u);
  std::vector<std::string> transitions;
  for (const auto& entry : store->journal(id).value())
    if (!entry.to_state.empty())
      transitions.push_back(std::string(saga::to_string(entry.kind)) + " " + entry.message_type +
                            " " + entry.from_state + " -> " + entry.to_state);
  EXPECT_EQ(
      transitions,
      (std::vector<std::string>{
          "started  Initial -> awaiting:inventory.Reserve",
          "message_in inventory.Reserved awaiting:inventory.Reserve -> awaiting:payment.Charge",
          "message_in payment.Charged awaiting:payment.Charge -> awaiting:shipping.Ship",
          "message_in shipping.Shipped awaiting:shipping.Ship -> Completed"}));
}

TEST_F(EngineTest, ReplyCausationIsTheEventIdOfTheReplyThatCausedIt) {
  auto reserve = start_order();
  std::string reply_id = saga::new_uuid();
  transport.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}, reply_id));
  engine->run_once();
  EXPECT_EQ(take_commands(transport).at(0).envelope.causation_id, reply_id);
}

TEST_F(EngineTest, DuplicateReplyHasNoEffectAndIsJournaled) {
  std::string id;
  auto reserve = start_order(&id);
  std::string reply =
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}});
  transport.deliver(reply);
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);
  std::int64_t version = saga_row(id).row_version;

  transport.deliver(reply);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  EXPECT_EQ(saga_row(id).row_version, version);
  EXPECT_EQ(saga_row(id).state, "awaiting:payment.Charge");
  EXPECT_EQ(count(journal_kinds(id), saga::JournalKind::duplicate), 1u);
  EXPECT_EQ(engine->stats().duplicates, 1u);
}

TEST_F(EngineTest, DuplicateInTheSameBatchHasNoEffect) {
  std::string id;
  auto reserve = start_order(&id);
  std::string reply =
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}});
  transport.deliver(reply);
  transport.deliver(reply);
  engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
  EXPECT_EQ(count(journal_kinds(id), saga::JournalKind::message_in), 1u);
  EXPECT_EQ(count(journal_kinds(id), saga::JournalKind::duplicate), 1u);
}

TEST_F(EngineTest, DuplicateOfADuplicateAfterRestartOfTheCacheIsStillIgnored) {
  // The inbox is in the store, not only in memory: a new engine on the same store dedups too.
  std::string id;
  auto reserve = start_order(&id);
  std::string reply =
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}});
  transport.deliver(reply);
  engine->run_once();
  take_commands(transport);
  engine = std::make_unique<saga::Engine>(default_options(), *store, transport, clock);
  engine->register_saga<order::OrderSaga>();
  transport.deliver(reply);
  engine->run_once();
  EXPECT_EQ(engine->stats().duplicates, 1u);
  EXPECT_EQ(saga_row(id).state, "awaiting:payment.Charge");
}

struct BadInput {
  std::string name;
  std::string reason_code;
  // Builds the bytes from a valid command sent by the engine.
  std::function<std::string(const saga::Envelope& command)> bytes;
};

void PrintTo(const BadInput& input, std::ostream* out) {
  *out << input.name;
}

class EngineBadInputTest : public EngineTest, public ::testing::WithParamInterface<BadInput> {};

TEST_P(EngineBadInputTest, IsDeadLetteredWithoutStateChangeAndTheEngineKeepsServing) {
  std::string id;
  auto reserve = start_order(&id);
  engine->run_once();  // an idle turn
  saga::SagaRecord before = saga_row(id);

  std::string bad = GetParam().bytes(reserve.envelope);
  transport.deliver(bad);
  engine->run_once();

  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, GetParam().reason_code) << letters[0].reason;
  EXPECT_FALSE(letters[0].reason.empty());
  auto stored = store->dead_letters(10).value();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].reason_code, GetParam().reason_code);
  EXPECT_EQ(stored[0].raw, bad.substr(0, 64 * 1024));
  EXPECT_EQ(stored[0].raw_size, bad.size());
  EXPECT_EQ(engine->stats().dead_letters, 1u);
  saga::SagaRecord after = saga_row(id);
  EXPECT_EQ(after.state, before.state);
  EXPECT_EQ(after.row_version, before.row_version);
  EXPECT_TRUE(take_commands(transport).empty());

  // Everyone else is still served: the right reply still works.
  transport.deliver(reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  engine->run_once();
  EXPECT_EQ(saga_row(id).state, "awaiting:payment.Charge");
}

std::string with_field(const saga::Envelope& command, const std::string& field,
                       nlohmann::json value) {
  auto json =
      nlohmann::json::parse(reply_bytes(command, "inventory.Reserved", {{"reservation_id", "r"}}));
  if (value.is_discarded())
    json.erase(field);
  else
    json[field] = std::move(value);
  return json.dump();
}

const nlohmann::json kErase = nlohmann::json::value_t::discarded;

INSTANTIATE_TEST_SUITE_P(
    Cases, EngineBadInputTest,
    ::testing::Values(
        BadInput{"NotJson", "not_json", [](auto&) { return std::string("{\"eventId\": nope"); }},
        BadInput{"NotAnObject", "not_object", [](auto&) { return std::string("[1,2,3]"); }},
        BadInput{"MissingEventId", "missing_field",
                 [](auto& c) { return with_field(c, "eventId", kErase); }},
        BadInput{"MissingData", "missing_field",
                 [](auto& c) { return with_field(c, "data", kErase); }},
        BadInput{"WrongFieldType", "wrong_type",
                 [](auto& c) { return with_field(c, "eventType", 7); }},
        BadInput{"BadUuid", "bad_uuid",
                 [](auto& c) { return with_field(c, "eventId", "not-a-uuid"); }},
        BadInput{"BadTimestamp", "bad_timestamp",
                 [](auto& c) { return with_field(c, "timestamp", "yesterday"); }},
        BadInput{"UnknownKind", "unknown_kind",
                 [](auto& c) { return with_field(c, "kind", "gossip"); }},
        BadInput{"CommandInsteadOfReply", "unexpected_kind",
                 [](auto& c) { return with_field(c, "kind", "command"); }},
        BadInput{"NoCorrelation", "missing_correlation",
                 [](auto& c) { return with_field(c, "correlationId", kErase); }},
        BadInput{"UnknownSaga", "unknown_saga",
                 [](auto& c) {
                   auto reply =
                       nlohmann::json::parse(with_field(c, "correlationId", saga::new_uuid()));
                   reply["causationId"] = saga::new_uuid();
                   return reply.dump();
                 }},
        BadInput{"CorrelationMismatch", "correlation_mismatch",
                 [](auto& c) { return with_field(c, "correlationId", "another-request"); }},
        BadInput{"UnknownEventType", "unknown_type",
                 [](auto& c) { return with_field(c, "eventType", "inventory.Teleported"); }},
        BadInput{"UnexpectedForState", "unexpected",
                 [](auto& c) {
                   return reply_bytes(c, "payment.Charged", {{"payment_id", "p"}});
                 }},
        BadInput{"UndecodablePayload", "undecodable",
                 [](auto& c) {
                   return with_field(c, "data", {{"reservation_id", 5}});
                 }},
        BadInput{"UnsupportedVersion", "unsupported_version",
                 [](auto& c) { return with_field(c, "version", "2"); }},
        BadInput{"NestedTooDeep", "too_deep",
                 [](auto& c) {
                   // A valid reply whose data carries an extra field nested 200,000 levels: it
                   // used to be applied, and journaling its data overflowed the loop's stack.
                   std::string bytes = with_field(c, "data", {{"reservation_id", "r"}});
                   const std::string field = "\"reservation_id\":\"r\"";
                   bytes.insert(
                       bytes.find(field) + field.size(),
                       ",\"extra\":" + std::string(200000, '[') + std::string(200000, ']'));
                   return bytes;
                 }},
        BadInput{
            "Oversized", "too_large",
            [](auto& c) {
              return with_field(c, "data", {{"reservation_id", std::string(2 * 1024 * 1024, 'x')}});
            }}),
    [](const auto& info) { return info.param.name; });

TEST_F(EngineTest, UnexpectedReplyIsJournaledForItsSaga) {
  std::string id;
  auto reserve = start_order(&id);
  transport.deliver(reply_bytes(reserve.envelope, "payment.Charged", {{"payment_id", "p"}}));
  engine->run_once();
  auto journal = store->journal(id).value();
  auto unexpected = std::find_if(journal.begin(), journal.end(), [](const auto& entry) {
    return entry.kind == saga::JournalKind::unexpected;
  });
  ASSERT_NE(unexpected, journal.end());
  EXPECT_EQ(unexpected->message_type, "payment.Charged");
  EXPECT_NE(unexpected->detail.find("no transition"), std::string::npos);
}

TEST_F(EngineTest, AllMessagesOfOneTurnShareOneCommit) {
  for (int i = 0; i < 50; ++i)
    engine->start<order::OrderSaga>(an_order("order-" + std::to_string(i)));
  EXPECT_EQ(engine->run_once(), 50u);
  EXPECT_EQ(engine->stats().commits, 1u);
  auto sent = take_commands(transport);
  ASSERT_EQ(sent.size(), 50u);
  for (const auto& command : sent)
    transport.deliver(
        reply_bytes(command.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  EXPECT_EQ(engine->run_once(), 50u);
  EXPECT_EQ(engine->stats().commits, 2u);
  EXPECT_EQ(take_commands(transport).size(), 50u);
}

TEST_F(EngineTest, BatchLimitOfOneCommitsEveryMessageAlone) {
  saga::Options options = default_options();
  options.max_batch_messages = 1;
  open(options);
  for (int i = 0; i < 5; ++i)
    engine->start<order::OrderSaga>(an_order("order-" + std::to_string(i)));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(engine->run_once(), 1u);
  EXPECT_EQ(take_commands(transport).size(), 5u);
  EXPECT_GE(engine->stats().commits, 5u);
}

TEST_F(EngineTest, RefusedSendStaysPendingAndIsRetried) {
  transport.refuse_sends(saga::SendResult::unroutable);
  std::string id = engine->start<order::OrderSaga>(an_order());
  engine->run_once();
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  EXPECT_GE(engine->stats().send_retries, 2u);
  ASSERT_EQ(store->pending_outbox(10).value().size(), 1u);

  transport.refuse_sends(std::nullopt);
  engine->run_once();
  EXPECT_EQ(take_commands(transport).size(), 1u);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty()) << "sent once, and not again before its timeout";
  EXPECT_EQ(store->outbox(id).value()[0].attempts, 0) << "a first send is not recorded";
}

TEST_F(EngineTest, SagaInAStateTheCodeNoLongerKnowsIsDeadLetteredAndReported) {
  saga::WriteBatch batch;
  saga::SagaRecord record;
  record.id = saga::new_uuid();
  record.type = "order";
  record.definition_version = 1;
  record.state = "awaiting:legacy.FraudCheck";
  record.status = saga::SagaStatus::Running;
  record.data = nlohmann::json(an_order()).dump();
  batch.sagas.push_back({record, std::nullopt});
  ASSERT_TRUE(store->commit(batch));

  saga::Envelope command;
  command.event_id = saga::new_uuid();
  command.correlation_id = record.id;
  transport.deliver(reply_bytes(command, "inventory.Reserved", {{"reservation_id", "r"}}));
  engine->run_once();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unknown_state");
  EXPECT_NE(letters[0].reason.find("awaiting:legacy.FraudCheck"), std::string::npos);
  EXPECT_EQ(saga_row(record.id).state, "awaiting:legacy.FraudCheck");
}

TEST_F(EngineTest, StartingAnUnregisteredSagaThrows) {
  EXPECT_THROW(engine->start("no-such-saga", nlohmann::json::object()), std::invalid_argument);
}

TEST_F(EngineTest, StartingWithDataThatDoesNotConvertThrows) {
  EXPECT_THROW(engine->start("order", {{"order_id", 7}}), std::invalid_argument);
}

TEST_F(EngineTest, RegisteringTheSameVersionTwiceIsAnError) {
  EXPECT_THROW(engine->register_saga<order::OrderSaga>(), std::logic_error);
}

TEST_F(EngineTest, UserCodeFailureIsJournaledAndEndsTheSaga) {
  order::OrderData empty = an_order();
  empty.items.clear();
  std::string id = engine->start<order::OrderSaga>(empty);
  engine->run_once();
  EXPECT_TRUE(take_commands(transport).empty());
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Compensated);
  EXPECT_NE(outcomes[0].reason.find("at least one item"), std::string::npos);
  EXPECT_EQ(count(journal_kinds(id), saga::JournalKind::user_error), 1u);
}

TEST_F(EngineTest, RunReturnsAfterStopFromAnotherThread) {
  saga::Options options = default_options();
  options.idle_wait = 20ms;
  open(options);
  std::thread loop([&] { engine->run(); });
  std::string id = engine->start<order::OrderSaga>(an_order());
  auto sent = transport.wait_sent(5s);
  engine->stop();
  loop.join();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(saga_row(id).state, "awaiting:inventory.Reserve");
}

}  // namespace
