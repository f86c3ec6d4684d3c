// A store may return from commit() before the batch is durable (SqliteStore's sync thread): the
// engine then hands nothing of a turn to the outside world (commands, outcomes) until
// Store::durable_through() reaches the turn's commit. A loop with nothing else to do waits in
// Store::sync() for it.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../support/participant.hpp"
#include "../support/partly_away_transport.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::SentCommand;
using saga::test::take_commands;

// Commits are durable only when the test says so (make_durable). sync() waits for that, or, with
// `instant_sync`, makes the commits durable itself (as a real store's fsync would), though never
// past `ceiling`: a turn can then stay held while a test steps the engine with run_once().
class ManualDurabilityStore final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    saga::StoreStatus status = inner().commit(batch);
    if (status && !batch.empty()) last_.fetch_add(1);
    return status;
  }
  std::uint64_t last_commit() const noexcept override { return last_.load(); }
  std::uint64_t durable_through() const noexcept override { return durable_.load(); }
  saga::StoreStatus sync() override {
    ++syncs;
    const std::uint64_t target = last_.load();
    if (instant_sync) {
      make_durable(std::min(target, ceiling.load()));
      return saga::StoreStatus::success();
    }
    std::unique_lock lock(mutex_);
    durable_changed_.wait(lock, [&] { return durable_.load() >= target; });
    return saga::StoreStatus::success();
  }

  void make_durable(std::uint64_t commit) {
    {
      std::lock_guard lock(mutex_);
      durable_.store(commit);
    }
    durable_changed_.notify_all();
  }

  void begin_sync() override { ++begun_syncs; }

  std::atomic<int> syncs{0};
  std::atomic<int> begun_syncs{0};
  std::atomic<bool> instant_sync{false};
  std::atomic<std::uint64_t> ceiling{std::numeric_limits<std::uint64_t>::max()};

 private:
  std::atomic<std::uint64_t> last_{0}, durable_{0};
  std::mutex mutex_;
  std::condition_variable durable_changed_;
};

class EngineDurabilityTest : public ::testing::Test {
 protected:
  EngineDurabilityTest() {
    options.store.path = ":memory:";
    options.publish_events = false;
    store = std::move(saga::SqliteStore::open(options.store).value());
    manual = std::make_unique<ManualDurabilityStore>(*store);
  }

  void make_engine() {
    engine = std::make_unique<saga::Engine>(options, *manual, transport, clock);
    engine->register_saga<order::OrderSaga>();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) {
      std::lock_guard lock(mutex);
      outcomes.push_back(std::string(saga::to_string(outcome.status)));
    });
  }

  // Runs the loop on a thread. Its first commit records the saga definitions, so the turns are
  // commits base + 1, base + 2, ...
  void start_loop() {
    loop = std::thread([this] { engine->run(); });
    ASSERT_TRUE(eventually([&] { return manual->last_commit() >= base; }));
  }

  void stop_loop() {
    engine->stop();
    loop.join();
  }

  ~EngineDurabilityTest() override {
    if (!loop.joinable()) return;
    manual->instant_sync = true;
    manual->make_durable(manual->last_commit());
    stop_loop();
  }

  // Waits (briefly) for `done`.
  static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  // Commit number `commit` is made, and for a while nothing is sent; once it is durable its
  // command is, well before the idle wait would have ended (the store's wake-up did it).
  SentCommand one_command_once_durable(std::uint64_t commit) {
    EXPECT_TRUE(eventually([&] { return manual->last_commit() >= commit; }));
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(take_commands(transport.inner).empty())
        << "sent before commit " << commit << " was durable";
    manual->make_durable(commit);
    std::vector<SentCommand> sent = commands_sent(1);
    EXPECT_EQ(sent.size(), 1u);
    return sent.empty() ? SentCommand{} : sent.front();
  }

  // The commands sent from now on, once there are `count` (or after a while, however many).
  std::vector<SentCommand> commands_sent(std::size_t count) {
    std::vector<SentCommand> sent;
    eventually([&] {
      for (auto& command : take_commands(transport.inner)) sent.push_back(std::move(command));
      return sent.size() >= count;
    });
    return sent;
  }

  std::size_t outcome_count() {
    std::lock_guard lock(mutex);
    return outcomes.size();
  }

  saga::Options options;
  saga::ManualClock clock;
  saga::test::PartlyAwayTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<ManualDurabilityStore> manual;
  std::unique_ptr<saga::Engine> engine;
  std::thread loop;
  const std::uint64_t base = 1;
  std::mutex mutex;
  std::vector<std::string> outcomes;
};

