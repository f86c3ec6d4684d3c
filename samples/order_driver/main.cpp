// Places N orders with the order orchestrator, waits for every saga to end, prints a summary and
// checks the business invariants against the participant services' own ledgers (their SQLite
// files), not against the orchestrator's view. Exits 1 if an invariant fails or a saga did not
// end, 2 for bad flags.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "ledger_check.hpp"
#include "order/messages.hpp"
#include "order/order_saga.hpp"

namespace {

using Clock = std::chrono::steady_clock;

class Intake {
 public:
  explicit Intake(const std::string& endpoint) : socket_(context_, zmq::socket_type::req) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 10000);
    socket_.connect(endpoint);
  }
  nlohmann::json call(const nlohmann::json& request) {
    socket_.send(zmq::buffer(request.dump()), zmq::send_flags::none);
    zmq::message_t reply;
    if (!socket_.recv(reply)) throw std::runtime_error("the orchestrator did not answer in 10 s");
    auto json = nlohmann::json::parse(reply.to_string());
    if (!json.value("ok", false)) throw std::runtime_error(json.value("error", "request refused"));
    return json;
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(p * static_cast<double>(values.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Places orders with the order orchestrator and checks the services' ledgers."};
  std::string intake_endpoint = "tcp://127.0.0.1:5557";
  int orders = 1000;
  std::uint64_t seed = 42;
  double rate = 0;
  int timeout_s = 120;
  std::string inventory_db = "inventory.db", payment_db = "payment.db", shipping_db = "shipping.db";
  app.add_option("--intake", intake_endpoint, "The orchestrator's intake endpoint")
      ->capture_default_str();
  app.add_option("--orders", orders, "Orders to place")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed for the orders")->capture_default_str();
  app.add_option("--rate", rate, "Orders per second (0 = as fast as possible)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--timeout", timeout_s, "Seconds to wait for every saga to end")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--inventory-db", inventory_db, "Inventory service ledger")->capture_default_str();
  app.add_option("--payment-db", payment_db, "Payment service ledger")->capture_default_str();
  app.add_option("--shipping-db", shipping_db, "Shipping service ledger")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  Intake intake(intake_endpoint);
  std::mt19937_64 random(seed);
  std::map<std::string, order::OrderData> placed;  // saga id -> order
  std::map<std::string, Clock::time_point> started;
  std::map<std::string, std::string> ended;  // saga id -> status
  std::vector<double> latencies_ms;
  auto begin = Clock::now();
  std::cout << "Placing " << orders << " orders with " << intake_endpoint << "\n";
  auto poll = [&] {
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& [id, at] : started)
      if (!ended.contains(id)) ids.push_back(id);
    for (std::size_t from = 0; from < ids.size(); from += 1000) {
      nlohmann::json chunk(
          ids.begin() + static_cast<std::ptrdiff_t>(from),
          ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), from + 1000)));
      auto reply = intake.call({{"op", "status"}, {"sagaIds", chunk}});
      for (auto& [id, status] : reply["statuses"].items()) {
        std::string text = status.get<std::string>();
        if (text == "Running" || text == "Compensating") continue;
        ended[id] = text;
        latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - started[id]).count());
      }
    }
  };
  auto last_progress = Clock::now();
  auto progress = [&](bool force) {
    if (!force && Clock::now() - last_progress < std::chrono::milliseconds{500}) return;
    last_progress = Clock::now();
    std::cout << "  placed " << placed.size() << " / " << orders << ", ended " << ended.size()
              << "\n"
              << std::flush;
  };
  try {
    for (int n = 0; n < orders; ++n) {
      if (rate > 0) {
        auto due = begin + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(n / rate));
        while (Clock::now() < due) {
          poll();
          progress(false);
          std::this_thread::sleep_until(
              std::min(due, Clock::now() + std::chrono::milliseconds{20}));
        }
      }
      auto data = order_check::random_order(n, random);
      auto reply = intake.call({{"op", "start"}, {"order", data}});
      std::string id = reply["sagaId"];
      placed[id] = data;
      started[id] = Clock::now();
      progress(false);
    }
    auto deadline = Clock::now() + std::chrono::seconds{timeout_s};
    while (ended.size() < placed.size() && Clock::now() < deadline) {
      poll();
      progress(false);
      if (ended.size() < placed.size()) std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  } catch (const std::exception& error) {
    std::cerr << "order_driver: " << error.what() << "\n";
    return 1;
  }
  progress(true);
  double seconds = std::chrono::duration<double>(Clock::now() - begin).count();

  std::map<std::string, int> by_status;
  std::vector<order_check::PlacedOrder> checked;
  for (const auto& [id, data] : placed) {
    auto status = ended.find(id);
    checked.push_back({id, data, status == ended.end() ? "" : status->second});
    if (status != ended.end()) by_status[status->second]++;
  }
  std::vector<std::string> violations =
      order_check::check_ledgers(checked, {inventory_db, payment_db, shipping_db},
                                 "did not end within " + std::to_string(timeout_s) + " s");

  std::cout << std::fixed << std::setprecision(1) << "Completed   " << by_status["Completed"]
            << "\nCompensated " << by_status["Compensated"]
            << "  (stock-outs, declined payments, undeliverable addresses)\nFailed      "
            << by_status["Failed"] << "\nThroughput  "
            << static_cast<double>(placed.size()) / seconds << " sagas/s over " << seconds
            << " s\nLatency     p50 " << percentile(latencies_ms, 0.50) << " ms, p99 "
            << percentile(latencies_ms, 0.99)
            << " ms (start to observed end, polled every 20 ms)\n";
  if (violations.empty()) {
    std::cout << "Invariants  ok: stock conserved; every completed order reserved, charged once "
                 "and shipped; every compensated order released, refunded, not shipped\n";
    return 0;
  }
  std::cout << "Invariants  VIOLATED (" << violations.size() << "):\n";
  for (std::size_t i = 0; i < std::min<std::size_t>(violations.size(), 20); ++i)
    std::cout << "  - " << violations[i] << "\n";
  return 1;
}
