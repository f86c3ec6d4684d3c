// The order flow end to end in one process: the engine on a SQLite file, the in-memory transport,
// and simulated inventory / payment / shipping services. Places N orders, waits for every saga
// to end, prints a summary and checks the business invariants against the services' ledgers.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"
#include "simulated_services.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Tally {
  std::mutex mutex;
  std::condition_variable ended;
  std::map<std::string, Clock::time_point> started;
  std::map<std::string, saga::SagaOutcome> outcomes;
  std::vector<double> latencies_ms;
};

order::OrderData random_order(int n, std::mt19937_64& random) {
  static const std::vector<std::pair<std::string, std::int64_t>> catalog = {{"sku-pen", 250},
                                                                            {"sku-book", 1800},
                                                                            {"sku-lamp", 4500},
                                                                            {"sku-chair", 12900},
                                                                            {"sku-gold", 24900}};
  order::OrderData data;
  data.order_id = "order-" + std::to_string(n);
  data.customer_id = "customer-" + std::to_string(random() % 97);
  data.address = std::to_string(1 + random() % 200) + " Main St";
  int lines = 1 + static_cast<int>(random() % 3);
  for (int i = 0; i < lines; ++i) {
    const auto& [sku, price] = catalog[random() % catalog.size()];
    if (std::any_of(data.items.begin(), data.items.end(), [&](auto& it) { return it.sku == sku; }))
      continue;
    data.items.push_back({sku, 1 + static_cast<int>(random() % 2), price});
  }
  return data;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(p * static_cast<double>(values.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs the sample order saga end to end and checks the business invariants."};
  int orders = 1000;
  std::string db = "order_demo.db";
  std::uint64_t seed = 42;
  std::string durability = "full";
  std::size_t batch = 256;
  app.add_option("--orders", orders, "Orders to place")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--db", db, "SQLite file (replaced at start)")->capture_default_str();
  app.add_option("--seed", seed, "Seed for orders and failure injection")->capture_default_str();
  app.add_option("--durability", durability, "full, normal or off")
      ->check(CLI::IsMember({"full", "normal", "off"}))
      ->capture_default_str();
  app.add_option("--batch", batch, "Max messages per transaction (group commit)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);

  saga::Options options;
  options.store.path = db;
  options.store.durability = durability == "full"     ? saga::Durability::full
                             : durability == "normal" ? saga::Durability::normal
                                                      : saga::Durability::off;
  options.max_batch_messages = batch;
  options.idle_wait = std::chrono::milliseconds{5};
  auto opened = saga::SqliteStore::open(options.store);
  if (!opened) {
    std::cerr << "order_demo: " << opened.error().message << "\n";
    return 2;
  }
  auto store = std::move(opened.value());
  saga::MemoryTransport transport;
  saga::SystemClock clock;
  saga::Engine engine(options, *store, transport, clock);
  engine.register_saga<order::OrderSaga>();

  Tally tally;
  engine.on_outcome([&](const saga::SagaOutcome& outcome) {
    std::lock_guard lock(tally.mutex);
    auto started = tally.started.find(outcome.saga_id);
    if (started != tally.started.end())
      tally.latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - started->second).count());
    tally.outcomes.emplace(outcome.saga_id, outcome);
    tally.ended.notify_all();
  });

  demo::SimulatedServices services({60000, 0.03, seed}, {{"sku-pen", 100000},
                                                         {"sku-book", 100000},
                                                         {"sku-lamp", 100000},
                                                         {"sku-chair", 100000},
                                                         {"sku-gold", 40}});
  std::atomic<bool> stopping{false};
  std::thread loop([&] { engine.run(); });
  std::thread participants([&] {
    std::mt19937_64 network(seed + 1);
    while (!stopping.load()) {
      for (auto& sent : transport.wait_sent(std::chrono::milliseconds{5})) {
        auto decoded = saga::decode_envelope(sent.bytes);
        if (!std::holds_alternative<saga::Envelope>(decoded)) continue;
        auto reply = services.serve(sent.destination, std::get<saga::Envelope>(decoded));
        if (!reply) continue;
        transport.deliver(*reply);
        if (network() % 50 == 0) transport.deliver(*reply);  // the network duplicates 2%
      }
    }
  });

  std::cout << "Placing " << orders << " orders (seed " << seed << ", durability " << durability
            << ", database " << db << ")\n";
  std::mt19937_64 random(seed);
  auto begin = Clock::now();
  for (int n = 0; n < orders; ++n) {
    auto data = random_order(n, random);
    std::lock_guard lock(tally.mutex);
    tally.started[engine.start<order::OrderSaga>(data)] = Clock::now();
  }
  bool all_ended = false;
  {
    std::unique_lock lock(tally.mutex);
    auto deadline = Clock::now() + std::chrono::seconds{120};
    while (!all_ended && Clock::now() < deadline) {
      tally.ended.wait_for(lock, std::chrono::milliseconds{250});
      all_ended = tally.outcomes.size() == static_cast<std::size_t>(orders);
      std::cout << "\r  ended " << tally.outcomes.size() << " / " << orders << std::flush;
    }
  }
  double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  std::cout << "\n";
  engine.stop();
  loop.join();
  stopping.store(true);
  participants.join();

  std::map<saga::SagaStatus, int> by_status;
  std::vector<std::string> violations;
  const demo::Ledgers& ledgers = services.ledgers();
  for (const auto& [id, outcome] : tally.outcomes) {
    by_status[outcome.status]++;
    auto data = outcome.data.get<order::OrderData>();
    bool reserved = ledgers.reservation_of_order.contains(data.order_id);
    auto charged = ledgers.charged_cents.find(data.order_id);
    std::int64_t net = charged == ledgers.charged_cents.end() ? 0 : charged->second;
    auto charges = ledgers.charges.find(data.order_id);
    int charge_count = charges == ledgers.charges.end() ? 0 : charges->second;
    if (outcome.status == saga::SagaStatus::Completed) {
      if (!reserved || net != data.total_cents() || charge_count != 1 ||
          !ledgers.shipped.contains(data.order_id))
        violations.push_back(data.order_id +
                             " completed but not reserved, charged once and shipped");
    } else if (outcome.status == saga::SagaStatus::Compensated) {
      if (reserved || net != 0)
        violations.push_back(data.order_id +
                             " compensated but still holds a reservation or charge");
    } else {
      violations.push_back(data.order_id + " ended " +
                           std::string(saga::to_string(outcome.status)));
    }
  }
  for (const auto& [sku, initial] : ledgers.initial_stock) {
    int held = 0;
    for (const auto& [id, items] : ledgers.reservations)
      for (const auto& item : items)
        if (item.sku == sku) held += item.quantity;
    if (ledgers.stock.at(sku) + held != initial)
      violations.push_back("stock of " + sku + " not conserved");
  }
  if (!all_ended) violations.push_back("not every saga ended within 120 s");

  auto stats = engine.stats();
  std::cout << std::fixed << std::setprecision(1) << "Completed   "
            << by_status[saga::SagaStatus::Completed] << "\n"
            << "Compensated " << by_status[saga::SagaStatus::Compensated]
            << "  (stock-outs, declines over 600.00, undeliverable addresses)\n"
            << "Failed      " << by_status[saga::SagaStatus::Failed] << "\n"
            << "Throughput  " << static_cast<double>(orders) / seconds << " sagas/s ("
            << stats.commits << " commits, " << stats.duplicates << " duplicate replies ignored)\n"
            << "Latency     p50 " << percentile(tally.latencies_ms, 0.50) << " ms, p99 "
            << percentile(tally.latencies_ms, 0.99) << " ms\n";
  if (violations.empty()) {
    std::cout << "Invariants  ok: stock conserved; every completed order reserved, charged once "
                 "and shipped; every compensated order released and refunded\n";
  } else {
    std::cout << "Invariants  VIOLATED (" << violations.size() << "):\n";
    for (std::size_t i = 0; i < std::min<std::size_t>(violations.size(), 20); ++i)
      std::cout << "  - " << violations[i] << "\n";
  }
  std::string example = tally.outcomes.empty() ? "<saga id>" : tally.outcomes.begin()->first;
  std::cout << "\nNext: the saga state is in " << db << ". One saga's history:\n"
            << "  sqlite3 " << db << " \"SELECT kind, message_type, from_state, to_state, detail "
            << "FROM journal WHERE saga_id = '" << example << "' ORDER BY sequence\"\n";
  return violations.empty() ? 0 : 1;
}
