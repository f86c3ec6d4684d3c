#include "order/order_saga.hpp"

#include <numeric>
#include <stdexcept>

#include "saga/detail/runtime.hpp"

template std::unique_ptr<saga::SagaType> saga::make_saga_type<order::OrderSaga>();

namespace order {

std::int64_t OrderData::total_cents() const {
  return std::accumulate(items.begin(), items.end(), std::int64_t{0},
                         [](std::int64_t sum, const Item& item) {
                           return sum + item.unit_price_cents * item.quantity;
                         });
}

namespace {
template <class T>
void put_optional(nlohmann::json& json, const char* key, const std::optional<T>& value) {
  if (value) json[key] = *value;
}
template <class T>
void get_optional(const nlohmann::json& json, const char* key, std::optional<T>& value) {
  auto found = json.find(key);
  if (found != json.end() && !found->is_null()) value = found->get<T>();
}
}  // namespace

void to_json(nlohmann::json& json, const OrderData& data) {
  json = nlohmann::json::object();
  json["order_id"] = data.order_id;
  json["customer_id"] = data.customer_id;
  json["address"] = data.address;
  json["items"] = data.items;
  put_optional(json, "reservation_id", data.reservation_id);
  put_optional(json, "payment_id", data.payment_id);
  put_optional(json, "tracking_number", data.tracking_number);
  put_optional(json, "failure_reason", data.failure_reason);
}

void from_json(const nlohmann::json& json, OrderData& data) {
  json.at("order_id").get_to(data.order_id);
  json.at("customer_id").get_to(data.customer_id);
  json.at("address").get_to(data.address);
  json.at("items").get_to(data.items);
  get_optional(json, "reservation_id", data.reservation_id);
  get_optional(json, "payment_id", data.payment_id);
  get_optional(json, "tracking_number", data.tracking_number);
  get_optional(json, "failure_reason", data.failure_reason);
}

inventory::Reserve make_command(const OrderData& data, saga::tag<inventory::Reserve>) {
  if (data.items.empty()) throw std::invalid_argument("an order needs at least one item");
  return {data.order_id, data.items};
}
inventory::Release make_command(const OrderData& data, saga::tag<inventory::Release>) {
  // No reservation id when Reserve timed out: the service releases whatever the order holds.
  return {data.order_id, data.reservation_id.value_or("")};
}
payment::Charge make_command(const OrderData& data, saga::tag<payment::Charge>) {
  return {data.order_id, data.customer_id, data.total_cents()};
}
payment::Refund make_command(const OrderData& data, saga::tag<payment::Refund>) {
  // No payment id when Charge timed out: the service refunds whatever the order was charged.
  return {data.order_id, data.payment_id.value_or(""), data.total_cents()};
}
shipping::Ship make_command(const OrderData& data, saga::tag<shipping::Ship>) {
  return {data.order_id, data.address, data.items};
}

void apply_reply(OrderData& data, const inventory::Reserved& reply) {
  data.reservation_id = reply.reservation_id;
}
void apply_reply(OrderData& data, const inventory::OutOfStock& reply) {
  data.failure_reason =
      "out of stock: " + reply.sku + (reply.reason.empty() ? "" : " (" + reply.reason + ")");
}
void apply_reply(OrderData& data, const payment::Charged& reply) {
  data.payment_id = reply.payment_id;
}
void apply_reply(OrderData& data, const payment::Declined& reply) {
  data.failure_reason = "payment declined: " + reply.reason;
}
void apply_reply(OrderData& data, const shipping::Shipped& reply) {
  data.tracking_number = reply.tracking_number;
}
void apply_reply(OrderData& data, const shipping::Undeliverable& reply) {
  data.failure_reason = "undeliverable: " + reply.reason;
}

}  // namespace order
