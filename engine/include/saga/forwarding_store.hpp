// A Store that forwards every call to another Store. Derive from it to decorate a store (count
// or record commits, inject failures) and override only what the decoration changes.
//
// Ownership: keeps a reference to the inner store, which must outlive it. Thread safety and
// errors: those of the inner store.
#pragma once

#include "saga/store.hpp"

namespace saga {

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(Store& inner) : inner_(inner) {}

  StoreStatus commit(const WriteBatch& batch) override { return inner_.commit(batch); }
  StoreResult<std::optional<SagaRecord>> load_saga(const std::string& saga_id) override {
    return inner_.load_saga(saga_id);
  }
  StoreResult<bool> inbox_contains(const std::string& message_id) override {
    return inner_.inbox_contains(message_id);
  }
  std::uint64_t last_commit() const noexcept override { return inner_.last_commit(); }
  std::uint64_t durable_through() const noexcept override { return inner_.durable_through(); }
  StoreStatus sync() override { return inner_.sync(); }
  void begin_sync() override { inner_.begin_sync(); }
  void begin_reads() noexcept override { inner_.begin_reads(); }
  void end_reads() noexcept override { inner_.end_reads(); }
  StoreResult<std::vector<OutboxMessage>> pending_outbox(std::size_t limit) override {
    return inner_.pending_outbox(limit);
  }
  StoreResult<std::vector<OutboxMessage>> pending_outbox_for(const std::string& destination,
                                                             std::int64_t after_sequence,
                                                             std::size_t limit) override {
    return inner_.pending_outbox_for(destination, after_sequence, limit);
  }
  StoreResult<std::vector<OutboxBacklog>> outbox_backlog() override {
    return inner_.outbox_backlog();
  }
  StoreResult<std::vector<OutboxMessage>> awaiting_reply(std::size_t limit) override {
    return inner_.awaiting_reply(limit);
  }
  StoreResult<std::vector<OutboxMessage>> retries_after_failure() override {
    return inner_.retries_after_failure();
  }
  StoreResult<std::optional<OutboxMessage>> outbox_message(const std::string& message_id) override {
    return inner_.outbox_message(message_id);
  }
  StoreResult<std::vector<StoredOperatorRequest>> pending_operator_requests(
      std::size_t limit) override {
    return inner_.pending_operator_requests(limit);
  }
  StoreResult<std::vector<JournalEntry>> journal(const std::string& saga_id) override {
    return inner_.journal(saga_id);
  }
  StoreResult<std::vector<DeadLetter>> dead_letters(std::size_t limit) override {
    return inner_.dead_letters(limit);
  }
  StoreResult<std::optional<DeadLetter>> dead_letter(std::int64_t id) override {
    return inner_.dead_letter(id);
  }
  StoreResult<std::vector<OutboxMessage>> outbox(const std::string& saga_id) override {
    return inner_.outbox(saga_id);
  }
  StoreResult<std::vector<SagaRecord>> sagas_with_status(SagaStatus status,
                                                         std::size_t limit) override {
    return inner_.sagas_with_status(status, limit);
  }
  StoreResult<std::vector<SagaCount>> count_sagas() override { return inner_.count_sagas(); }
  StoreResult<std::int64_t> count_open_dead_letters() override {
    return inner_.count_open_dead_letters();
  }

 protected:
  Store& inner() { return inner_; }

 private:
  Store& inner_;
};

}  // namespace saga
