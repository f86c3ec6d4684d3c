// An in-process Transport for tests, simulation and the single-process demo. The engine side
// uses the Transport interface; the test (or simulated participants) use the other methods to
// see what was sent and to deliver replies.
//
// Delivery is in order and lossless unless refuse_sends() is used to simulate a network that
// pushes back (would_block) or has no peer (unroutable).
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "saga/transport.hpp"

namespace saga {

class MemoryTransport final : public Transport {
 public:
  struct Sent {
    std::string destination;
    std::string bytes;
  };

  // Transport (engine side).
  SendResult send(std::string_view destination, std::string_view bytes) override;
  std::optional<InboundMessage> receive(std::chrono::milliseconds wait) override;
  void wake() override;
  void publish(std::string_view event_type, std::string_view bytes) override;
  bool has_observers() override { return true; }  // take_events() is the observer

  // Observer side: lifecycle events published since the last call, in order.
  std::vector<Sent> take_events();

  // Participant side: queue one inbound message for the engine.
  void deliver(std::string bytes, std::string peer = "memory");
  // The same, from a sender known to have announced itself as `sender_service`.
  void deliver_from(std::string sender_service, std::string bytes);
  // Everything sent since the last call, in order.
  std::vector<Sent> take_sent();
  // Waits up to `wait` for at least one sent message, then takes all of them.
  std::vector<Sent> wait_sent(std::chrono::milliseconds wait);
  // From now on send() returns `result` without delivering (nullopt: deliver normally).
  void refuse_sends(std::optional<SendResult> result);
  std::size_t inbound_queued() const;

 private:
  void enqueue(InboundMessage message);

  mutable std::mutex mutex_;
  std::condition_variable inbound_ready_;
  std::condition_variable sent_ready_;
  std::deque<InboundMessage> inbound_;
  std::vector<Sent> sent_;
  std::vector<Sent> events_;  // destination holds the event type
  std::optional<SendResult> refusal_;
  bool woken_ = false;
};

}  // namespace saga
