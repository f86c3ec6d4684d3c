// Places N orders with the order orchestrator, waits for every saga to end, prints a summary and
// checks the business invariants against the participant services' own ledgers (their SQLite
// files), not against the orchestrator's view. Exits 1 if an invariant fails or a saga did not
// end, 2 for bad flags.
#include <sqlite3.h>
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
    bool present = std::any_of(data.items.begin(), data.items.end(),
                               [&](const order::Item& item) { return item.sku == sku; });
    if (!present) data.items.push_back({sku, 1 + static_cast<int>(random() % 2), price});
  }
  return data;
}

// Read-only access to a service's ledger.
class Ledger {
 public:
  explicit Ledger(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
      throw std::runtime_error("cannot open ledger " + path);
  }
  ~Ledger() { sqlite3_close(db_); }
  // Runs a query with one text parameter (may be empty for none) and returns the rows.
  std::vector<std::vector<std::string>> rows(const char* sql, const std::string& parameter = {}) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("ledger query failed: ") + sqlite3_errmsg(db_));
    if (sqlite3_bind_parameter_count(statement) > 0)
      sqlite3_bind_text(statement, 1, parameter.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<std::vector<std::string>> out;
    while (sqlite3_step(statement) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(statement); ++i) {
        const auto* text = sqlite3_column_text(statement, i);
        row.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(statement);
    return out;
  }
  long long number(const char* sql, const std::string& parameter = {}) {
    auto result = rows(sql, parameter);
    return result.empty() || result[0].empty() ? 0 : std::stoll(result[0][0]);
  }

 private:
  sqlite3* db_ = nullptr;
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
      auto data = random_order(n, random);
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

  std::vector<std::string> violations;
  std::map<std::string, int> by_status;
  try {
    Ledger inventory(inventory_db), payment(payment_db), shipping(shipping_db);
    for (const auto& [id, data] : placed) {
      auto status = ended.find(id);
      if (status == ended.end()) {
        violations.push_back(data.order_id + " did not end within " + std::to_string(timeout_s) +
                             " s");
        continue;
      }
      by_status[status->second]++;
      long long held = inventory.number(
          "SELECT count(*) FROM reservations WHERE order_id = ?1 AND released = 0", data.order_id);
      long long reserved_lines =
          inventory.number("SELECT count(*) FROM reservations WHERE order_id = ?1", data.order_id);
      long long charges =
          payment.number("SELECT count(*) FROM payments WHERE order_id = ?1", data.order_id);
      long long net_cents = payment.number(
          "SELECT coalesce(sum(amount_cents), 0) FROM payments WHERE order_id = ?1 AND refunded = "
          "0",
          data.order_id);
      long long shipments =
          shipping.number("SELECT count(*) FROM shipments WHERE order_id = ?1", data.order_id);
      if (status->second == "Completed") {
        if (held != static_cast<long long>(data.items.size()) || charges != 1 ||
            net_cents != data.total_cents() || shipments != 1)
          violations.push_back(data.order_id + " completed but reserved " + std::to_string(held) +
                               "/" + std::to_string(data.items.size()) + " lines, charged " +
                               std::to_string(charges) + " time(s), net " +
                               std::to_string(net_cents) + " cents, shipped " +
                               std::to_string(shipments) + " time(s)");
      } else if (status->second == "Compensated") {
        if (held != 0 || net_cents != 0 || shipments != 0)
          violations.push_back(data.order_id + " compensated but holds " + std::to_string(held) +
                               " reservation line(s), net " + std::to_string(net_cents) +
                               " cents, " + std::to_string(shipments) + " shipment(s)");
        (void)reserved_lines;
      } else {
        violations.push_back(data.order_id + " ended " + status->second);
      }
    }
    for (const auto& row : inventory.rows("SELECT sku, units FROM stock_initial")) {
      long long units = inventory.number("SELECT units FROM stock WHERE sku = ?1", row[0]);
      long long held = inventory.number(
          "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = ?1 AND released = 0",
          row[0]);
      if (units + held != std::stoll(row[1]))
        violations.push_back("stock of " + row[0] + " not conserved: " + std::to_string(units) +
                             " on hand + " + std::to_string(held) + " reserved != " + row[1]);
    }
  } catch (const std::exception& error) {
    violations.push_back(std::string("cannot check the ledgers: ") + error.what());
  }

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
