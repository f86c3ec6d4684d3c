#include "ledger_check.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <stdexcept>

namespace order_check {
ReadOnlyDatabase::ReadOnlyDatabase(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db_);
    throw std::runtime_error("cannot open database " + path);
  }
  sqlite3_busy_timeout(db_, 5000);
}

ReadOnlyDatabase::~ReadOnlyDatabase() {
  sqlite3_close(db_);
}

std::vector<std::vector<std::string>> ReadOnlyDatabase::rows(const char* sql,
                                                             const std::string& parameter) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("query failed: ") + sqlite3_errmsg(db_));
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

long long ReadOnlyDatabase::number(const char* sql, const std::string& parameter) {
  auto result = rows(sql, parameter);
  return result.empty() || result[0].empty() ? 0 : std::stoll(result[0][0]);
}

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

std::vector<std::string> check_ledgers(const std::vector<PlacedOrder>& orders,
                                       const Ledgers& ledgers,
                                       const std::string& not_ended_reason) {
  std::vector<std::string> violations;
  try {
    ReadOnlyDatabase inventory(ledgers.inventory_db), payment(ledgers.payment_db),
        shipping(ledgers.shipping_db);
    for (const auto& [id, data, status] : orders) {
      if (status.empty()) {
        violations.push_back(data.order_id + " " + not_ended_reason);
        continue;
      }
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
      if (status == "Completed") {
        if (held != static_cast<long long>(data.items.size()) || charges != 1 ||
            net_cents != data.total_cents() || shipments != 1)
          violations.push_back(data.order_id + " completed but reserved " + std::to_string(held) +
                               "/" + std::to_string(data.items.size()) + " lines, charged " +
                               std::to_string(charges) + " time(s), net " +
                               std::to_string(net_cents) + " cents, shipped " +
                               std::to_string(shipments) + " time(s)");
      } else if (status == "Compensated") {
        // At most one effect per step: a line reserved twice or a second charge is a violation
        // even when compensated.
        if (held != 0 || net_cents != 0 || shipments != 0 || charges > 1 ||
            reserved_lines > static_cast<long long>(data.items.size()))
          violations.push_back(data.order_id + " compensated but holds " + std::to_string(held) +
                               " reservation line(s) of " + std::to_string(reserved_lines) +
                               " made, " + std::to_string(charges) + " charge(s), net " +
                               std::to_string(net_cents) + " cents, " + std::to_string(shipments) +
                               " shipment(s)");
      } else {
        violations.push_back(data.order_id + " ended " + status);
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

  return violations;
}

}  // namespace order_check
