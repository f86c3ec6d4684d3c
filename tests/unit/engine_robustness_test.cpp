// The engine when user code misbehaves in ways the state machine cannot absorb, and clean
// shutdown with work still queued.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/definition.hpp"
#include "saga/detail/runtime.hpp"
#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace notes {

struct Data {
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, text)

struct Write {
  static constexpr std::string_view type = "notes.Write";
  static constexpr int version = 1;
  static constexpr std::string_view service = "notes";
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Write, text)

struct Written {
  static constexpr std::string_view type = "notes.Written";
  static constexpr int version = 1;
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Written, text)

struct Publish {
  static constexpr std::string_view type = "notes.Publish";
  static constexpr int version = 1;
  static constexpr std::string_view service = "notes";
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Publish, text)

// Version 3: v2 added "channel", v3 replaced it with a list of "channels".
struct Published {
  static constexpr std::string_view type = "notes.Published";
  static constexpr int version = 3;
  std::vector<std::string> channels;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Published, channels)

Write make_command(const Data& data, saga::tag<Write>) {
  return {data.text};
}
Publish make_command(const Data& data, saga::tag<Publish>) {
  return {data.text};
}
// A careless handler: keeps the first byte only, which splits a multi-byte character and leaves
// the data impossible to serialize as JSON.
void apply_reply(Data& data, const Written& reply) {
  data.text = reply.text.substr(0, 1);
}

// Writing is the pivot; publishing is retriable: re-sent until it is answered.
struct NotesSaga : saga::definition<"notes", 1, Data, saga::pivot<Write>::on_success<Written>,
                                    saga::retriable<Publish>::on_success<Published>> {};

// A hand-written table that forgot its start row.
struct Headless : saga::machine<Headless, Data> {
  static constexpr std::string_view name = "headless";
  static constexpr int version = 1;
  struct Waiting : saga::state<> {
    static constexpr std::string_view name = "Waiting";
  };
  using initial_state = saga::states::Initial;
  using transition_table = saga::table<saga::transition<Waiting, Written, saga::states::Completed>>;
};

}  // namespace notes

// Its one command keeps the first byte of the text only: a multi-byte character is split, and
// the command cannot be encoded as JSON.
namespace clipped {

struct Data {
  std::string text;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, text)

notes::Write make_command(const Data& data, saga::tag<notes::Write>) {
  return {data.text.substr(0, 1)};
}

struct ClippedSaga
    : saga::definition<"clipped", 1, Data, saga::pivot<notes::Write>::on_success<notes::Written>> {
};

}  // namespace clipped

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;

class EngineRobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<notes::NotesSaga>();
    engine->register_saga<order::OrderSaga>();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) { outcomes.push_back(outcome); });
  }

  // A failed turn is retried at the next run_once, without sleeping first.
  void retry_failed_turns_at_once() {
    options.commit_backoff = 0ms;
    options.max_commit_backoff = 0ms;
  }

  static saga::Options options_for_timeouts() {
    saga::Options options;
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    options.command_retry = {10s, 1.0, 10s, 0.0, 2};
    return options;
  }

  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::vector<saga::SagaOutcome> outcomes;
};

TEST_F(EngineRobustnessTest, InputThatCannotBeProcessedIsDeadLetteredAndTheRestOfTheTurnGoesOn) {
  std::string poisoned = engine->start<notes::NotesSaga>({"\xC3\xA9t\xC3\xA9"});  // "été"
  std::string healthy = engine->start<notes::NotesSaga>({"fine"});
  engine->run_once();
  auto writes = take_commands(transport);
  ASSERT_EQ(writes.size(), 2u);
  for (const auto& write : writes)
    transport.deliver(
        reply_bytes(write.envelope, "notes.Written", {{"text", write.envelope.data["text"]}}));
  engine->run_once();  // the poisoned reply is taken out; the other one is retried
  engine->run_once();
  EXPECT_EQ(store->load_saga(healthy).value()->state, "awaiting:notes.Publish")
      << "the healthy reply does not wait for the poisoned one";
  EXPECT_TRUE(store->dead_letters(10).value().empty()) << "tried again before dead-lettering";
  for (int turn = 0; turn < 4; ++turn) {
    clock.advance(1s);
    engine->run_once();
  }

  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "processing_error");
  EXPECT_EQ(letters[0].saga_id, poisoned);
  EXPECT_EQ(letters[0].attempts, 3);
  EXPECT_NE(letters[0].reason.find("UTF-8"), std::string::npos) << letters[0].reason;

  EXPECT_EQ(store->load_saga(poisoned).value()->state, "awaiting:notes.Write");
  auto publish = take_commands(transport);
  ASSERT_EQ(publish.size(), 1u);
  EXPECT_EQ(publish[0].envelope.correlation_id, healthy);
}

