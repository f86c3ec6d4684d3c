// Messages of the order saga: commands to, and replies from, the inventory, payment and shipping
// services. Amounts are integer cents. Every type has a stable wire name and a version.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace order {

struct Item {
  std::string sku;
  int quantity = 0;
  std::int64_t unit_price_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, sku, quantity, unit_price_cents)

}  // namespace order

namespace inventory {

struct Reserve {
  static constexpr std::string_view type = "inventory.Reserve";
  static constexpr int version = 1;
  static constexpr std::string_view service = "inventory";
  std::string order_id;
  std::vector<order::Item> items;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Reserve, order_id, items)

struct Reserved {
  static constexpr std::string_view type = "inventory.Reserved";
  static constexpr int version = 1;
  std::string reservation_id;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Reserved, reservation_id)

struct OutOfStock {
  static constexpr std::string_view type = "inventory.OutOfStock";
  static constexpr int version = 1;
  std::string sku;
  std::string reason;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(OutOfStock, sku, reason)

struct Release {
  static constexpr std::string_view type = "inventory.Release";
  static constexpr int version = 1;
  static constexpr std::string_view service = "inventory";
  std::string order_id;
  std::string reservation_id;  // empty when the saga never learnt it (Reserve timed out)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Release, order_id, reservation_id)

struct Released {
  static constexpr std::string_view type = "inventory.Released";
  static constexpr int version = 1;
  std::string reservation_id;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Released, reservation_id)

}  // namespace inventory

namespace payment {

struct Charge {
  static constexpr std::string_view type = "payment.Charge";
  static constexpr int version = 1;
  static constexpr std::string_view service = "payment";
  std::string order_id;
  std::string customer_id;
  std::int64_t amount_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Charge, order_id, customer_id, amount_cents)

struct Charged {
  static constexpr std::string_view type = "payment.Charged";
  static constexpr int version = 1;
  std::string payment_id;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Charged, payment_id)

struct Declined {
  static constexpr std::string_view type = "payment.Declined";
  static constexpr int version = 1;
  std::string reason;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Declined, reason)

struct Refund {
  static constexpr std::string_view type = "payment.Refund";
  static constexpr int version = 1;
  static constexpr std::string_view service = "payment";
  std::string order_id;
  std::string payment_id;  // empty when the saga never learnt it (Charge timed out)
  std::int64_t amount_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Refund, order_id, payment_id, amount_cents)

struct Refunded {
  static constexpr std::string_view type = "payment.Refunded";
  static constexpr int version = 1;
  std::string payment_id;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Refunded, payment_id)

}  // namespace payment

namespace shipping {

struct Ship {
  static constexpr std::string_view type = "shipping.Ship";
  static constexpr int version = 1;
  static constexpr std::string_view service = "shipping";
  std::string order_id;
  std::string address;
  std::vector<order::Item> items;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Ship, order_id, address, items)

struct Shipped {
  static constexpr std::string_view type = "shipping.Shipped";
  static constexpr int version = 1;
  std::string tracking_number;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Shipped, tracking_number)

struct Undeliverable {
  static constexpr std::string_view type = "shipping.Undeliverable";
  static constexpr int version = 1;
  std::string reason;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Undeliverable, reason)

}  // namespace shipping
