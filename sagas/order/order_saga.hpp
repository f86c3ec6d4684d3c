// The order saga of the seed's Saga Pattern: reserve inventory, charge the payment, ship.
//
//   inventory.Reserve --Reserved--> payment.Charge --Charged--> shipping.Ship (pivot) --Shipped-->
//   Completed
//        | OutOfStock                   | Declined                   | Undeliverable
//        v                              v                            v
//   Compensated           inventory.Release <-------------- payment.Refund
//                          --Released--> Compensated         --Refunded--> inventory.Release
//
// Shipping is the pivot: once the parcel left, the saga only goes forward. There is no separate
// "cancel order" command: the orchestrator owns the order, and a Compensated saga is a
// cancelled order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "order/messages.hpp"
#include "saga/definition.hpp"

namespace order {

struct OrderData {
  std::string order_id;
  std::string customer_id;
  std::string address;
  std::vector<Item> items;
  std::optional<std::string> reservation_id = {};
  std::optional<std::string> payment_id = {};
  std::optional<std::string> tracking_number = {};
  std::optional<std::string> failure_reason = {};

  std::int64_t total_cents() const;
};

void to_json(nlohmann::json& json, const OrderData& data);
void from_json(const nlohmann::json& json, OrderData& data);

// A struct rather than a type alias: Boost.MSM spells the front-end's type into its symbol names,
// and a short name keeps object files and compile times small.
// clang-format off
struct OrderSaga : saga::definition<"order", 1, OrderData,
    saga::step<inventory::Reserve>
        ::on_success<inventory::Reserved>
        ::on_failure<inventory::OutOfStock>
        ::compensate_with<inventory::Release, inventory::Released>,
    saga::step<payment::Charge>
        ::on_success<payment::Charged>
        ::on_failure<payment::Declined>
        ::compensate_with<payment::Refund, payment::Refunded>,
    saga::pivot<shipping::Ship>
        ::on_success<shipping::Shipped>
        ::on_failure<shipping::Undeliverable>> {};
// clang-format on

// Command builders and reply handlers, found by argument-dependent lookup.
inventory::Reserve make_command(const OrderData& data, saga::tag<inventory::Reserve>);
inventory::Release make_command(const OrderData& data, saga::tag<inventory::Release>);
payment::Charge make_command(const OrderData& data, saga::tag<payment::Charge>);
payment::Refund make_command(const OrderData& data, saga::tag<payment::Refund>);
shipping::Ship make_command(const OrderData& data, saga::tag<shipping::Ship>);

void apply_reply(OrderData& data, const inventory::Reserved& reply);
void apply_reply(OrderData& data, const inventory::OutOfStock& reply);
void apply_reply(OrderData& data, const payment::Charged& reply);
void apply_reply(OrderData& data, const payment::Declined& reply);
void apply_reply(OrderData& data, const shipping::Shipped& reply);
void apply_reply(OrderData& data, const shipping::Undeliverable& reply);

}  // namespace order

// Compiled once, in order_saga.cpp.
extern template std::unique_ptr<saga::SagaType> saga::make_saga_type<order::OrderSaga>();
