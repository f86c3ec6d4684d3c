// The smallest useful orchestrator service: the order saga over ZeroMQ, durable in SQLite, with a
// clean shutdown on SIGINT/SIGTERM. docs/embedding.md shows this file; the build compiles it.
#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

#include <order/order_saga.hpp>
#include <saga/engine.hpp>
#include <saga/sqlite_store.hpp>
#include <saga/zmq_transport.hpp>

namespace {
std::atomic<bool> stop_requested{false};
extern "C" void request_stop(int) {
  stop_requested = true;
}
}  // namespace

int main() {
  saga::Options options;  // every field has a documented default
  options.store.path = "my_orchestrator.db";
  auto store = saga::SqliteStore::open(options.store);
  if (!store) {
    std::cerr << store.error().message << "\n";
    return 1;
  }
  auto transport = saga::ZmqTransport::bind({.router_endpoint = "tcp://127.0.0.1:5555"});
  saga::SystemClock clock;

  saga::Engine engine(options, *store.value(), *transport, clock);
  engine.register_saga<order::OrderSaga>();
  engine.on_outcome([](const saga::SagaOutcome& outcome) {
    std::cout << outcome.saga_id << " " << saga::to_string(outcome.status) << "\n";
  });

  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  std::thread loop([&] { engine.run(); });

  // Your service decides when sagas start: an HTTP handler, a queue consumer, a CLI...
  engine.start<order::OrderSaga>({"order-1", "customer-1", "1 Main St", {{"sku-pen", 2, 250}}});

  while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds{100});
  engine.stop();  // finishes the current batch and drains what was accepted
  loop.join();
}
