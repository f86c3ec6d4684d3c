// The shipping service of the order saga: ships an order (shipping.Ship), the saga's last step,
// which has no compensation. Its ledger is its own SQLite file:
//
//   shipments(shipment_id, order_id, address, tracking_number)   one row per shipment
//
// A random --failure-rate of shipments (seeded by --seed) is undeliverable.
//
//   shipping_service --orchestrator tcp://127.0.0.1:5555 --instance shipping-1
#include <random>

#include "common.hpp"
#include "order/messages.hpp"
#include "saga/sqlite_participant_ledger.hpp"

namespace {

void setup(sqlite3* db) {
  services::execute(db,
                    "CREATE TABLE IF NOT EXISTS shipments ("
                    "shipment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, "
                    "address TEXT NOT NULL, tracking_number TEXT NOT NULL)");
  services::execute(db, "CREATE INDEX IF NOT EXISTS shipments_by_order ON shipments (order_id)");
}

bool blank(const std::string& text) {
  return text.find_first_not_of(" \t\r\n") == std::string::npos;
}

void add_handlers(saga::Participant& participant, services::CommandLog& log, double failure_rate,
                  std::mt19937_64& random) {
  participant.on<shipping::Ship>(
      [&log, failure_rate, &random](const shipping::Ship& command,
                                    saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        sqlite3* db = saga::sqlite_connection(unit);
        const std::string shipment_id = "ship-" + command.order_id;
        const std::string tracking_number = "track-" + command.order_id;
        // One draw per shipment handled; the SDK never runs the handler again for a command it
        // recorded, so a redelivered command gets the same answer.
        const bool lost = std::bernoulli_distribution(failure_rate)(random);
        auto undeliverable = [&](const std::string& reason) {
          log.note(command, "undeliverable " + command.order_id + ": " + reason);
          return shipping::Undeliverable{reason};
        };
        if (blank(command.address)) return undeliverable("no address");
        if (lost) return undeliverable("address not found");
        if (services::query_integer(db, "SELECT 1 FROM shipments WHERE shipment_id = ?1",
                                    shipment_id))
          return undeliverable("the order was already shipped as " + shipment_id);
        services::execute(db,
                          "INSERT INTO shipments (shipment_id, order_id, address, "
                          "tracking_number) VALUES (?1, ?2, ?3, ?4)",
                          shipment_id, command.order_id, command.address, tracking_number);
        log.note(command, "shipped " + command.order_id + " (" + tracking_number + ") to " +
                              command.address);
        return shipping::Shipped{tracking_number};
      },
      [&log](const shipping::Ship& command, const std::string& error) -> saga::Reply {
        log.note(command,
                 "shipping " + command.order_id + " failed after retries, undeliverable: " + error,
                 services::Level::warn);
        return shipping::Undeliverable{error};
      });
}

}  // namespace

int main(int argc, char** argv) {
  services::block_stop_signals();
  CLI::App app{
      "The shipping service of the order saga: ships orders, the saga's last step. Its ledger "
      "(shipments) is a SQLite file."};
  services::CommonOptions common;
  common.service = "shipping";
  services::add_common_flags(app, common);
  double failure_rate = 0.02;
  app.add_option(
         "--failure-rate", failure_rate,
         "Fraction of shipments that are undeliverable, at random, 0 to 1 (seeded by --seed)")
      ->type_name("P")
      ->check(services::probability())
      ->capture_default_str();
  if (auto exit_code = services::parse(app, argc, argv)) return *exit_code;

  std::mt19937_64 random(common.seed);
  return services::run_service(
      common,
      {.setup = setup, .handlers = [&](saga::Participant& participant, services::CommandLog& log) {
         add_handlers(participant, log, failure_rate, random);
       }});
}