TEST_F(EngineDurabilityTest, NoCommandOrOutcomeLeavesBeforeItsCommitIsDurable) {
  options.idle_wait = 10s;  // a release that waited for the idle wait to end would time out
  make_engine();
  start_loop();
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});

  SentCommand reserve = one_command_once_durable(base + 1);
  EXPECT_EQ(reserve.destination, "inventory");
  transport.inner.deliver(
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}}));
  SentCommand charge = one_command_once_durable(base + 2);
  EXPECT_EQ(charge.destination, "payment");
  transport.inner.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p"}}));
  SentCommand ship = one_command_once_durable(base + 3);
  EXPECT_EQ(ship.destination, "shipping");
  transport.inner.deliver(
      reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "t"}}));

  ASSERT_TRUE(eventually([&] { return manual->last_commit() >= base + 4; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(outcome_count(), 0u) << "the outcome was reported before its commit was durable";
  EXPECT_EQ(engine->stats().sagas_completed, 0u);
  manual->make_durable(base + 4);
  ASSERT_TRUE(eventually([&] { return outcome_count() == 1; }));
  EXPECT_EQ(outcomes.front(), "Completed");
  EXPECT_EQ(manual->begun_syncs.load(), 0) << "turns that were not full did not wait for the disk";

  stop_loop();
}

// What arrives while the last commit's sync runs joins one turn, committed once that sync ends:
// its effects could not have left earlier, and one commit costs less than several.
TEST_F(EngineDurabilityTest, InputsArrivingDuringASyncShareOneCommitMadeWhenItEnds) {
  options.idle_wait = 10s;
  make_engine();
  start_loop();
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  ASSERT_TRUE(eventually([&] { return manual->last_commit() >= base + 1; }));
  engine->start<order::OrderSaga>({"o-2", "c-2", "addr", {{"sku", 1, 100}}});
  engine->start<order::OrderSaga>({"o-3", "c-3", "addr", {{"sku", 1, 100}}});
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(manual->last_commit(), base + 1);

  manual->make_durable(base + 1);
  std::vector<SentCommand> sent;
  ASSERT_TRUE(eventually([&] {
    for (auto& command : take_commands(transport.inner)) sent.push_back(std::move(command));
    return !sent.empty() && manual->last_commit() >= base + 2;
  }));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].envelope.data.at("order_id"), "o-1");
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(manual->last_commit(), base + 2) << "o-2 and o-3 were not committed together";
  EXPECT_TRUE(take_commands(transport.inner).empty());

  manual->make_durable(base + 2);
  sent = commands_sent(2);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].envelope.data.at("order_id"), "o-2");
  EXPECT_EQ(sent[1].envelope.data.at("order_id"), "o-3");
  stop_loop();
}

// A full turn does not wait for the sync before it: it commits, and is held behind the earlier
// turn; both leave in commit order once durable.
TEST_F(EngineDurabilityTest, AFullTurnCommitsWhileTheSyncBeforeItRunsAndLeavesInCommitOrder) {
  options.idle_wait = 10s;
  options.max_batch_messages = 1;
  make_engine();
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  engine->start<order::OrderSaga>({"o-2", "c-2", "addr", {{"sku", 1, 100}}});
  start_loop();
  ASSERT_TRUE(eventually([&] { return manual->last_commit() >= base + 2; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(take_commands(transport.inner).empty());

  manual->make_durable(base + 2);  // both at once: the first commit's command first
  std::vector<SentCommand> sent = commands_sent(2);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].envelope.data.at("order_id"), "o-1");
  EXPECT_EQ(sent[1].envelope.data.at("order_id"), "o-2");
  EXPECT_GE(manual->begun_syncs.load(), 2) << "full turns waited for the disk";
  stop_loop();
}

// Engine::run_once() is for callers that step the engine: it returns with its turn's effects
// handed out, waiting for the store's sync when it must.
TEST_F(EngineDurabilityTest, RunOnceReturnsWithItsTurnsCommandsSent) {
  options.idle_wait = 0ms;
  make_engine();
  manual->instant_sync = true;
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  engine->run_once();
  EXPECT_EQ(manual->syncs.load(), 1);
  auto commands = take_commands(transport.inner);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].destination, "inventory");
}

