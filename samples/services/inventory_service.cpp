// The inventory service of the order saga: reserves stock for an order (inventory.Reserve) and
// releases the reservation when the saga compensates (inventory.Release). Its ledger is its own
// SQLite file:
//
//   stock(sku, units)                 units on hand
//   stock_initial(sku, units)         units at seeding; stock + unreleased reservations = initial
//   reservations(reservation_id, order_id, sku, quantity, released)   one row per SKU
//
//   inventory_service --orchestrator tcp://127.0.0.1:5555 --instance inventory-1
#include <algorithm>
#include <set>
#include <sstream>
#include <vector>

#include "common.hpp"
#include "order/messages.hpp"
#include "saga/sqlite_participant_ledger.hpp"

namespace {

using Stock = std::vector<std::pair<std::string, std::int64_t>>;

std::string trim(std::string_view text) {
  auto begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  auto end = text.find_last_not_of(" \t");
  return std::string(text.substr(begin, end - begin + 1));
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);) parts.push_back(trim(part));
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

// "sku-pen=100000,sku-gold=40" -> {{"sku-pen", 100000}, {"sku-gold", 40}}. Throws
// std::invalid_argument with what is wrong.
Stock parse_stock(const std::string& text) {
  Stock stock;
  std::set<std::string> seen;
  for (const auto& entry : split(text, ',')) {
    auto equals = entry.find('=');
    if (equals == std::string::npos)
      throw std::invalid_argument("'" + entry + "' is not SKU=UNITS");
    std::string sku = trim(entry.substr(0, equals));
    std::string units = trim(entry.substr(equals + 1));
    if (sku.empty()) throw std::invalid_argument("'" + entry + "' has no SKU");
    if (units.empty() || units.size() > 15 ||
        units.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("units of " + sku + " must be a whole number >= 0, got '" +
                                  units + "'");
    if (!seen.insert(sku).second) throw std::invalid_argument(sku + " is listed twice");
    stock.emplace_back(sku, std::stoll(units));
  }
  if (stock.empty()) throw std::invalid_argument("no SKU=UNITS entries");
  return stock;
}

std::set<std::string> parse_skus(const std::string& text) {
  std::set<std::string> skus;
  if (trim(text).empty()) return skus;
  for (const auto& sku : split(text, ',')) {
    if (sku.empty()) throw std::invalid_argument("empty SKU in '" + text + "'");
    skus.insert(sku);
  }
  return skus;
}

template <class Parse>
CLI::Validator parses(Parse parse, std::string name) {
  return CLI::Validator(
      [parse](std::string& value) -> std::string {
        try {
          parse(value);
          return "";
        } catch (const std::exception& error) {
          return error.what();
        }
      },
      "", std::move(name));
}

void setup(sqlite3* db, const Stock& stock) {
  services::execute(db,
                    "CREATE TABLE IF NOT EXISTS stock ("
                    "sku TEXT PRIMARY KEY, units INTEGER NOT NULL)");
  services::execute(db,
                    "CREATE TABLE IF NOT EXISTS stock_initial ("
                    "sku TEXT PRIMARY KEY, units INTEGER NOT NULL)");
  services::execute(db,
                    "CREATE TABLE IF NOT EXISTS reservations ("
                    "reservation_id TEXT NOT NULL, order_id TEXT NOT NULL, sku TEXT NOT NULL, "
                    "quantity INTEGER NOT NULL, released INTEGER NOT NULL DEFAULT 0, "
                    "PRIMARY KEY (reservation_id, sku))");
  services::execute(db,
                    "CREATE INDEX IF NOT EXISTS reservations_by_order ON reservations (order_id)");
  services::in_transaction(db, [&] {
    auto skus = services::query_integer(db, "SELECT count(*) FROM stock").value_or(0);
    if (skus > 0) {
      services::info("stock kept from the ledger (" + std::to_string(skus) +
                     " SKUs); --stock "
                     "applies to an empty ledger only");
      return;
    }
    std::string seeded;
    for (const auto& [sku, units] : stock) {
      services::execute(db, "INSERT INTO stock (sku, units) VALUES (?1, ?2)", sku, units);
      services::execute(db, "INSERT OR REPLACE INTO stock_initial (sku, units) VALUES (?1, ?2)",
                        sku, units);
      seeded += (seeded.empty() ? "" : ", ") + sku + "=" + std::to_string(units);
    }
    services::info("stock seeded: " + seeded);
  });
}

void add_handlers(saga::Participant& participant, services::CommandLog& log,
                  const std::set<std::string>& out_of_stock) {
  participant.on<inventory::Reserve>(
      [&log, &out_of_stock](const inventory::Reserve& command,
                            saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        sqlite3* db = saga::sqlite_connection(unit);
        const std::string reservation_id = "res-" + command.order_id;
        auto refuse = [&](const std::string& sku, const std::string& reason) {
          log.note(command, "out of stock for " + command.order_id + ": " +
                                (sku.empty() ? "" : sku + ": ") + reason);
          return inventory::OutOfStock{sku, reason};
        };
        if (command.items.empty()) return refuse("", "the order has no items");
        // Quantity per SKU, in the order's order (a SKU may be on several lines).
        std::vector<std::pair<std::string, std::int64_t>> wanted;
        for (const auto& item : command.items) {
          if (item.quantity <= 0)
            return refuse(item.sku,
                          "quantity must be positive, got " + std::to_string(item.quantity));
          auto line = std::find_if(wanted.begin(), wanted.end(),
                                   [&](const auto& w) { return w.first == item.sku; });
          if (line == wanted.end())
            wanted.emplace_back(item.sku, item.quantity);
          else
            line->second += item.quantity;
        }
        if (services::query_integer(
                db, "SELECT 1 FROM reservations WHERE reservation_id = ?1 LIMIT 1", reservation_id))
          return refuse("", "the order already has reservation " + reservation_id);
        for (const auto& [sku, quantity] : wanted) {
          if (out_of_stock.contains(sku)) return refuse(sku, "not available (out of stock)");
          auto units = services::query_integer(db, "SELECT units FROM stock WHERE sku = ?1", sku);
          if (!units) return refuse(sku, "unknown SKU");
          if (*units < quantity)
            return refuse(sku, "only " + std::to_string(*units) + " left, " +
                                   std::to_string(quantity) + " wanted");
        }
        std::string summary;
        for (const auto& [sku, quantity] : wanted) {
          services::execute(db, "UPDATE stock SET units = units - ?2 WHERE sku = ?1", sku,
                            quantity);
          services::execute(db,
                            "INSERT INTO reservations (reservation_id, order_id, sku, quantity) "
                            "VALUES (?1, ?2, ?3, ?4)",
                            reservation_id, command.order_id, sku, quantity);
          summary += (summary.empty() ? "" : ", ") + std::to_string(quantity) + " x " + sku;
        }
        log.note(command, "reserved " + command.order_id + " (" + reservation_id + "): " + summary);
        return inventory::Reserved{reservation_id};
      },
      [&log](const inventory::Reserve& command, const std::string& error) -> saga::Reply {
        log.note(command,
                 "reserving " + command.order_id + " failed after retries, refused: " + error,
                 services::Level::warn);
        return inventory::OutOfStock{"", error};
      });

  participant.on<inventory::Release>([&log](const inventory::Release& command,
                                            saga::ParticipantLedger::Unit& unit) -> saga::Reply {
    sqlite3* db = saga::sqlite_connection(unit);
    // Without a reservation id (the reservation timed out at the orchestrator), the order's.
    static constexpr const char* kTheReservation =
        "(reservation_id = ?1 OR (?1 = '' AND order_id = ?2))";
    const std::string which =
        command.order_id +
        (command.reservation_id.empty() ? "" : " (" + command.reservation_id + ")");
    std::vector<std::pair<std::string, std::int64_t>> held;
    {
      services::Statement rows(
          db, std::string("SELECT sku, quantity FROM reservations WHERE released = 0 AND ") +
                  kTheReservation);
      rows.bind(1, command.reservation_id);
      rows.bind(2, command.order_id);
      while (rows.step()) held.emplace_back(rows.text(0), rows.integer(1));
    }
    std::int64_t units = 0;
    for (const auto& [sku, quantity] : held) {
      services::execute(db, "UPDATE stock SET units = units + ?2 WHERE sku = ?1", sku, quantity);
      units += quantity;
    }
    services::execute(db,
                      std::string("UPDATE reservations SET released = 1 WHERE released = 0 AND ") +
                          kTheReservation,
                      command.reservation_id, command.order_id);
    if (held.empty())
      log.note(command, "released " + which + ": nothing held (unknown or already released)");
    else
      log.note(command, "released " + which + ": " + std::to_string(units) + " units of " +
                            std::to_string(held.size()) + " SKUs back in stock");
    return inventory::Released{command.reservation_id};
  });
}

}  // namespace

