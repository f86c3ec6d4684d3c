// What a message type is, and how saga data meets messages.
//
// A message type is a plain struct with a stable wire name, a schema version and nlohmann JSON
// conversion. A command also names the service it is directed at:
//
//   namespace inventory {
//   struct Reserve {
//     static constexpr std::string_view type = "inventory.Reserve";
//     static constexpr int version = 1;
//     static constexpr std::string_view service = "inventory";  // commands only
//     std::string order_id;
//     std::vector<Item> items;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Reserve, order_id, items)
//   }
//
// Saga data meets messages through two free functions found by argument-dependent lookup:
//
//   inventory::Reserve make_command(const OrderData&, saga::tag<inventory::Reserve>);  // required
//   void apply_reply(OrderData&, const inventory::Reserved&);  // optional; no-op when absent
//
// Both may throw: the engine turns the exception into a step failure (see saga/machine.hpp).
#pragma once

#include <concepts>
#include <string_view>

#include <nlohmann/json.hpp>

namespace saga {

// Selects the command type in make_command(data, tag<Command>{}).
template <class T>
struct tag {
  using type = T;
};

// `type` and `version` are compile-time constants: a type that is not empty, a version from 1
// (what a participant accepts on the wire; docs/wire-protocol.md).
template <class M>
concept Message = requires {
  { M::type } -> std::convertible_to<std::string_view>;
  { M::version } -> std::convertible_to<int>;
}
&&requires(const M& message, const nlohmann::json& json) {
  nlohmann::json(message);
  json.get<M>();
}
&&(!std::string_view(M::type).empty()) && (M::version >= 1);

template <class M>
concept Command = Message<M> && requires {
  { M::service } -> std::convertible_to<std::string_view>;
};

template <class Data, class Cmd>
concept HasCommandBuilder = requires(const Data& data) {
  { make_command(data, tag<Cmd>{}) } -> std::convertible_to<Cmd>;
};

template <class Data, class Reply>
concept HasReplyHandler = requires(Data& data, const Reply& reply) {
  apply_reply(data, reply);
};

// Folds a reply into saga data when the user defined apply_reply for it; otherwise does nothing.
template <class Data, class Reply>
void fold_reply(Data& data, const Reply& reply) {
  if constexpr (HasReplyHandler<Data, Reply>) apply_reply(data, reply);
}

}  // namespace saga
