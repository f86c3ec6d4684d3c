// Test support: a MemoryTransport whose sends to some destinations are refused, as if those
// participants were away (unroutable).
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "saga/memory_transport.hpp"
#include "saga/transport.hpp"

namespace saga::test {

// Not thread-safe: change `away` only while the engine's loop is not running.
class PartlyAwayTransport final : public Transport {
 public:
  SendResult send(std::string_view destination, std::string_view bytes) override {
    if (away.contains(std::string(destination))) return SendResult::unroutable;
    return inner.send(destination, bytes);
  }
  std::optional<InboundMessage> receive(std::chrono::milliseconds wait) override {
    return inner.receive(wait);
  }
  void wake() override { inner.wake(); }

  MemoryTransport inner;
  std::set<std::string> away;
};

}  // namespace saga::test
