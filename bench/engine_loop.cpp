// saga_engine_loop: a fixed amount of engine work, for comparing two builds by the instructions
// they execute (bench/instructions_per_saga.sh runs it under callgrind). Wall-clock figures of
// the same work move by ±20–30 % between runs on a shared machine; instruction counts do not.
//
// Drives --sagas order sagas through one saga::Engine on a SqliteStore (in memory, or a file with
// synchronous=OFF: the WAL writes without the fsync) and the in-memory transport, --in-flight of
// them at a time, so each turn carries that many inputs, as the engine's turns do under load. The
// participants' replies are built between turns, by bench::reply_to; instruction counts meant for
// the engine alone collect only inside Engine::run_once and Engine::start (the script's
// --toggle-collect).
//
// --waiting N then starts N more sagas and never answers them (their commands are taken off the
// transport, as if delivered) and prints the engine's heap bytes per waiting saga (glibc's
// mallinfo2, SQLite's page cache excluded): what a saga costs in memory while it waits, with
// the saga cache (--saga-cache) holding it or not.
//
//   build/default/bench/saga_engine_loop [--sagas 2000] [--in-flight 100] [--store memory|file]
//                                        [--events] [--saga-cache N] [--waiting N]
#include <malloc.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "engine_capture.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/sqlite_tuning.hpp"

namespace {
// The sample cluster's orchestrator has no lifecycle-event subscribers unless one connects.
class Transport : public saga::Transport {
 public:
  Transport(saga::MemoryTransport& memory, bool observed) : memory_(memory), observed_(observed) {}
  saga::SendResult send(std::string_view destination, std::string_view bytes) override {
    return memory_.send(destination, bytes);
  }
  std::optional<saga::InboundMessage> receive(std::chrono::milliseconds wait) override {
    return memory_.receive(wait);
  }
  void wake() override { memory_.wake(); }
  void publish(std::string_view event_type, std::string_view bytes) override {
    memory_.publish(event_type, bytes);
  }
  bool has_observers() override { return observed_; }

 private:
  saga::MemoryTransport& memory_;
  bool observed_;
};
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A fixed amount of engine work: order sagas through one engine, in memory"};
  int sagas = 2000;
  int in_flight = 100;
  std::string store_kind = "memory";
  std::string path = "/tmp/saga_engine_loop.db";
  bool events = false;
  std::size_t saga_cache = saga::Options{}.max_cached_sagas;
  int waiting = 0;
  app.add_option("--sagas", sagas, "Order sagas to run to completion")
      ->check(CLI::Range(1, 10000000));
  app.add_option("--in-flight", in_flight, "Sagas started per turn, and so inputs per turn")
      ->check(CLI::Range(1, 100000));
  app.add_option("--store", store_kind, "memory, or file (WAL, synchronous=OFF)")
      ->check(CLI::IsMember({"memory", "file"}));
  app.add_option("--path", path, "The database file for --store file (replaced)");
  app.add_flag("--events", events, "Publish lifecycle events (an observer is subscribed)");
  app.add_option("--saga-cache", saga_cache,
                 "Options::max_cached_sagas (below --in-flight, every reply reads its saga back)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40));
  app.add_option("--waiting", waiting, "Then start this many sagas, never answered: heap per saga")
      ->check(CLI::Range(0, 10000000));
  CLI11_PARSE(app, argc, argv);
  saga::disable_sqlite_memory_statistics();  // as the sample orchestrator does

  saga::Options options;
  options.idle_wait = std::chrono::milliseconds{0};
  options.max_batch_messages = static_cast<std::size_t>(in_flight) * 2;
  options.max_cached_sagas = saga_cache;
  if (store_kind == "file") {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + suffix);
    options.store.path = path;
    options.store.durability = saga::Durability::off;
  } else {
    options.store.path = ":memory:";
  }
  auto store = saga::SqliteStore::open(options.store);
  if (!store) {
    std::cerr << "cannot open the store: " << store.error().message << "\n";
    return 1;
  }
  saga::MemoryTransport transport;
  Transport observed(transport, events);
  saga::SystemClock clock;
  saga::Engine engine(options, *store.value(), observed, clock);
  engine.register_saga<order::OrderSaga>();

  const order::OrderData data = bench::typical_order();
  const auto began = std::chrono::steady_clock::now();
  for (int started = 0; started < sagas;) {
    const int now = std::min(in_flight, sagas - started);
    for (int i = 0; i < now; ++i) engine.start<order::OrderSaga>(data);
    started += now;
    engine.run_once();
    for (int step = 0; step < 3; ++step) {
      for (auto& sent : transport.take_sent()) transport.deliver(bench::reply_to(sent.bytes));
      engine.run_once();
    }
    transport.take_events();
  }
  engine.run_once();  // the last dispatch marks
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  const auto completed = engine.stats().sagas_completed;
  std::printf("%llu of %d sagas completed in %.3f s (%.1f us per saga, replies included)\n",
              static_cast<unsigned long long>(completed), sagas, seconds, seconds * 1e6 / sagas);
  if (completed != static_cast<std::uint64_t>(sagas)) return 1;
  if (waiting == 0) return 0;

  // SQLite's page cache is heap too: fill it first (it is bounded), so that what grows below is
  // the engine's own memory per waiting saga.
  auto heap_in_use = [] { return static_cast<double>(mallinfo2().uordblks); };
  auto start_waiting = [&](int count) {
    for (int started = 0; started < count;) {
      const int now = std::min(in_flight, count - started);
      for (int i = 0; i < now; ++i) engine.start<order::OrderSaga>(data);
      started += now;
      engine.run_once();
      engine.run_once();
      transport.take_sent();
    }
  };
  start_waiting(waiting);
  const double before = heap_in_use();
  start_waiting(waiting);
  const double after = heap_in_use();
  std::printf(
      "%.0f bytes of heap per waiting saga (%d more waiting: %.1f -> %.1f MiB; %llu "
      "sagas cached, saga cache %zu)\n",
      (after - before) / waiting, waiting, before / 1048576, after / 1048576,
      static_cast<unsigned long long>(engine.stats().cached_sagas), saga_cache);
  return 0;
}
