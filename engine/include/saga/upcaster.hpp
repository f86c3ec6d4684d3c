// Upcasters: functions that upgrade an older version of a message payload to the next version,
// registered per (message type, from-version) and applied step by step (v1 -> v2 -> v3) before
// any handler sees the message (the seed's "Versioning Events").
//
//   saga::Upcasters upcasters;
//   upcasters.add("payment.Charged", 1, [](nlohmann::json v1) {
//     v1["currency"] = "EUR";  // v2 added a currency
//     return v1;
//   });
//
// A message newer than the reader knows, or one with a gap in its upcaster chain, cannot be
// read: upgrade() returns the reason, and the engine (or participant) dead-letters the message.
//
// Thread safety: add() before use; upgrade() is const and safe from any thread afterwards.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

namespace saga {

using Upcaster = std::function<nlohmann::json(nlohmann::json payload)>;

class Upcasters {
 public:
  // Registers the upgrade of `type` from `from_version` to `from_version + 1`. Throws
  // std::logic_error if one is already registered for that pair, std::invalid_argument for
  // from_version < 1 or an empty function.
  void add(std::string_view type, int from_version, Upcaster upcaster);

  struct Refusal {
    std::string code;  // "unsupported_version" or "upcaster_failed"
    std::string reason;
  };
  using Result = std::variant<nlohmann::json, Refusal>;

  // Upgrades `payload` of `type` from `version` to `target`. Same version: returned unchanged.
  // Newer than target, or a missing step: "unsupported_version". An upcaster that throws:
  // "upcaster_failed" with the exception's text.
  Result upgrade(std::string_view type, int version, int target, nlohmann::json payload) const;

  bool empty() const noexcept { return steps_.empty(); }

 private:
  std::map<std::pair<std::string, int>, Upcaster, std::less<>> steps_;
};

}  // namespace saga
