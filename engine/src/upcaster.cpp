#include "saga/upcaster.hpp"

#include <stdexcept>

namespace saga {

void Upcasters::add(std::string_view type, int from_version, Upcaster upcaster) {
  if (from_version < 1) throw std::invalid_argument("upcaster: versions start at 1");
  if (!upcaster) throw std::invalid_argument("upcaster: empty function");
  auto key = std::pair<std::string, int>(std::string(type), from_version);
  if (!steps_.emplace(key, std::move(upcaster)).second)
    throw std::logic_error("upcaster for '" + key.first + "' from version " +
                           std::to_string(from_version) + " is already registered");
}

Upcasters::Result Upcasters::upgrade(std::string_view type, int version, int target,
                                     nlohmann::json payload) const {
  const std::string name(type);
  if (version > target)
    return Refusal{"unsupported_version", "'" + name + "' version " + std::to_string(version) +
                                              " is newer than the version this reader knows (" +
                                              std::to_string(target) + ")"};
  for (int at = version; at < target; ++at) {
    auto step = steps_.find(std::pair<std::string, int>(name, at));
    if (step == steps_.end())
      return Refusal{"unsupported_version", "'" + name + "' version " + std::to_string(version) +
                                                " cannot be read: no upcaster from version " +
                                                std::to_string(at) + " to " +
                                                std::to_string(at + 1)};
    try {
      payload = step->second(std::move(payload));
    } catch (const std::exception& error) {
      return Refusal{"upcaster_failed", "upcasting '" + name + "' from version " +
                                            std::to_string(at) + " failed: " + error.what()};
    } catch (...) {
      return Refusal{"upcaster_failed", "upcasting '" + name + "' from version " +
                                            std::to_string(at) +
                                            " failed: an exception that is not a std::exception"};
    }
    if (!payload.is_object())
      return Refusal{"upcaster_failed", "upcasting '" + name + "' from version " +
                                            std::to_string(at) + " did not produce an object"};
  }
  return payload;
}

}  // namespace saga
