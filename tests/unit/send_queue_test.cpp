// The send queue (Options::max_queued_commands) bounds how many unsent commands per destination
// the engine holds in memory while a participant does not take them. The newer ones wait in the
// outbox only and are read back in commit order, also after a restart: nothing a participant or
// the store sees may differ from a run that holds every command in memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "../support/partly_away_transport.hpp"
#include "../support/store_lines.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/log.hpp"
#include "saga/memory_transport.hpp"
#include "saga/metrics.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::PartlyAwayTransport;
using saga::test::reply_bytes;
using saga::test::take_commands;
using saga::test::uuid_number;

// Fails the next `failures` reads of a destination's backlog; can hold commits back from being
// durable.
class FailingReadBack final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  saga::StoreResult<std::vector<saga::OutboxMessage>> pending_outbox_for(
      const std::string& destination, std::int64_t after_sequence, std::size_t limit) override {
    if (failures > 0) {
      --failures;
      return saga::StoreError{saga::StoreErrorCode::io_error, "disk I/O error (injected)"};
    }
    return inner().pending_outbox_for(destination, after_sequence, limit);
  }
  // Commits are durable up to `durable_ceiling` only (sync() does not move it): a turn stays held.
  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    saga::StoreStatus status = inner().commit(batch);
    if (status && !batch.empty()) ++commits;
    return status;
  }
  std::uint64_t last_commit() const noexcept override { return commits; }
  std::uint64_t durable_through() const noexcept override {
    return std::min(commits, durable_ceiling);
  }
  int failures = 0;
  std::uint64_t commits = 0;
  std::uint64_t durable_ceiling = std::numeric_limits<std::uint64_t>::max();
};

struct QueueRun {
  QueueRun(std::size_t max_queued_commands, const std::filesystem::path& directory) {
    options.store.path = (directory / ("queue-" + std::to_string(max_queued_commands) + ".db"));
    options.store.durability = saga::Durability::off;
    options.idle_wait = 0ms;
    options.max_queued_commands = max_queued_commands;
    options.publish_events = false;
    options.metrics = metrics;
    options.logger = saga::make_stream_logger(log, saga::LogFormat::console, saga::LogLevel::info);
    options.command_retry = {1h, 1.0, 1h, 0.0, 0};  // no re-sends: only the queue decides
    options.compensation_retry = options.command_retry;
    options.id_generator = [this] { return uuid_number(++ids); };
    open();
  }

  void open() {
    store = std::move(saga::SqliteStore::open(options.store).value());
    failing = std::make_unique<FailingReadBack>(*store);
    engine = std::make_unique<saga::Engine>(options, *failing, transport, clock);
    engine->register_saga<order::OrderSaga>();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) {
      outcomes.push_back(outcome.saga_id + " " + std::string(saga::to_string(outcome.status)));
    });
  }

  void restart() {
    engine.reset();
    failing.reset();
    store.reset();
    open();
  }

  void drain() {
    while (engine->run_once() > 0) held_at_most = std::max(held_at_most, queued());
    engine->run_once();
    held_at_most = std::max(held_at_most, queued());
  }

  std::uint64_t queued() const { return engine->stats().queued_commands; }

  // The commands handed to the transport since the last call, also logged by destination.
  std::vector<saga::test::SentCommand> sent() {
    auto commands = take_commands(transport.inner);
    for (const auto& command : commands) sent_log[command.destination].push_back(command.bytes);
    return commands;
  }

  void reply(const saga::Envelope& command, std::string type, nlohmann::json data) {
    transport.inner.deliver(
        reply_bytes(command, std::move(type), std::move(data), uuid_number(1000000 + ++replies)));
  }

  int ids = 0;
  int replies = 0;
  std::uint64_t held_at_most = 0;
  std::shared_ptr<saga::Metrics> metrics = std::make_shared<saga::Metrics>();
  std::ostringstream log;
  saga::Options options;
  saga::ManualClock clock;
  PartlyAwayTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<FailingReadBack> failing;
  std::unique_ptr<saga::Engine> engine;
  std::vector<std::string> outcomes;
  std::map<std::string, std::vector<std::string>> sent_log;
};

