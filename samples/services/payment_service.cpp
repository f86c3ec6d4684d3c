// The payment service of the order saga: charges an order (payment.Charge) and refunds it when
// the saga compensates (payment.Refund). Its ledger is its own SQLite file:
//
//   payments(payment_id, order_id, amount_cents, refunded)   one row per charge
//
// Declines a charge above --decline-above cents, and a random --decline-rate of the others
// (seeded by --seed).
//
//   payment_service --orchestrator tcp://127.0.0.1:5555 --instance payment-1
#include <random>

#include "common.hpp"
#include "order/messages.hpp"
#include "saga/sqlite_participant_ledger.hpp"

namespace {

struct Rules {
  std::int64_t decline_above_cents = 60000;
  double decline_rate = 0.02;
};

void setup(sqlite3* db) {
  services::execute(db,
                    "CREATE TABLE IF NOT EXISTS payments ("
                    "payment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, "
                    "amount_cents INTEGER NOT NULL, refunded INTEGER NOT NULL DEFAULT 0)");
  services::execute(db, "CREATE INDEX IF NOT EXISTS payments_by_order ON payments (order_id)");
}

void add_handlers(saga::Participant& participant, services::CommandLog& log, const Rules& rules,
                  std::mt19937_64& random) {
  participant.on<payment::Charge>(
      [&log, &rules, &random](const payment::Charge& command,
                              saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        sqlite3* db = saga::sqlite_connection(unit);
        const std::string payment_id = "pay-" + command.order_id;
        // One draw per charge handled; the SDK never runs the handler again for a command it
        // recorded, so a redelivered command gets the same answer.
        const bool issuer_declines = std::bernoulli_distribution(rules.decline_rate)(random);
        auto decline = [&](const std::string& reason) {
          log.note(command, "declined " + command.order_id + ": " + reason);
          return payment::Declined{reason};
        };
        if (command.amount_cents < 0)
          return decline("amount must not be negative, got " +
                         std::to_string(command.amount_cents) + " cents");
        if (command.amount_cents > rules.decline_above_cents)
          return decline("amount " + std::to_string(command.amount_cents) +
                         " cents over the limit of " + std::to_string(rules.decline_above_cents) +
                         " cents");
        if (issuer_declines) return decline("card declined by the issuer");
        if (services::query_integer(db, "SELECT 1 FROM payments WHERE payment_id = ?1", payment_id))
          return decline("the order was already charged as " + payment_id);
        services::execute(
            db, "INSERT INTO payments (payment_id, order_id, amount_cents) VALUES (?1, ?2, ?3)",
            payment_id, command.order_id, command.amount_cents);
        log.note(command, "charged " + command.order_id + " (" + payment_id +
                              "): " + std::to_string(command.amount_cents) + " cents to " +
                              command.customer_id);
        return payment::Charged{payment_id};
      },
      [&log](const payment::Charge& command, const std::string& error) -> saga::Reply {
        log.note(command,
                 "charging " + command.order_id + " failed after retries, declined: " + error,
                 services::Level::warn);
        return payment::Declined{error};
      });

  participant.on<payment::Refund>([&log](const payment::Refund& command,
                                         saga::ParticipantLedger::Unit& unit) -> saga::Reply {
    sqlite3* db = saga::sqlite_connection(unit);
    // Without a payment id (the charge timed out at the orchestrator), the order's charge.
    static constexpr const char* kThePayment = "(payment_id = ?1 OR (?1 = '' AND order_id = ?2))";
    const std::string which =
        command.order_id + (command.payment_id.empty() ? "" : " (" + command.payment_id + ")");
    auto cents = services::query_integer(
        db, std::string("SELECT amount_cents FROM payments WHERE refunded = 0 AND ") + kThePayment,
        command.payment_id, command.order_id);
    services::execute(db, std::string("UPDATE payments SET refunded = 1 WHERE ") + kThePayment,
                      command.payment_id, command.order_id);
    if (cents)
      log.note(command, "refunded " + which + ": " + std::to_string(*cents) + " cents");
    else
      log.note(command, "refunded " + which + ": no charge to refund, nothing to do");
    return payment::Refunded{command.payment_id};
  });
}

}  // namespace

int main(int argc, char** argv) {
  services::block_stop_signals();
  CLI::App app{
      "The payment service of the order saga: charges orders and refunds them when a saga "
      "compensates. Its ledger (payments) is a SQLite file."};
  services::CommonOptions common;
  common.service = "payment";
  services::add_common_flags(app, common);
  Rules rules;
  app.add_option("--decline-above", rules.decline_above_cents,
                 "Decline every charge above this many cents")
      ->type_name("CENTS")
      ->check(services::whole_number())
      ->capture_default_str();
  app.add_option("--decline-rate", rules.decline_rate,
                 "Fraction of the other charges declined at random, 0 to 1 (seeded by --seed)")
      ->type_name("P")
      ->check(services::probability())
      ->capture_default_str();
  if (auto exit_code = services::parse(app, argc, argv)) return *exit_code;

  std::mt19937_64 random(common.seed);
  return services::run_service(
      common,
      {.setup = setup, .handlers = [&](saga::Participant& participant, services::CommandLog& log) {
         add_handlers(participant, log, rules, random);
       }});
}
