// In-process stand-ins for the inventory, payment and shipping services, until the ZeroMQ
// transport lets them run as separate processes. Each keeps a ledger and answers a duplicate
// command with the reply it sent the first time (idempotent consumer).
//
// Thread safety: serve() and the ledger accessors are called from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "order/messages.hpp"
#include "saga/envelope.hpp"

namespace demo {

struct Ledgers {
  std::map<std::string, int> initial_stock;
  std::map<std::string, int> stock;                              // sku -> units on hand
  std::map<std::string, std::vector<order::Item>> reservations;  // reservation id -> items
  std::map<std::string, std::string> reservation_of_order;       // order id -> reservation id
  std::map<std::string, std::int64_t> charged_cents;             // order id -> net charge
  std::map<std::string, int> charges;                            // order id -> charge count
  std::set<std::string> shipped;                                 // order ids
};

struct ServiceRules {
  std::int64_t decline_above_cents = 40000;
  double shipping_failure_rate = 0.03;
  std::uint64_t seed = 42;
};

class SimulatedServices {
 public:
  SimulatedServices(ServiceRules rules, std::map<std::string, int> stock);

  // Handles one command envelope addressed to `service`; returns the encoded reply.
  std::optional<std::string> serve(const std::string& service, const saga::Envelope& command);

  const Ledgers& ledgers() const { return ledgers_; }

 private:
  std::pair<std::string, nlohmann::json> inventory(const saga::Envelope& command);
  std::pair<std::string, nlohmann::json> payment(const saga::Envelope& command);
  std::pair<std::string, nlohmann::json> shipping(const saga::Envelope& command);

  ServiceRules rules_;
  std::mt19937_64 random_;
  Ledgers ledgers_;
  std::map<std::string, std::string> replies_;  // command eventId -> reply bytes
  int next_id_ = 1;
};

}  // namespace demo