std::vector<std::string> start_orders(QueueRun& run, int first, int count) {
  std::vector<std::string> ids;
  for (int i = first; i < first + count; ++i)
    ids.push_back(run.engine->start<order::OrderSaga>(
        {"o-" + std::to_string(i), "c-" + std::to_string(i), "addr", {{"sku", 1 + i % 3, 100}}}));
  return ids;
}

// Fifty orders while each participant in turn is away, with two restarts while commands wait:
// the inventory takes nothing for the first thirty, the payment service nothing until after a
// restart, the shipping and the inventory (now releasing) nothing until after another.
std::vector<std::string> play(QueueRun& run) {
  run.transport.away = {"inventory"};
  auto ids = start_orders(run, 0, 30);
  run.drain();
  EXPECT_TRUE(run.sent().empty());
  EXPECT_EQ(run.engine->stats().queued_commands + run.engine->stats().backlogged_commands, 30u);

  run.transport.away = {"payment"};
  run.drain();
  auto reserves = run.sent();
  EXPECT_EQ(reserves.size(), 30u);
  for (std::size_t i = 0; i < reserves.size(); ++i) {
    if (i % 7 == 3)
      run.reply(reserves[i].envelope, "inventory.OutOfStock", {{"sku", "sku"}, {"reason", "none"}});
    else
      run.reply(reserves[i].envelope, "inventory.Reserved",
                {{"reservation_id", "r-" + std::to_string(i)}});
  }
  run.drain();
  auto more = start_orders(run, 30, 20);
  ids.insert(ids.end(), more.begin(), more.end());
  run.drain();
  for (const auto& command : run.sent())
    run.reply(command.envelope, "inventory.Reserved", {{"reservation_id", "r-late"}});
  run.drain();
  EXPECT_TRUE(run.sent().empty()) << "every charge waits for the payment service";

  run.restart();
  run.drain();
  EXPECT_TRUE(run.sent().empty());
  run.transport.away = {"inventory", "shipping"};
  run.drain();
  auto charges = run.sent();
  EXPECT_EQ(charges.size(), 46u) << "four of the thirty were out of stock";
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (i % 5 == 1)
      run.reply(charges[i].envelope, "payment.Declined", {{"reason", "no funds"}});
    else
      run.reply(charges[i].envelope, "payment.Charged", {{"payment_id", "p-" + std::to_string(i)}});
  }
  run.drain();
  EXPECT_TRUE(run.sent().empty()) << "releases and shipments wait";

  run.restart();
  run.transport.away.clear();
  run.drain();
  auto last = run.sent();  // replied one destination after the other: the order across
  std::stable_sort(last.begin(), last.end(),  // destinations is not the queue's to keep
                   [](const auto& a, const auto& b) { return a.destination < b.destination; });
  EXPECT_EQ(last.size(), 46u) << "37 shipments and 9 releases";
  for (const auto& command : last) {
    if (command.envelope.event_type == "shipping.Ship")
      run.reply(command.envelope, "shipping.Shipped", {{"tracking_number", "t"}});
    else
      run.reply(command.envelope, "inventory.Released",
                {{"reservation_id", command.envelope.data.value("reservation_id", "")}});
  }
  run.drain();
  EXPECT_TRUE(run.sent().empty());
  return ids;
}

class SendQueue : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "send-queue-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    directory = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(directory); }
  std::filesystem::path directory;
};

