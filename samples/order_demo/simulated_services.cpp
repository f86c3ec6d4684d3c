#include "simulated_services.hpp"

namespace demo {

SimulatedServices::SimulatedServices(ServiceRules rules, std::map<std::string, int> stock)
    : rules_(rules), random_(rules.seed) {
  ledgers_.initial_stock = stock;
  ledgers_.stock = std::move(stock);
}

std::optional<std::string> SimulatedServices::serve(const std::string& service,
                                                    const saga::Envelope& command) {
  if (auto seen = replies_.find(command.event_id); seen != replies_.end()) return seen->second;
  std::pair<std::string, nlohmann::json> reply;
  if (service == "inventory")
    reply = inventory(command);
  else if (service == "payment")
    reply = payment(command);
  else if (service == "shipping")
    reply = shipping(command);
  else
    return std::nullopt;

  saga::Envelope envelope;
  envelope.event_id = saga::new_uuid();
  envelope.event_type = reply.first;
  envelope.timestamp = std::chrono::system_clock::now();
  envelope.source = service;
  envelope.correlation_id = command.correlation_id;
  envelope.causation_id = command.event_id;
  envelope.kind = saga::MessageKind::reply;
  envelope.data = std::move(reply.second);
  std::string bytes = saga::encode_envelope(envelope);
  replies_.emplace(command.event_id, bytes);
  return bytes;
}

std::pair<std::string, nlohmann::json> SimulatedServices::inventory(const saga::Envelope& command) {
  if (command.event_type == inventory::Reserve::type) {
    auto reserve = command.data.get<inventory::Reserve>();
    for (const auto& item : reserve.items) {
      if (ledgers_.stock[item.sku] < item.quantity)
        return {std::string(inventory::OutOfStock::type),
                inventory::OutOfStock{
                    item.sku, "only " + std::to_string(ledgers_.stock[item.sku]) + " left"}};
    }
    for (const auto& item : reserve.items) ledgers_.stock[item.sku] -= item.quantity;
    std::string id = "res-" + std::to_string(next_id_++);
    ledgers_.reservations[id] = reserve.items;
    ledgers_.reservation_of_order[reserve.order_id] = id;
    return {std::string(inventory::Reserved::type), inventory::Reserved{id}};
  }
  auto release = command.data.get<inventory::Release>();
  if (auto found = ledgers_.reservations.find(release.reservation_id);
      found != ledgers_.reservations.end()) {
    for (const auto& item : found->second) ledgers_.stock[item.sku] += item.quantity;
    ledgers_.reservations.erase(found);
    ledgers_.reservation_of_order.erase(release.order_id);
  }
  return {std::string(inventory::Released::type), inventory::Released{release.reservation_id}};
}

std::pair<std::string, nlohmann::json> SimulatedServices::payment(const saga::Envelope& command) {
  if (command.event_type == payment::Charge::type) {
    auto charge = command.data.get<payment::Charge>();
    if (charge.amount_cents > rules_.decline_above_cents)
      return {std::string(payment::Declined::type),
              payment::Declined{"amount over the limit of " +
                                std::to_string(rules_.decline_above_cents) + " cents"}};
    ledgers_.charged_cents[charge.order_id] += charge.amount_cents;
    ledgers_.charges[charge.order_id] += 1;
    return {std::string(payment::Charged::type),
            payment::Charged{"pay-" + std::to_string(next_id_++)}};
  }
  auto refund = command.data.get<payment::Refund>();
  ledgers_.charged_cents[refund.order_id] -= refund.amount_cents;
  return {std::string(payment::Refunded::type), payment::Refunded{refund.payment_id}};
}

std::pair<std::string, nlohmann::json> SimulatedServices::shipping(const saga::Envelope& command) {
  auto ship = command.data.get<shipping::Ship>();
  if (std::bernoulli_distribution(rules_.shipping_failure_rate)(random_))
    return {std::string(shipping::Undeliverable::type),
            shipping::Undeliverable{"address not found"}};
  ledgers_.shipped.insert(ship.order_id);
  return {std::string(shipping::Shipped::type),
          shipping::Shipped{"track-" + std::to_string(next_id_++)}};
}

}  // namespace demo