int main(int argc, char** argv) {
  services::block_stop_signals();
  CLI::App app{
      "The inventory service of the order saga: reserves stock for orders and releases it when "
      "a saga compensates. Its ledger (stock, stock_initial, reservations) is a SQLite file."};
  services::CommonOptions common;
  common.service = "inventory";
  services::add_common_flags(app, common);
  std::string stock_text =
      "sku-pen=100000,sku-book=100000,sku-lamp=100000,sku-chair=100000,sku-gold=40";
  std::string out_of_stock_text;
  app.add_option("--stock", stock_text,
                 "Initial stock as SKU=UNITS,...; seeds an empty ledger only (a restart keeps "
                 "the stock it has)")
      ->type_name("SKU=UNITS,...")
      ->check(parses(parse_stock, "stock"))
      ->capture_default_str();
  app.add_option(
         "--out-of-stock", out_of_stock_text,
         "SKUs whose reservations are always refused, comma-separated (e.g. sku-gold,sku-lamp); "
         "default: none")
      ->type_name("SKU,...")
      ->check(parses(parse_skus, "skus"));
  if (auto exit_code = services::parse(app, argc, argv)) return *exit_code;

  const Stock stock = parse_stock(stock_text);
  const std::set<std::string> out_of_stock = parse_skus(out_of_stock_text);
  return services::run_service(common,
                               {.setup = [&](sqlite3* db) { setup(db, stock); },
                                .handlers =
                                    [&](saga::Participant& participant, services::CommandLog& log) {
                                      add_handlers(participant, log, out_of_stock);
                                    }});
}
