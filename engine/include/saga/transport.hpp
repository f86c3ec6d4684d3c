// The seam between the engine and the network. The engine hands encoded envelopes to a
// Transport only after the transaction that produced them has committed, and takes inbound
// envelopes from it. Delivery guarantees come from the outbox and inbox, never from the
// transport: a Transport may drop, duplicate or reorder.
//
// Thread safety: send() and receive() are called from the engine loop thread only; wake() may be
// called from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace saga {

enum class SendResult {
  sent,         // handed to the network (not a delivery guarantee)
  would_block,  // back-pressure (high-water mark); try again later
  unroutable,   // no live peer serves the destination; try again later
};

std::string_view to_string(SendResult result) noexcept;

struct InboundMessage {
  std::string bytes;  // one encoded envelope, unvalidated
  std::string peer;   // transport-specific sender identity, for diagnostics
  // Set when the transport received something it could not turn into an envelope (wrong number
  // of frames, unknown frame type, a message before the peer announced itself). The engine
  // dead-letters it with this stable reason code and message; `bytes` holds the raw input
  // (bounded by the transport).
  std::string defect_code = {};
  std::string defect = {};
  // The service the sender announced itself as, where the transport knows it (the ZeroMQ
  // transport: the peer's ANNOUNCE, held to its CURVE key's service where keys are bound); empty
  // when unknown. The engine refuses a reply to a command it sent to another service
  // ("wrong_sender"); with this empty it does not check.
  std::string sender_service = {};
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Sends one encoded envelope to a service (a destination name such as "inventory").
  // Never blocks for long. Throws only for broken invariants (closed transport).
  virtual SendResult send(std::string_view destination, std::string_view bytes) = 0;

  // Waits up to `wait` for one inbound message; nullopt when none arrived or wake() was called.
  virtual std::optional<InboundMessage> receive(std::chrono::milliseconds wait) = 0;

  // Makes a concurrent or the next receive() return promptly. Safe from any thread.
  virtual void wake() = 0;

  // Publishes a saga lifecycle event (an encoded `kind: event` envelope) to observers, best
  // effort: events are notifications, never commands. Default: no observers, nothing to do.
  virtual void publish(std::string_view event_type, std::string_view bytes) {
    (void)event_type;
    (void)bytes;
  }

  // Whether publish() currently reaches anyone. The engine builds lifecycle events only when it
  // does, so an unobserved engine does not pay for encoding them. Called from the loop thread,
  // once per turn. Default: false (publish() does nothing).
  virtual bool has_observers() { return false; }
};

}  // namespace saga