TEST_F(EngineRobustnessTest, StartWithDataThatCannotBeSerializedIsRefusedAtOnce) {
  EXPECT_THROW(engine->start<notes::NotesSaga>({"\xFF"}), std::invalid_argument);
}

// A start keeps its data as JSON text only (a retried turn reads it back), so data whose text
// reads back different is refused: NaN would come back as null.
TEST_F(EngineRobustnessTest, StartWithDataItsTextCannotCarryIsRefusedAtOnce) {
  const nlohmann::json not_finite = {{"text", "a"}, {"weight", std::nan("")}};
  EXPECT_THROW(engine->start("notes", not_finite), std::invalid_argument);
  const nlohmann::json binary = {{"text", "a"}, {"blob", nlohmann::json::binary({1, 2})}};
  EXPECT_THROW(engine->start("notes", binary), std::invalid_argument);
  EXPECT_NO_THROW(engine->start("notes", nlohmann::json{{"text", "a"}, {"weight", 1.5}}));
}

// A store that fails its next commit, its next poll for operator requests, its next read of
// the commands awaiting a reply, or its next read of one outbox row, when told to.
class FailingOnce final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  bool fail_commit = false;
  bool fail_poll = false;
  bool fail_awaiting = false;
  bool fail_outbox_message = false;

  saga::StoreResult<std::optional<saga::OutboxMessage>> outbox_message(
      const std::string& message_id) override {
    if (std::exchange(fail_outbox_message, false))
      return saga::StoreError{saga::StoreErrorCode::io_error, "injected"};
    return inner().outbox_message(message_id);
  }

  saga::StoreResult<std::vector<saga::OutboxMessage>> awaiting_reply(std::size_t limit) override {
    if (std::exchange(fail_awaiting, false))
      return saga::StoreError{saga::StoreErrorCode::io_error, "injected"};
    return inner().awaiting_reply(limit);
  }

  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    if (std::exchange(fail_commit, false))
      return saga::StoreStatus::failure(saga::StoreErrorCode::io_error, "injected");
    return inner().commit(batch);
  }
  saga::StoreResult<std::vector<saga::StoredOperatorRequest>> pending_operator_requests(
      std::size_t limit) override {
    if (std::exchange(fail_poll, false))
      return saga::StoreError{saga::StoreErrorCode::io_error, "injected"};
    return inner().pending_operator_requests(limit);
  }
};

// A turn whose commit failed keeps its inputs for the retry. A store read that fails before
// the retry (here the operator-request poll) fails that turn too, and must not drop them.
TEST_F(EngineRobustnessTest, AFailedReadBeforeARetriedTurnKeepsTheTurnsInputs) {
  options.operator_poll_interval = 0ms;  // poll every turn
  retry_failed_turns_at_once();
  FailingOnce failing(*store);
  saga::Engine engine(options, failing, transport, clock);
  engine.register_saga<order::OrderSaga>();
  engine.run_once();  // recovery

  failing.fail_commit = true;
  std::string id = engine.start<order::OrderSaga>({"order-1", "c", "a", {{"sku", 1, 10}}});
  engine.run_once();
  EXPECT_FALSE(store->load_saga(id).value().has_value()) << "the failed commit wrote something";
  failing.fail_poll = true;
  engine.run_once();
  engine.run_once();

  EXPECT_TRUE(store->load_saga(id).value().has_value()) << "the start was lost";
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands.front().envelope.event_type, "inventory.Reserve");
  EXPECT_EQ(engine.stats().commit_failures, 2u);
}

