// The saga cache (Options::max_cached_sagas) bounds how many sagas stay in memory between turns.
// A saga that left it is read back from the store when it is next needed, and nothing a store or
// a participant sees may differ from a run whose cache holds every saga.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "../support/store_lines.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/metrics.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;
using saga::test::uuid_number;

struct CacheRun {
  CacheRun(std::size_t max_cached_sagas, std::size_t batch) {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    options.max_batch_messages = batch;
    options.max_cached_sagas = max_cached_sagas;
    options.publish_events = false;
    options.metrics = metrics;
    options.command_retry = {100ms, 1.0, 100ms, 0.0, 2};  // two sends, then the step fails
    options.compensation_retry = {100ms, 1.0, 100ms, 0.0, 0};
    options.id_generator = [this] { return uuid_number(++ids); };
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
    engine->on_outcome([this](const saga::SagaOutcome& outcome) {
      outcomes.push_back(outcome.saga_id + " " + std::string(saga::to_string(outcome.status)) +
                         " " + outcome.data.dump());
    });
  }

  void drain() {
    while (engine->run_once() > 0) {
    }
    engine->run_once();
  }

  // The commands the engine handed to the transport since the last call; each is also logged
  // as sent (destination and bytes), for comparing runs.
  std::vector<saga::test::SentCommand> sent() {
    auto commands = take_commands(transport);
    for (const auto& command : commands)
      sent_log.push_back(command.destination + " " + command.bytes);
    return commands;
  }

  std::vector<std::string> stored(const std::vector<std::string>& saga_ids) {
    return saga::test::stored_lines(*store, saga_ids, true);
  }

  int ids = 0;
  std::shared_ptr<saga::Metrics> metrics = std::make_shared<saga::Metrics>();
  saga::Options options;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::vector<std::string> outcomes;
  std::vector<std::string> sent_log;
};

// A participant's success reply to a command of the later steps and compensations.
std::pair<std::string, nlohmann::json> success_reply(const saga::Envelope& command) {
  if (command.event_type == "inventory.Reserve")
    return {"inventory.Reserved", {{"reservation_id", "r-late"}}};
  if (command.event_type == "inventory.Release")
    return {"inventory.Released", {{"reservation_id", command.data.value("reservation_id", "")}}};
  if (command.event_type == "payment.Refund")
    return {"payment.Refunded", {{"payment_id", command.data.value("payment_id", "")}}};
  return {"shipping.Shipped", {{"tracking_number", "t-" + command.data.value("order_id", "")}}};
}

// Forty orders through every path a saga takes while waiting: replies (with duplicates and a
// second, conflicting reply), a declined payment and its compensation, a reservation that never
// gets a reply (re-sent, then given up on and compensated), a shipment that times out (the saga
// parks as Failed) and whose late reply resumes it, or which an operator retries or resolves,
// late replies to what was given up on.
std::vector<std::string> play(CacheRun& run) {
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i)  // every other saga with a correlation id of its own
    ids.push_back(run.engine->start<order::OrderSaga>(
        {"o-" + std::to_string(i), "c-" + std::to_string(i), "addr", {{"sku", 1 + i % 3, 100}}},
        i % 2 ? "" : "basket-" + std::to_string(i)));
  run.drain();
  auto reserves = run.sent();
  EXPECT_EQ(reserves.size(), 40u);
  int reply = 1000;
  std::vector<saga::Envelope> commands;
  for (const auto& command : reserves) commands.push_back(command.envelope);
  std::vector<saga::Envelope> unanswered;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    if (i % 10 == 9) {
      unanswered.push_back(commands[i]);
      continue;
    }
    std::string first =
        reply_bytes(commands[i], "inventory.Reserved",
                    {{"reservation_id", "r-" + std::to_string(i)}}, uuid_number(++reply));
    run.transport.deliver(first);
    if (i % 4 == 0) run.transport.deliver(first);  // a duplicate
    if (i % 5 == 0)
      run.transport.deliver(reply_bytes(commands[i], "inventory.OutOfStock",
                                        {{"sku", "sku"}, {"reason", "conflicting"}},
                                        uuid_number(++reply)));
  }
  run.drain();
  auto charges = run.sent();
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (i % 6 == 5)
      run.transport.deliver(reply_bytes(charges[i].envelope, "payment.Declined",
                                        {{"reason", "no funds"}}, uuid_number(++reply)));
    else
      run.transport.deliver(reply_bytes(charges[i].envelope, "payment.Charged",
                                        {{"payment_id", "p-" + std::to_string(i)}},
                                        uuid_number(++reply)));
  }
  run.drain();
  for (int timeout = 0; timeout < 4; ++timeout) {  // the unanswered reservations time out
    run.clock.advance(150ms);
    run.drain();
  }
  std::vector<std::string> left_parked;      // no late reply: an operator acts on these
  for (int round = 0; round < 3; ++round) {  // compensations, then what they lead to
    for (const auto& sent : run.sent()) {
      const saga::Envelope& command = sent.envelope;
      const std::string order_id = command.data.value("order_id", "");
      if (command.event_type == "shipping.Ship" && order_id.ends_with("7")) {
        if (std::find(left_parked.begin(), left_parked.end(), command.correlation_id) ==
            left_parked.end())  // once, though it was sent twice
          left_parked.push_back(command.correlation_id);
        continue;
      }
      auto [type, data] = success_reply(command);
      run.transport.deliver(reply_bytes(command, type, data, uuid_number(++reply)));
    }
    run.drain();
  }
  EXPECT_GE(left_parked.size(), 2u);
  for (std::size_t i = 0; i < left_parked.size(); ++i) {  // retried or resolved, once evicted
    std::string saga_id;
    for (const auto& id : ids)  // a saga started without one has its id as correlation id
      if (run.store->load_saga(id).value()->correlation_id == left_parked[i]) saga_id = id;
    auto result = i % 2 ? run.engine->resolve(saga_id, saga::SagaStatus::Completed, "by hand")
                        : run.engine->retry(saga_id);
    run.drain();
    auto answer = result.get();
    EXPECT_TRUE(answer.ok) << saga_id << ": " << answer.message;
    for (const auto& sent : run.sent()) {
      auto [type, data] = success_reply(sent.envelope);
      run.transport.deliver(reply_bytes(sent.envelope, type, data, uuid_number(++reply)));
    }
    run.drain();
  }
  for (const auto& command : unanswered)  // late: the engine gave up on these
    run.transport.deliver(reply_bytes(command, "inventory.Reserved", {{"reservation_id", "late"}},
                                      uuid_number(++reply)));
  run.drain();
  run.sent();
  return ids;
}

}  // namespace