TEST_F(SendQueue, AQueueOfOneOrThreeChangesNothingTheStoreOrTheParticipantsSee) {
  QueueRun reference(100000, directory);
  auto reference_ids = play(reference);
  const auto expected = saga::test::stored_lines(*reference.store, reference_ids, true);
  EXPECT_EQ(reference.held_at_most, 46u);
  EXPECT_EQ(reference.outcomes.size(), 50u);

  for (std::size_t limit : {1u, 3u}) {
    SCOPED_TRACE("max_queued_commands " + std::to_string(limit));
    QueueRun run(limit, directory);
    auto ids = play(run);
    ASSERT_EQ(ids, reference_ids);
    EXPECT_EQ(run.sent_log, reference.sent_log)
        << "each destination gets the same commands, bytes and order";
    EXPECT_EQ(run.outcomes, reference.outcomes);
    auto actual = saga::test::stored_lines(*run.store, ids, true);
    ASSERT_EQ(actual.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(actual[i], expected[i]) << i;
    EXPECT_LE(run.held_at_most, 2 * limit) << "per destination; at most two are away at once";
    EXPECT_EQ(run.engine->stats().backlogged_commands, 0u);
  }
}

TEST_F(SendQueue, HoldsAtMostItsLimitWhileAParticipantIsAwayAndCountsTheRest) {
  QueueRun run(4, directory);
  run.transport.away = {"inventory"};
  for (int round = 0; round < 5; ++round) {
    start_orders(run, round * 20, 20);
    run.drain();
    EXPECT_LE(run.queued(), 4u);
  }
  saga::EngineStats stats = run.engine->stats();
  EXPECT_EQ(stats.queued_commands, 4u);
  EXPECT_EQ(stats.backlogged_commands, 96u);
  std::string exposition = run.metrics->render();
  EXPECT_NE(exposition.find("saga_outbox_pending_messages 100"), std::string::npos) << exposition;
  EXPECT_NE(exposition.find("saga_outbox_backlog_messages 96"), std::string::npos);

  run.transport.away.clear();
  run.drain();
  auto sent = run.sent();
  ASSERT_EQ(sent.size(), 100u);
  for (std::size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(sent[i].envelope.data.value("order_id", ""), "o-" + std::to_string(i))
        << "in the order they were committed";
  stats = run.engine->stats();
  EXPECT_EQ(stats.queued_commands, 0u);
  EXPECT_EQ(stats.backlogged_commands, 0u);
  exposition = run.metrics->render();
  EXPECT_NE(exposition.find("saga_outbox_backlog_messages 0"), std::string::npos);
  auto count = [&](const std::string& text) {
    std::size_t found = 0;
    for (auto at = run.log.str().find(text); at != std::string::npos;
         at = run.log.str().find(text, at + 1))
      ++found;
    return found;
  };
  EXPECT_EQ(count("send queue full"), 1u) << run.log.str();
  EXPECT_EQ(count("send queue caught up"), 1u) << run.log.str();
  EXPECT_NE(run.log.str().find("readBack=96"), std::string::npos) << run.log.str();

  // Full again within the minute: not logged again, nor is its end; after a minute, both are.
  for (int episode = 0; episode < 2; ++episode) {
    run.transport.away = {"inventory"};
    start_orders(run, 100 + episode * 10, 10);
    run.drain();
    EXPECT_EQ(run.engine->stats().backlogged_commands, 6u);
    run.transport.away.clear();
    run.drain();
    EXPECT_EQ(run.sent().size(), 10u);
    EXPECT_EQ(count("send queue full"), 1u + episode) << run.log.str();
    EXPECT_EQ(count("send queue caught up"), 1u + episode) << run.log.str();
    run.clock.advance(61s);
  }
}

TEST_F(SendQueue, AfterARestartTheWaitingCommandsAreReadBackAFewAtATime) {
  QueueRun run(100000, directory);
  run.transport.away = {"inventory"};
  start_orders(run, 0, 40);
  run.drain();
  EXPECT_EQ(run.queued(), 40u);
  run.options.max_queued_commands = 5;
  run.restart();
  run.engine->run_once();
  EXPECT_EQ(run.queued(), 5u) << "not all forty at once";
  EXPECT_EQ(run.engine->stats().backlogged_commands, 35u);
  start_orders(run, 40, 5);  // committed after the start: behind the forty, sent once
  run.drain();
  EXPECT_EQ(run.engine->stats().backlogged_commands, 40u);
  run.transport.away.clear();
  run.drain();
  auto sent = run.sent();
  ASSERT_EQ(sent.size(), 45u);
  for (std::size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(sent[i].envelope.data.value("order_id", ""), "o-" + std::to_string(i));
  EXPECT_EQ(run.engine->stats().command_resends, 40u)
      << "each of the forty may have been sent before the restart: a re-send, recorded";
  auto resent = run.store->awaiting_reply(100).value();
  EXPECT_EQ(resent.size(), 40u);
  for (const auto& row : resent) EXPECT_EQ(row.attempts, 2);
  EXPECT_EQ(run.store->pending_outbox(100).value().size(), 5u) << "first sends are not recorded";
}

TEST_F(SendQueue, AFailedReadBackIsTriedAgainAndLosesNothing) {
  QueueRun run(2, directory);
  run.transport.away = {"inventory"};
  start_orders(run, 0, 10);
  run.drain();
  run.failing->failures = 1000;
  run.transport.away.clear();
  run.drain();
  EXPECT_EQ(run.sent().size(), 2u) << "what the queue held";
  EXPECT_EQ(run.engine->stats().backlogged_commands, 8u);
  start_orders(run, 10, 3);  // the queue is empty, but these go behind the backlog
  run.engine->run_once();
  EXPECT_TRUE(run.sent().empty());
  EXPECT_EQ(run.engine->stats().backlogged_commands, 11u);
  run.failing->failures = 0;
  run.drain();  // the rest
  auto sent = run.sent();
  ASSERT_EQ(sent.size(), 11u);
  for (std::size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(sent[i].envelope.data.value("order_id", ""), "o-" + std::to_string(i + 2));
  EXPECT_EQ(run.engine->stats().backlogged_commands, 0u);
}

// A saga parked as Failed (its release given up on), then a start whose backlog holds the first
// and the last order's reservations, with the inventory away. Sets the parked saga's id.
void park_a_saga_behind_a_restart_backlog(QueueRun& run, std::string& parked_id) {
  run.options.compensation_retry = {50ms, 1.0, 50ms, 0.0, 1};
  run.restart();
  start_orders(run, 0, 1);  // its reservation: sent, never answered
  run.drain();
  ASSERT_EQ(run.sent().size(), 1u);
  auto parked = start_orders(run, 1, 1);
  run.drain();
  run.reply(run.sent().at(0).envelope, "inventory.Reserved", {{"reservation_id", "r-1"}});
  run.drain();
  run.reply(run.sent().at(0).envelope, "payment.Declined", {{"reason", "no funds"}});
  run.drain();
  auto release = run.sent();  // the release, never answered
  ASSERT_EQ(release.size(), 1u);
  ASSERT_EQ(release[0].envelope.event_type, "inventory.Release");
  auto last = start_orders(run, 2, 1);  // its reservation: sent, never answered
  run.drain();
  ASSERT_EQ(run.sent().size(), 1u);
  run.clock.advance(60ms);
  run.drain();
  ASSERT_EQ(run.store->load_saga(parked[0]).value()->status, saga::SagaStatus::Failed);

  run.transport.away = {"inventory"};
  run.restart();  // backlog: the first and the last reservation (the release is closed)
  run.drain();
  parked_id = parked[0];
}

// A release given up on parks its saga; an operator retries it after a start, while the
// inventory's backlog (read back one at a time) still lies before the release's row: the retry
// sends it once, and the backlog does not send it again.
TEST_F(SendQueue, ACommandRetriedByAnOperatorIsNotSentAgainByTheBacklog) {
  QueueRun run(1, directory);
  std::string parked;
  ASSERT_NO_FATAL_FAILURE(park_a_saga_behind_a_restart_backlog(run, parked));
  auto answer = run.engine->retry(parked);
  run.drain();
  EXPECT_TRUE(answer.get().ok);
  run.transport.away.clear();
  run.drain();
  std::vector<std::string> types;
  for (const auto& command : run.sent()) types.push_back(command.envelope.event_type);
  EXPECT_EQ(types, (std::vector<std::string>{"inventory.Reserve", "inventory.Release",
                                             "inventory.Reserve"}));
  EXPECT_EQ(run.store->load_saga(parked).value()->status, saga::SagaStatus::Compensating);
}

// The same retry, its commit not yet durable when the inventory comes back: the retried release's
// row is open in the outbox again, and the backlog read-back must not send it early (it could
// outlive a crash that loses the retry); it leaves once the retry is durable, once.
TEST_F(SendQueue, ACommandRetriedByAnOperatorIsNotSentByTheBacklogBeforeTheRetryIsDurable) {
  QueueRun run(1, directory);
  std::string parked;
  ASSERT_NO_FATAL_FAILURE(park_a_saga_behind_a_restart_backlog(run, parked));
  run.failing->durable_ceiling = run.failing->last_commit();
  auto answer = run.engine->retry(parked);
  run.drain();
  run.transport.away.clear();
  run.drain();
  std::vector<std::string> types;
  for (const auto& command : run.sent()) types.push_back(command.envelope.event_type);
  EXPECT_EQ(types, (std::vector<std::string>{"inventory.Reserve", "inventory.Reserve"}));

  run.failing->durable_ceiling = std::numeric_limits<std::uint64_t>::max();
  run.drain();
  EXPECT_TRUE(answer.get().ok);
  types.clear();
  for (const auto& command : run.sent()) types.push_back(command.envelope.event_type);
  EXPECT_EQ(types, (std::vector<std::string>{"inventory.Release"}));
}

// After a start, a reservation that has no attempt left (a policy of one) lies in the inventory's
// backlog behind a release that is still being sent, while the inventory takes nothing: its
// timeout runs all the same, and its saga compensates.
TEST_F(SendQueue, ACommandWithNoAttemptLeftTimesOutAfterAStartWhileItsBacklogWaits) {
  QueueRun run(1, directory);
  run.options.retry_by_command["inventory.Reserve"] = {50ms, 1.0, 50ms, 0.0, 1};
  run.restart();
  start_orders(run, 0, 1);
  run.drain();
  run.reply(run.sent().at(0).envelope, "inventory.Reserved", {{"reservation_id", "r-0"}});
  run.drain();
  run.reply(run.sent().at(0).envelope, "payment.Declined", {{"reason", "no funds"}});
  run.drain();
  ASSERT_EQ(run.sent().at(0).envelope.event_type, "inventory.Release");  // never answered
  run.transport.away = {"inventory"};
  auto waiting = start_orders(run, 1, 1);
  run.drain();
  run.restart();  // backlog: the release, then the reservation
  run.drain();
  EXPECT_EQ(run.engine->stats().backlogged_commands, 0u)
      << "the release is queued; the reservation, out of attempts, is tracked instead";
  run.clock.advance(60ms);
  run.drain();
  EXPECT_EQ(run.engine->stats().command_timeouts, 1u);
  auto journal = run.store->journal(waiting[0]).value();
  EXPECT_TRUE(std::any_of(journal.begin(), journal.end(), [](const saga::JournalEntry& entry) {
    return entry.kind == saga::JournalKind::timed_out;
  }));
  run.transport.away.clear();
  run.drain();
  std::vector<std::string> types;
  for (const auto& command : run.sent()) types.push_back(command.envelope.event_type);
  EXPECT_EQ(types, (std::vector<std::string>{"inventory.Release", "inventory.Release"}))
      << "the first saga's release again, then the second's, for the reservation it gave up on";
}

TEST_F(SendQueue, ZeroIsRefused) {
  saga::Options options;
  options.store.path = ":memory:";
  options.max_queued_commands = 0;
  auto store = std::move(saga::SqliteStore::open(options.store).value());
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  EXPECT_THROW(saga::Engine(options, *store, transport, clock), std::invalid_argument);
}

}  // namespace