// Recovery queues the pending commands; when its next read failed, the retried recovery queued
// them a second time and each was sent twice.
TEST_F(EngineRobustnessTest, RecoveryRetriedAfterAFailedReadSendsEachPendingCommandOnce) {
  transport.refuse_sends(saga::SendResult::unroutable);
  std::string id = engine->start<order::OrderSaga>({"order-1", "c", "a", {{"sku", 1, 10}}});
  engine->run_once();  // committed, but the command could not be sent: it stays pending
  engine.reset();
  transport.refuse_sends(std::nullopt);
  ASSERT_EQ(store->pending_outbox(10).value().size(), 1u);

  FailingOnce failing(*store);
  failing.fail_awaiting = true;
  saga::Engine restarted(options, failing, transport, clock);
  restarted.register_saga<order::OrderSaga>();
  restarted.run_once();  // recovery fails on its second read
  restarted.run_once();
  restarted.run_once();
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands.front().envelope.event_type, "inventory.Reserve");
}

// The engine keeps no payload for a command awaiting its reply: a re-send reads it back from the
// outbox. When that read fails, the overdue commands stay tracked and go out, the same bytes, on
// a later turn; the rest of the turn (here another saga's reply and its next command) goes on.
TEST_F(EngineRobustnessTest, AReSendWhoseOutboxReadFailsGoesOutLaterAndTheTurnGoesOn) {
  options.command_retry = {1s, 1.0, 1s, 0.0, 0};
  FailingOnce failing(*store);
  saga::Engine engine(options, failing, transport, clock);
  engine.register_saga<order::OrderSaga>();
  engine.start<order::OrderSaga>({"order-1", "c", "a", {{"sku", 1, 10}}});
  engine.start<order::OrderSaga>({"order-2", "c", "a", {{"sku", 1, 10}}});
  engine.run_once();
  auto overdue = take_commands(transport);
  ASSERT_EQ(overdue.size(), 2u);
  clock.advance(600ms);
  engine.start<order::OrderSaga>({"order-3", "c", "a", {{"sku", 1, 10}}});
  engine.run_once();
  auto reserve_other = take_commands(transport).at(0);

  clock.advance(600ms);  // the first two commands are overdue, the third is not
  transport.deliver(
      reply_bytes(reserve_other.envelope, "inventory.Reserved", {{"reservation_id", "r-3"}}));
  failing.fail_outbox_message = true;
  engine.run_once();
  auto sent = take_commands(transport);
  ASSERT_EQ(sent.size(), 1u) << "the reply applied and its next command sent, no re-send";
  EXPECT_EQ(sent[0].envelope.event_type, "payment.Charge");
  EXPECT_EQ(engine.stats().commit_failures, 0u);

  engine.run_once();
  auto resent = take_commands(transport);
  ASSERT_EQ(resent.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_EQ(resent[i].bytes, overdue[i].bytes) << "the same bytes, read back from the outbox";
  EXPECT_EQ(engine.stats().command_resends, 2u);
}

// A poisoned input is taken out by a commit of its own (a dead letter). When that commit failed,
// the input was put back without counting the failure or waiting: the loop spun on a failing
// store.
TEST_F(EngineRobustnessTest, AFailedCommitOfAPoisonedInputsDeadLetterIsAFailedTurn) {
  options.poison_attempts = 1;
  retry_failed_turns_at_once();
  FailingOnce failing(*store);
  saga::Engine engine(options, failing, transport, clock);
  engine.register_saga<notes::NotesSaga>();
  std::string poisoned = engine.start<notes::NotesSaga>({"\xC3\xA9t\xC3\xA9"});  // "été"
  engine.run_once();
  auto write = take_commands(transport).at(0);
  transport.deliver(
      reply_bytes(write.envelope, "notes.Written", {{"text", write.envelope.data["text"]}}));

  failing.fail_commit = true;
  engine.run_once();
  EXPECT_EQ(engine.stats().commit_failures, 1u);
  EXPECT_TRUE(store->dead_letters(10).value().empty());
  engine.run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].saga_id, poisoned);
  EXPECT_EQ(letters[0].reason_code, "processing_error");
}

