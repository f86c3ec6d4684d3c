#include "saga/memory_transport.hpp"

#include <utility>

namespace saga {

SendResult MemoryTransport::send(std::string_view destination, std::string_view bytes) {
  {
    std::lock_guard lock(mutex_);
    if (refusal_) return *refusal_;
    sent_.push_back({std::string(destination), std::string(bytes)});
  }
  sent_ready_.notify_all();
  return SendResult::sent;
}

std::optional<InboundMessage> MemoryTransport::receive(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  inbound_ready_.wait_for(lock, wait, [this] { return !inbound_.empty() || woken_; });
  woken_ = false;
  if (inbound_.empty()) return std::nullopt;
  InboundMessage message = std::move(inbound_.front());
  inbound_.pop_front();
  return message;
}

void MemoryTransport::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  inbound_ready_.notify_all();
}

void MemoryTransport::publish(std::string_view event_type, std::string_view bytes) {
  std::lock_guard lock(mutex_);
  events_.push_back({std::string(event_type), std::string(bytes)});
}

std::vector<MemoryTransport::Sent> MemoryTransport::take_events() {
  std::lock_guard lock(mutex_);
  return std::exchange(events_, {});
}

void MemoryTransport::deliver(std::string bytes, std::string peer) {
  enqueue({std::move(bytes), std::move(peer)});
}

void MemoryTransport::deliver_from(std::string sender_service, std::string bytes) {
  InboundMessage message{std::move(bytes), sender_service};
  message.sender_service = std::move(sender_service);
  enqueue(std::move(message));
}

void MemoryTransport::enqueue(InboundMessage message) {
  {
    std::lock_guard lock(mutex_);
    inbound_.push_back(std::move(message));
  }
  inbound_ready_.notify_all();
}

std::vector<MemoryTransport::Sent> MemoryTransport::take_sent() {
  std::lock_guard lock(mutex_);
  return std::exchange(sent_, {});
}

std::vector<MemoryTransport::Sent> MemoryTransport::wait_sent(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  sent_ready_.wait_for(lock, wait, [this] { return !sent_.empty(); });
  return std::exchange(sent_, {});
}

void MemoryTransport::refuse_sends(std::optional<SendResult> result) {
  std::lock_guard lock(mutex_);
  refusal_ = result;
}

std::size_t MemoryTransport::inbound_queued() const {
  std::lock_guard lock(mutex_);
  return inbound_.size();
}

}  // namespace saga
