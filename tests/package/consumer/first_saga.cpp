// Your first saga: book a trip = reserve a seat, then charge the card. Built against the
// installed package by tests/package, and shown in the README.
#include <iostream>
#include <map>
#include <string>

#include <saga/definition.hpp>
#include <saga/detail/runtime.hpp>
#include <saga/engine.hpp>
#include <saga/memory_transport.hpp>
#include <saga/sqlite_store.hpp>

namespace trip {

// 1. Messages: plain structs with a wire name, a version and JSON conversion.
struct ReserveSeat {
  static constexpr std::string_view type = "seats.Reserve", service = "seats";
  static constexpr int version = 1;
  std::string traveller;
};
struct SeatReserved {
  static constexpr std::string_view type = "seats.Reserved";
  static constexpr int version = 1;
  std::string seat;
};
struct NoSeat {
  static constexpr std::string_view type = "seats.NoneLeft";
  static constexpr int version = 1;
};
struct ReleaseSeat {
  static constexpr std::string_view type = "seats.Release", service = "seats";
  static constexpr int version = 1;
  std::string seat;
};
struct SeatReleased {
  static constexpr std::string_view type = "seats.Released";
  static constexpr int version = 1;
};
struct ChargeCard {
  static constexpr std::string_view type = "cards.Charge", service = "cards";
  static constexpr int version = 1;
  std::string traveller;
  int cents = 0;
};
struct Charged {
  static constexpr std::string_view type = "cards.Charged";
  static constexpr int version = 1;
};
struct Declined {
  static constexpr std::string_view type = "cards.Declined";
  static constexpr int version = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ReserveSeat, traveller)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(SeatReserved, seat)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ReleaseSeat, seat)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ChargeCard, traveller, cents)
void to_json(nlohmann::json& j, const NoSeat&) {
  j = nlohmann::json::object();
}
void from_json(const nlohmann::json&, NoSeat&) {}
void to_json(nlohmann::json& j, const SeatReleased&) {
  j = nlohmann::json::object();
}
void from_json(const nlohmann::json&, SeatReleased&) {}
void to_json(nlohmann::json& j, const Charged&) {
  j = nlohmann::json::object();
}
void from_json(const nlohmann::json&, Charged&) {}
void to_json(nlohmann::json& j, const Declined&) {
  j = nlohmann::json::object();
}
void from_json(const nlohmann::json&, Declined&) {}

// 2. Saga data, and how commands are built from it and replies folded into it.
struct Booking {
  std::string traveller;
  int cents = 0;
  std::string seat;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Booking, traveller, cents, seat)

ReserveSeat make_command(const Booking& b, saga::tag<ReserveSeat>) {
  return {b.traveller};
}
ReleaseSeat make_command(const Booking& b, saga::tag<ReleaseSeat>) {
  return {b.seat};
}
ChargeCard make_command(const Booking& b, saga::tag<ChargeCard>) {
  return {b.traveller, b.cents};
}
void apply_reply(Booking& b, const SeatReserved& reply) {
  b.seat = reply.seat;
}

// 3. The saga: an ordered list of steps.
struct BookTrip
    : saga::definition<"book-trip", 1, Booking,
                       saga::step<ReserveSeat>::on_success<SeatReserved>::on_failure<
                           NoSeat>::compensate_with<ReleaseSeat, SeatReleased>,
                       saga::pivot<ChargeCard>::on_success<Charged>::on_failure<Declined>> {};

}  // namespace trip

int main() {
  // 4. Embed the engine: a store, a transport, a clock.
  saga::Options options;
  options.store.path = ":memory:";
  auto store = saga::SqliteStore::open(options.store);
  if (!store) {
    std::cerr << store.error().message << "\n";
    return 1;
  }
  saga::MemoryTransport transport;
  saga::SystemClock clock;
  saga::Engine engine(options, *store.value(), transport, clock);
  engine.register_saga<trip::BookTrip>();
  engine.on_outcome([](const saga::SagaOutcome& outcome) {
    std::cout << "saga " << outcome.saga_id << " " << saga::to_string(outcome.status) << "\n";
  });

  engine.start<trip::BookTrip>({"ada", 12000, ""});
  engine.run_once();  // commits the saga and sends seats.Reserve

  // Play the participants: answer every command with the success reply.
  const std::map<std::string, std::string> success = {{"seats.Reserve", "seats.Reserved"},
                                                      {"cards.Charge", "cards.Charged"}};
  for (int turn = 0; turn < 2; ++turn) {
    for (auto& sent : transport.take_sent()) {
      auto command = std::get<saga::Envelope>(saga::decode_envelope(sent.bytes));
      saga::Envelope reply{saga::new_uuid(), success.at(command.event_type), clock.now()};
      reply.correlation_id = command.correlation_id;
      reply.causation_id = command.event_id;
      reply.kind = saga::MessageKind::reply;
      if (reply.event_type == "seats.Reserved") reply.data = {{"seat", "12A"}};
      transport.deliver(saga::encode_envelope(reply));
    }
    engine.run_once();
  }
  return engine.stats().sagas_completed == 1 ? 0 : 1;
}