// A start whose first command cannot be encoded (clipped::make_command splits a character) fails
// its turn every time it is tried: it is taken out like any poisoned input, dead-lettered as
// "start_failed" with its data's JSON text as the raw bytes, and reported as a Failed outcome
// that carries the data. start() keeps only that text, so both are rebuilt from it.
TEST_F(EngineRobustnessTest, AStartThatAlwaysFailsItsTurnIsDeadLetteredWithItsDataAndEndsFailed) {
  retry_failed_turns_at_once();
  engine->register_saga<clipped::ClippedSaga>();
  const std::string broken = engine->start<clipped::ClippedSaga>({"\xC3\xA9t\xC3\xA9"});  // "été"
  const std::string healthy = engine->start<notes::NotesSaga>({"fine"});
  for (int turn = 0; turn < 20; ++turn) {
    clock.advance(1s);
    engine->run_once();
  }

  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "start_failed");
  EXPECT_EQ(letters[0].saga_id, broken);
  EXPECT_EQ(letters[0].message_type, "clipped");
  EXPECT_EQ(letters[0].raw, "{\"text\":\"\xC3\xA9t\xC3\xA9\"}");
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].saga_id, broken);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Failed);
  EXPECT_EQ(outcomes[0].data, nlohmann::json({{"text", "\xC3\xA9t\xC3\xA9"}}));
  EXPECT_FALSE(store->load_saga(broken).value().has_value());
  auto other = store->load_saga(healthy).value();
  ASSERT_TRUE(other.has_value()) << "the other start of the turn went on";
  EXPECT_EQ(other->state, "awaiting:notes.Write");
}

TEST_F(EngineRobustnessTest, StopDrainsStartsAlreadyAcceptedAndRefusesNewOnes) {
  std::string id = engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  engine->stop();
  engine->run();  // returns after draining
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:inventory.Reserve");
  EXPECT_EQ(take_commands(transport).size(), 1u);
  EXPECT_EQ(store->pending_outbox(10).value().size(), 1u) << "committed, sent once";
  EXPECT_THROW(engine->start<order::OrderSaga>({"o-2", "c-1", "addr", {{"sku", 1, 100}}}),
               std::logic_error);
}

// The drain used to stop after 100 turns: with one input per turn, the starts past the 100th were
// destroyed with the engine, although start() had accepted them.
TEST_F(EngineRobustnessTest, StopDrainsEveryAcceptedStartHoweverManyTurnsItTakes) {
  saga::Options one_per_turn = options;
  one_per_turn.max_batch_messages = 1;
  saga::Engine engine(one_per_turn, *store, transport, clock);
  engine.register_saga<order::OrderSaga>();
  std::vector<std::string> ids;
  for (int i = 0; i < 150; ++i)
    ids.push_back(engine.start<order::OrderSaga>(
        {"o-" + std::to_string(i), "c-1", "addr", {{"sku", 1, 100}}}));
  engine.stop();
  engine.run();
  for (const auto& id : ids) {
    auto saga = store->load_saga(id).value();
    ASSERT_TRUE(saga.has_value()) << id << " was accepted but never committed";
    EXPECT_EQ(saga->state, "awaiting:inventory.Reserve");
  }
  EXPECT_EQ(take_commands(transport).size(), 150u);
  EXPECT_EQ(store->pending_outbox(200).value().size(), 150u) << "committed, each sent once";
}

// A saga row the store cannot read (here a status this build does not know) used to fail every
// turn that touched it: the turn was retried for ever and no other saga moved.
TEST_F(EngineRobustnessTest, ASagaRowThatCannotBeReadRefusesOnlyItsOwnReplies) {
  const auto db = std::filesystem::temp_directory_path() /
                  ("saga-unreadable-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(db);
  saga::Options file_options = options;
  file_options.store.path = db.string();
  auto file_store = std::move(saga::SqliteStore::open(file_options.store).value());
  auto first = std::make_unique<saga::Engine>(file_options, *file_store, transport, clock);
  first->register_saga<order::OrderSaga>();
  std::string bad = first->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  std::string good = first->start<order::OrderSaga>({"o-2", "c-1", "addr", {{"sku", 1, 100}}});
  first->run_once();
  first->run_once();
  first.reset();
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 2u);
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    const std::string sql = "UPDATE sagas SET status = 'Bogus' WHERE id = '" + bad + "'";
    EXPECT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }

  saga::Engine engine(file_options, *file_store, transport, clock);
  engine.register_saga<order::OrderSaga>();
  engine.run_once();
  for (const auto& command : commands)
    transport.deliver(
        reply_bytes(command.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  engine.run_once();
  EXPECT_EQ(engine.stats().commit_failures, 0u);
  EXPECT_EQ(file_store->load_saga(good).value()->state, "awaiting:payment.Charge");
  auto letters = file_store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unreadable_saga");
  EXPECT_NE(letters[0].reason.find("Bogus"), std::string::npos) << letters[0].reason;
  file_store.reset();
  std::filesystem::remove(db);
  std::filesystem::remove(db.string() + "-wal");
  std::filesystem::remove(db.string() + "-shm");
  std::filesystem::remove(db.string() + ".lock");
}

// Records, in order, the read scopes, the reads the engine makes while applying a turn, and the
// commits; the inbox read fails when told to.
class ScopeRecorder final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  std::vector<std::string> events;
  bool fail_inbox = false;

  void begin_reads() noexcept override {
    events.push_back("begin");
    inner().begin_reads();
  }
  void end_reads() noexcept override {
    events.push_back("end");
    inner().end_reads();
  }
  saga::StoreResult<bool> inbox_contains(const std::string& message_id) override {
    events.push_back("inbox");
    if (std::exchange(fail_inbox, false))
      return saga::StoreError{saga::StoreErrorCode::io_error, "injected"};
    return inner().inbox_contains(message_id);
  }
  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    events.push_back("commit");
    return inner().commit(batch);
  }
};