// stop() ends run() only with everything it committed durable and handed out.
TEST_F(EngineDurabilityTest, StoppingWaitsForTheHeldTurnsAndHandsThemOut) {
  options.idle_wait = 10s;
  make_engine();
  start_loop();
  engine->start<order::OrderSaga>({"o-1", "c-1", "addr", {{"sku", 1, 100}}});
  ASSERT_TRUE(eventually([&] { return manual->last_commit() >= base + 1; }));
  engine->stop();
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(take_commands(transport.inner).empty());
  manual->make_durable(base + 1);
  loop.join();
  EXPECT_GE(manual->syncs.load(), 1);
  EXPECT_EQ(take_commands(transport.inner).size(), 1u);
}

// The outbox already holds a held turn's commands. A destination's backlog read back from it
// must stop at them: sent before their commit is durable, they could outlive a crash that loses
// it. Once durable, they go out in commit order.
TEST_F(EngineDurabilityTest, TheBacklogReadBackStopsAtAHeldTurnsCommandsUntilTheyAreDurable) {
  options.idle_wait = 0ms;
  options.max_queued_commands = 1;
  options.max_batch_messages = 1;
  make_engine();
  manual->instant_sync = true;
  transport.away = {"inventory"};
  auto start = [&](const std::string& order) {
    engine->start<order::OrderSaga>({order, "c", "addr", {{"sku", 1, 100}}});
    engine->run_once();
  };
  start("o-1");  // queued in memory (the limit), refused
  start("o-2");  // the queue is full: left in the outbox, the destination's backlog
  manual->ceiling = manual->last_commit();
  start("o-3");  // committed, not durable: held, its command in the outbox behind o-2's
  EXPECT_EQ(manual->durable_through(), manual->last_commit() - 1);

  transport.away.clear();
  engine->run_once();  // sends the queue, then reads the backlog back
  std::vector<std::string> orders;
  for (const auto& command : take_commands(transport.inner))
    orders.push_back(command.envelope.data.at("order_id"));
  EXPECT_EQ(orders, (std::vector<std::string>{"o-1", "o-2"}));

  manual->ceiling = std::numeric_limits<std::uint64_t>::max();
  engine->run_once();
  orders.clear();
  for (const auto& command : take_commands(transport.inner))
    orders.push_back(command.envelope.data.at("order_id"));
  EXPECT_EQ(orders, (std::vector<std::string>{"o-3"}));
}

// Engine::start wakes the loop only when it finds no start queued (the loop takes them all
// before it waits). Lone starts and bursts of starts from several threads, each after the loop
// went idle, must all be committed long before the idle wait would have ended: a lost wake-up
// leaves starts queued while the loop sleeps for 10 s.
TEST_F(EngineDurabilityTest, StartsFromSeveralThreadsAlwaysWakeAnIdleLoop) {
  options.idle_wait = 10s;
  manual->instant_sync = true;
  make_engine();
  start_loop();
  constexpr int kBursts = 20;
  std::uint64_t expected = 0;
  for (int burst = 0; burst < kBursts; ++burst) {
    const bool lone = burst % 2 == 0;
    const int threads = lone ? 1 : 4, per_thread = lone ? 1 : 25;
    std::vector<std::thread> starters;
    for (int t = 0; t < threads; ++t)
      starters.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          const std::string order =
              std::to_string(burst) + "-" + std::to_string(t) + "-" + std::to_string(i);
          engine->start<order::OrderSaga>({order, "c", "addr", {{"sku", 1, 100}}});
        }
      });
    for (auto& starter : starters) starter.join();
    expected += static_cast<std::uint64_t>(threads * per_thread);
    ASSERT_TRUE(eventually([&] { return engine->stats().sagas_started == expected; }))
        << "burst " << burst << ": " << engine->stats().sagas_started << " of " << expected
        << " committed; the loop slept through a start";
    std::this_thread::sleep_for(20ms);  // the loop goes back to its idle wait
  }
  stop_loop();
}

// A turn that stopped taking messages at Options::max_batch_bytes is full: more input is
// waiting, so it leaves its fsync to the store's thread as a turn full by count does.
TEST_F(EngineDurabilityTest, ATurnEndedByItsByteBudgetLeavesItsFsyncToTheStoresThread) {
  options.max_batch_bytes = 1;
  manual->instant_sync = true;
  make_engine();
  start_loop();
  const int before = manual->begun_syncs.load();
  transport.inner.deliver("not json");
  transport.inner.deliver("not json either");
  ASSERT_TRUE(eventually([&] { return engine->stats().dead_letters == 2; }));
  EXPECT_GE(manual->begun_syncs.load() - before, 1);
  stop_loop();
}

}  // namespace