namespace {

TEST(SagaCache, ACacheOfOneOrSixteenSagasChangesNothingTheStoreOrTheParticipantsSee) {
  CacheRun reference(100000, 256);
  auto reference_ids = play(reference);
  EXPECT_EQ(reference.engine->stats().sagas_evicted, 0u);
  const std::uint64_t reference_loads = reference.engine->stats().sagas_loaded;  // ended sagas
  const auto expected = reference.stored(reference_ids);
  // Shipping times out while the clock runs: those sagas park (Failed), and the late Shipped
  // replies resume them (Completed): 30 of each, and 10 compensated.
  for (const char* status : {"Completed", "Compensated", "Failed"})
    EXPECT_GE(std::count_if(
                  reference.outcomes.begin(), reference.outcomes.end(),
                  [&](const std::string& line) { return line.find(status) != std::string::npos; }),
              4)
        << status;
  for (const char* reason : {"late_reply", "unexpected"})
    EXPECT_NE(std::find_if(expected.begin(), expected.end(),
                           [&](const std::string& line) {
                             return line == "dead letter " + std::string(reason) + " " +
                                                line.substr(line.rfind(' ') + 1);
                           }),
              expected.end())
        << reason;

  for (std::size_t cache : {1u, 16u}) {
    for (std::size_t batch : {1u, 256u}) {
      SCOPED_TRACE("max_cached_sagas " + std::to_string(cache) + ", batch " +
                   std::to_string(batch));
      CacheRun run(cache, batch);
      auto ids = play(run);
      ASSERT_EQ(ids, reference_ids);
      EXPECT_EQ(run.sent_log, reference.sent_log) << "the same commands, bytes and order";
      EXPECT_EQ(run.outcomes, reference.outcomes);
      auto actual = run.stored(ids);
      ASSERT_EQ(actual.size(), expected.size());
      for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(actual[i], expected[i]) << i;
      const saga::EngineStats stats = run.engine->stats();
      EXPECT_LE(stats.cached_sagas, cache);
      EXPECT_GT(stats.sagas_evicted, 20u);
      EXPECT_GT(stats.sagas_loaded, reference_loads + 20)
          << "waiting sagas were read back for their replies and timeouts";
    }
  }
}

TEST(SagaCache, HoldsAtMostItsLimitBetweenTurnsWhileManySagasWait) {
  CacheRun run(8, 256);
  for (int i = 0; i < 100; ++i)
    run.engine->start<order::OrderSaga>({"o-" + std::to_string(i), "c", "addr", {{"sku", 1, 1}}});
  run.drain();
  EXPECT_EQ(run.sent().size(), 100u);
  saga::EngineStats stats = run.engine->stats();
  EXPECT_LE(stats.cached_sagas, 8u);
  EXPECT_GE(stats.cached_sagas, 7u) << "down to 7/8 of the limit, not emptied";
  EXPECT_EQ(stats.sagas_evicted, 100u - stats.cached_sagas);
  const std::string exposition = run.metrics->render();
  EXPECT_NE(exposition.find("saga_cached_sagas " + std::to_string(stats.cached_sagas)),
            std::string::npos);
  EXPECT_NE(exposition.find("saga_cache_evictions_total " + std::to_string(stats.sagas_evicted)),
            std::string::npos);
}

TEST(SagaCache, ZeroIsRefused) {
  saga::Options options;
  options.store.path = ":memory:";
  options.max_cached_sagas = 0;
  auto store = std::move(saga::SqliteStore::open(options.store).value());
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  EXPECT_THROW(saga::Engine(options, *store, transport, clock), std::invalid_argument);
}

}  // namespace