// The lookups of a turn share the store's read scope (one read transaction for the turn instead
// of one per reply); the scope ends before the turn commits, also when a read fails.
TEST_F(EngineRobustnessTest, ATurnsReadsShareOneReadScopeThatEndsBeforeItsCommit) {
  retry_failed_turns_at_once();
  ScopeRecorder recorder(*store);
  saga::Engine engine(options, recorder, transport, clock);
  engine.register_saga<order::OrderSaga>();
  engine.run_once();  // recovery
  engine.start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  engine.start<order::OrderSaga>({"o-2", "c-1", "addr", {{"sku", 1, 100}}});
  engine.run_once();
  auto commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 2u);

  recorder.events.clear();
  for (const auto& command : commands)
    transport.deliver(
        reply_bytes(command.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  engine.run_once();
  EXPECT_EQ(recorder.events,
            (std::vector<std::string>{"begin", "inbox", "inbox", "end", "commit"}));

  recorder.events.clear();
  commands = take_commands(transport);
  ASSERT_EQ(commands.size(), 2u);
  transport.deliver(reply_bytes(commands[0].envelope, "payment.Charged", {{"payment_id", "p"}}));
  recorder.fail_inbox = true;
  engine.run_once();  // the read fails: the turn is abandoned, its scope ended
  engine.run_once();  // retried
  EXPECT_EQ(recorder.events,
            (std::vector<std::string>{"begin", "inbox", "end", "begin", "inbox", "end", "commit"}));
  EXPECT_EQ(engine.stats().commit_failures, 1u);
  EXPECT_EQ(engine.stats().messages_applied, 3u);
}

TEST_F(EngineRobustnessTest, ThrowingOutcomeCallbackIsCountedAndDoesNotStopTheLoop) {
  engine->on_outcome([](const saga::SagaOutcome&) { throw std::runtime_error("observer bug"); });
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {}});  // no items: ends at once
  engine->start<order::OrderSaga>({"o-2", "c-1", "addr", {}});
  engine->run_once();
  EXPECT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(engine->stats().callback_errors, 2u);
}

class EngineVersioningTest : public EngineRobustnessTest {
 protected:
  // Drives a fresh notes saga to "awaiting:notes.Publish" and returns the Publish command.
  saga::Envelope awaiting_publish() {
    engine->start<notes::NotesSaga>({"hello"});
    engine->run_once();
    auto write = take_commands(transport).at(0);
    transport.deliver(reply_bytes(write.envelope, "notes.Written", {{"text", "hello"}}));
    engine->run_once();
    return take_commands(transport).at(0).envelope;
  }
  void register_upcasters() {
    engine->register_upcaster("notes.Published", 1, [](nlohmann::json v1) {
      v1["channel"] = "web";
      return v1;
    });
    engine->register_upcaster("notes.Published", 2, [](nlohmann::json v2) {
      v2["channels"] = nlohmann::json::array({v2["channel"]});
      v2.erase("channel");
      return v2;
    });
  }
};

TEST_F(EngineVersioningTest, OldReplyIsUpcastStepByStepBeforeTheSagaSeesIt) {
  register_upcasters();
  auto publish = awaiting_publish();
  transport.deliver(reply_bytes(publish, "notes.Published", nlohmann::json::object(), {}, 1));
  engine->run_once();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].status, saga::SagaStatus::Completed);
  EXPECT_TRUE(store->dead_letters(10).value().empty());
}

