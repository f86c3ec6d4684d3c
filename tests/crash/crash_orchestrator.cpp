// The orchestrator the crash test kills: the engine with the order saga on the ZeroMQ
// transport, starting orders "order-0" .. "order-<N-1>" at a steady rate. After a restart it
// counts the sagas already in its database (starts commit in order, all or nothing per turn)
// and starts the rest. It exits 0 once all N sagas have ended. Crash points come from the
// environment (saga/detail/crash_point.hpp).
#include <sqlite3.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "ledger_check.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/log.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/zmq_transport.hpp"

namespace {

// Sagas in the database, and how many of them have ended (read before the engine opens it).
std::pair<int, int> count_sagas(const std::string& path) {
  sqlite3* db = nullptr;
  std::pair<int, int> counts{0, 0};
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    const char* sql =
        "SELECT count(*), coalesce(sum(status IN ('Completed', 'Compensated', 'Failed')), 0) "
        "FROM sagas";
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
      counts = {sqlite3_column_int(stmt, 0), sqlite3_column_int(stmt, 1)};
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Order orchestrator for the crash test: starts N orders, exits when all ended."};
  std::string db = "crash.db", router = "tcp://127.0.0.1:*", endpoints_file;
  int sagas = 200, rate = 400;
  std::uint64_t seed = 7;
  int charge_attempts = 0;
  std::size_t saga_cache = saga::Options{}.max_cached_sagas;
  std::size_t send_queue = saga::Options{}.max_queued_commands;
  app.add_option("--db", db, "SQLite database")->capture_default_str();
  app.add_option("--router", router, "ROUTER endpoint")->capture_default_str();
  app.add_option("--endpoints-file", endpoints_file, "Write router=<bound endpoint> here");
  app.add_option("--sagas", sagas, "Orders to start in all")->check(CLI::Range(1, 10000000));
  app.add_option("--rate", rate, "Starts per second")->check(CLI::Range(1, 1000000));
  app.add_option("--seed", seed, "Seed of the orders")->capture_default_str();
  app.add_option("--charge-attempts", charge_attempts,
                 "Give up on a payment.Charge after this many sends (0: never)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  app.add_option("--saga-cache", saga_cache, "Options::max_cached_sagas")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--send-queue", send_queue, "Options::max_queued_commands")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto [existing, ended_before] = count_sagas(db);
  saga::Options options;
  options.store.path = db;
  options.idle_wait = std::chrono::milliseconds{10};
  options.max_cached_sagas = saga_cache;
  options.max_queued_commands = send_queue;
  // Warnings and errors only (the crash test keeps this process's stderr in orchestrator.log).
  options.logger =
      saga::make_stream_logger(std::cerr, saga::LogFormat::console, saga::LogLevel::warn);
  // Never give up on a command: every saga must end Completed or Compensated however often the
  // processes die. Re-sends are frequent so crashes heal quickly.
  options.command_retry = {std::chrono::milliseconds{400}, 1.5, std::chrono::milliseconds{2000},
                           0.1, 0};
  options.compensation_retry = options.command_retry;
  // Except, when asked, the charge: a step given up on that the payment service may still do.
  if (charge_attempts > 0) {
    options.retry_by_command["payment.Charge"] = options.command_retry;
    options.retry_by_command["payment.Charge"].max_attempts = charge_attempts;
  }
  auto opened = saga::SqliteStore::open(options.store);
  if (!opened) {
    std::cerr << "crash_orchestrator: " << opened.error().message << "\n";
    return 1;
  }
  auto store = std::move(opened).value();
  saga::ZmqTransportOptions transport_options;
  transport_options.router_endpoint = router;
  transport_options.events_endpoint = "";
  transport_options.heartbeat_interval = std::chrono::milliseconds{100};
  std::unique_ptr<saga::ZmqTransport> transport;
  try {
    transport = saga::ZmqTransport::bind(transport_options);
  } catch (const std::exception& error) {
    std::cerr << "crash_orchestrator: " << error.what() << "\n";
    return 1;
  }
  if (!endpoints_file.empty()) {
    std::ofstream out(endpoints_file + ".tmp");
    out << "router=" << transport->router_endpoint() << "\n";
    out.close();
    std::rename((endpoints_file + ".tmp").c_str(), endpoints_file.c_str());
  }
  saga::SystemClock clock;
  saga::Engine engine(options, *store, *transport, clock);
  engine.register_saga<order::OrderSaga>();
  std::atomic<int> ended{ended_before};
  engine.on_outcome([&](const saga::SagaOutcome&) { ended.fetch_add(1); });
  std::thread loop([&] { engine.run(); });

  auto begin = std::chrono::steady_clock::now();
  for (int n = existing; n < sagas; ++n) {
    std::mt19937_64 random(seed * 1000003 + static_cast<std::uint64_t>(n));
    engine.start<order::OrderSaga>(order_check::random_order(n, random));
    std::this_thread::sleep_until(begin +
                                  std::chrono::microseconds{1000000LL * (n - existing + 1) / rate});
  }
  while (ended.load() < sagas) std::this_thread::sleep_for(std::chrono::milliseconds{20});
  engine.stop();
  loop.join();
  return 0;
}
