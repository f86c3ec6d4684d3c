// The order flow's workload and its business invariants. random_order() makes the orders the
// driver places (some stock-outs, some declines). The invariants are checked against the
// participant services' own ledgers (their SQLite files, opened read-only), not against the
// orchestrator's view:
// - a Completed order reserved every line, was charged once for its total and shipped once;
// - a Compensated order holds no reservation, has no net charge and was not shipped;
// - stock is conserved for every SKU (on hand + reserved = initial).
// Used by order_driver and by the crash test (tests/crash).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "order/order_saga.hpp"

struct sqlite3;

namespace order_check {

// A read-only SQLite connection (busy timeout 5 s) for checks. Throws std::runtime_error when
// the file cannot be opened or a query fails.
class ReadOnlyDatabase {
 public:
  explicit ReadOnlyDatabase(const std::string& path);
  ~ReadOnlyDatabase();
  ReadOnlyDatabase(const ReadOnlyDatabase&) = delete;
  ReadOnlyDatabase& operator=(const ReadOnlyDatabase&) = delete;
  // The rows of a query with at most one text parameter (?1), as text.
  std::vector<std::vector<std::string>> rows(const char* sql, const std::string& parameter = {});
  // The first column of the first row as a number; 0 without rows.
  long long number(const char* sql, const std::string& parameter = {});

 private:
  ::sqlite3* db_ = nullptr;
};

// Order number n, drawn from `random`: order id "order-<n>", one to three catalog lines.
order::OrderData random_order(int n, std::mt19937_64& random);

struct PlacedOrder {
  std::string saga_id;
  order::OrderData data;
  std::string status;  // the saga's final status; empty when it did not end
};

struct Ledgers {
  std::string inventory_db, payment_db, shipping_db;
};

// One line per violation; empty when every invariant holds. Never throws: a ledger that cannot
// be read is itself reported as a violation.
std::vector<std::string> check_ledgers(const std::vector<PlacedOrder>& orders,
                                       const Ledgers& ledgers, const std::string& not_ended_reason);

}  // namespace order_check
