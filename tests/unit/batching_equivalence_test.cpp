// Group commit must not change what happens: many messages for one saga arriving together
// (replies, duplicates, conflicting and late replies, interleaved with other sagas' replies) are
// applied one at a time, in arrival order, with no lost update. The final store equals the one a
// serial run (one message per transaction) produces.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "../support/store_lines.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;
using saga::test::uuid_number;

struct EngineRun {
  explicit EngineRun(std::size_t batch, std::size_t batch_bytes = saga::Options{}.max_batch_bytes) {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    options.max_batch_messages = batch;
    options.max_batch_bytes = batch_bytes;
    options.publish_events = false;
    options.id_generator = [this] { return uuid_number(++ids); };
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }
  void drain() {
    while (engine->run_once() > 0) {
    }
    engine->run_once();
  }

  // What the run left behind, without the bookkeeping that depends on batching (row versions,
  // send attempts).
  std::vector<std::string> outcome(const std::vector<std::string>& saga_ids) {
    return saga::test::stored_lines(*store, saga_ids, false);
  }

  int ids = 0;
  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

// Starts `sagas` orders, then delivers a burst in which every saga gets its reservation reply
// together with a duplicate of it, a second, different reply to the same command and a
// conflicting out-of-stock reply; saga 0 also gets its payment reply in the same burst.
std::vector<std::string> play(EngineRun& run, int sagas) {
  std::vector<std::string> ids;
  for (int i = 0; i < sagas; ++i)
    ids.push_back(run.engine->start<order::OrderSaga>(
        {"o-" + std::to_string(i), "c", "addr", {{"sku", 1, 100 + i}}}));
  run.drain();
  auto reserves = take_commands(run.transport);
  EXPECT_EQ(reserves.size(), static_cast<std::size_t>(sagas));
  int reply = 1000;
  for (const auto& command : reserves) {
    std::string first = reply_bytes(command.envelope, "inventory.Reserved",
                                    {{"reservation_id", "r"}}, uuid_number(++reply));
    run.transport.deliver(first);
    run.transport.deliver(first);  // a duplicate
    run.transport.deliver(reply_bytes(command.envelope, "inventory.Reserved",
                                      {{"reservation_id", "other"}}, uuid_number(++reply)));
    run.transport.deliver(reply_bytes(command.envelope, "inventory.OutOfStock",
                                      {{"sku", "sku"}, {"reason", "none"}}, uuid_number(++reply)));
  }
  run.drain();
  auto charges = take_commands(run.transport);
  EXPECT_EQ(charges.size(), static_cast<std::size_t>(sagas));
  for (const auto& command : charges) {
    run.transport.deliver(reply_bytes(command.envelope, "payment.Charged", {{"payment_id", "p"}},
                                      uuid_number(++reply)));
    run.transport.deliver(reply_bytes(command.envelope, "payment.Declined", {{"reason", "late"}},
                                      uuid_number(++reply)));
  }
  run.drain();
  return ids;
}

TEST(BatchingEquivalence, BurstForOneSagaInOneTransactionEqualsASerialRun) {
  EngineRun batched(256), serial(1);
  auto batched_ids = play(batched, 12);
  auto serial_ids = play(serial, 12);
  ASSERT_EQ(batched_ids, serial_ids);
  EXPECT_LT(batched.engine->stats().commits, serial.engine->stats().commits / 4)
      << "the burst should have shared transactions";
  auto expected = serial.outcome(serial_ids);
  auto actual = batched.outcome(batched_ids);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(actual[i], expected[i]) << i;
  for (const auto& id : batched_ids)
    EXPECT_EQ(batched.store->load_saga(id).value()->state, "awaiting:shipping.Ship");
  EXPECT_EQ(batched.engine->stats().duplicates, 12u);
}

// A turn stops taking messages once their bytes reach Options::max_batch_bytes: the message that
// crosses the budget is taken, one larger than the whole budget is taken on its own, and a budget
// of 0 makes turns of one message. The default budget does not bind for messages of a few KiB.
TEST(BatchingEquivalence, ATurnStopsTakingMessagesOnceTheirBytesReachMaxBatchBytes) {
  const std::string ten_kib(10 * 1024, 'x');  // not JSON: each is one input, dead-lettered
  auto received = [](EngineRun& run) { return run.engine->stats().messages_received; };

  EngineRun bounded(1024, 64 * 1024);
  for (int i = 0; i < 20; ++i) bounded.transport.deliver(ten_kib);
  bounded.engine->run_once();
  EXPECT_EQ(received(bounded), 7u) << "6 messages are 60 KiB, the 7th crosses 64 KiB";
  bounded.engine->run_once();
  EXPECT_EQ(received(bounded), 14u);
  bounded.engine->run_once();
  EXPECT_EQ(received(bounded), 20u);

  bounded.transport.deliver(std::string(100 * 1024, 'x'));
  bounded.transport.deliver(ten_kib);
  bounded.engine->run_once();
  EXPECT_EQ(received(bounded), 21u) << "a message past the budget makes a turn of its own";
  bounded.engine->run_once();
  EXPECT_EQ(received(bounded), 22u);
  EXPECT_EQ(bounded.engine->stats().dead_letters, 22u);

  EngineRun one_each(1024, 0);  // a budget of 0: one message per turn, never none
  for (int i = 0; i < 3; ++i) one_each.transport.deliver(ten_kib);
  for (std::uint64_t turn = 1; turn <= 3; ++turn) {
    one_each.engine->run_once();
    EXPECT_EQ(received(one_each), turn);
  }

  EngineRun by_default(1024);
  for (int i = 0; i < 20; ++i) by_default.transport.deliver(ten_kib);
  by_default.engine->run_once();
  EXPECT_EQ(received(by_default), 20u);
}

}  // namespace