TEST_F(EngineVersioningTest, CurrentVersionNeedsNoUpcaster) {
  auto publish = awaiting_publish();
  transport.deliver(reply_bytes(publish, "notes.Published", {{"channels", {"web"}}}, {}, 3));
  engine->run_once();
  ASSERT_EQ(outcomes.size(), 1u);
}

TEST_F(EngineVersioningTest, NewerVersionThanTheSagaReadsIsDeadLettered) {
  register_upcasters();
  auto publish = awaiting_publish();
  transport.deliver(reply_bytes(publish, "notes.Published", {{"channels", {"web"}}}, {}, 4));
  engine->run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unsupported_version");
  EXPECT_NE(letters[0].reason.find("newer"), std::string::npos);
  EXPECT_TRUE(outcomes.empty());
}

TEST_F(EngineVersioningTest, OldVersionWithoutAnUpcasterPathIsDeadLettered) {
  auto publish = awaiting_publish();
  transport.deliver(reply_bytes(publish, "notes.Published", nlohmann::json::object(), {}, 1));
  engine->run_once();
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "unsupported_version");
  EXPECT_NE(letters[0].reason.find("no upcaster from version 1 to 2"), std::string::npos);
}

TEST_F(EngineVersioningTest, ThrowingUpcasterIsRetriedThenDeadLetteredWithItsAttempts) {
  int calls = 0;
  engine->register_upcaster("notes.Published", 2, [&](nlohmann::json) -> nlohmann::json {
    ++calls;
    throw std::runtime_error("cannot read v2");
  });
  auto publish = awaiting_publish();
  std::string bytes = reply_bytes(publish, "notes.Published", {{"channel", "web"}}, {}, 2);
  transport.deliver(bytes);
  for (int turn = 0; turn < 6; ++turn) {
    engine->run_once();
    clock.advance(std::chrono::seconds{1});
  }
  EXPECT_EQ(calls, 3) << "Options::poison_attempts tries";
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason_code, "upcaster_failed");
  EXPECT_EQ(letters[0].attempts, 3);
  EXPECT_EQ(letters[0].raw, bytes);
  EXPECT_NE(letters[0].reason.find("cannot read v2"), std::string::npos) << letters[0].reason;
  EXPECT_TRUE(outcomes.empty());
}

TEST_F(EngineVersioningTest, UpcasterThatFailsOnceSucceedsOnItsRetryWithoutADeadLetter) {
  int calls = 0;
  engine->register_upcaster("notes.Published", 2, [&](nlohmann::json v2) -> nlohmann::json {
    if (++calls == 1) throw std::runtime_error("schema registry unreachable");
    return {{"channels", {v2.at("channel")}}};
  });
  auto publish = awaiting_publish();
  transport.deliver(reply_bytes(publish, "notes.Published", {{"channel", "web"}}, {}, 2));
  engine->run_once();
  EXPECT_TRUE(outcomes.empty());
  clock.advance(std::chrono::seconds{1});
  engine->run_once();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(store->dead_letters(10).value().empty());
  ASSERT_EQ(outcomes.size(), 1u);
}

TEST_F(EngineRobustnessTest, RetriableStepIsNeverGivenUp) {
  saga::Options options = options_for_timeouts();
  engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
  engine->register_saga<notes::NotesSaga>();
  std::string id = engine->start<notes::NotesSaga>({"hello"});
  engine->run_once();
  auto write = take_commands(transport).at(0);
  transport.deliver(reply_bytes(write.envelope, "notes.Written", {{"text", "hello"}}));
  engine->run_once();
  ASSERT_EQ(take_commands(transport).size(), 1u);  // notes.Publish
  for (int i = 0; i < 6; ++i) {                    // three times the step policy's attempts
    clock.advance(11s);
    engine->run_once();
    EXPECT_EQ(take_commands(transport).size(), 1u) << "re-send " << i;
  }
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Running);
  EXPECT_EQ(engine->stats().command_timeouts, 0u);
}

TEST(SagaRegistration, TableWithoutAStartRowIsRefused) {
  EXPECT_THROW(saga::make_saga_type<notes::Headless>(), std::logic_error);
}

}  // namespace
