// Saga statuses and small result types shared by the engine, stores and transports.
//
// Thread safety: plain values; safe to copy between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace saga {

// Lifecycle of one saga instance. Running and Compensating are in flight; the other three are
// terminal. Failed means a compensation could not be carried out (or user code failed where no
// compensation can help): the saga is parked for an operator and never silently dropped.
enum class SagaStatus { Running, Compensating, Completed, Compensated, Failed };

std::string_view to_string(SagaStatus status) noexcept;
// Parses the names produced by to_string(); nullopt for anything else.
std::optional<SagaStatus> saga_status_from_string(std::string_view text) noexcept;
constexpr bool is_terminal(SagaStatus status) noexcept {
  return status == SagaStatus::Completed || status == SagaStatus::Compensated ||
         status == SagaStatus::Failed;
}

// Conditions a caller of a Store is expected to handle. Broken invariants throw instead.
enum class StoreErrorCode {
  busy,       // the database is locked by another connection beyond busy_timeout
  conflict,   // optimistic concurrency: a saga row changed under us (row_version mismatch)
  io_error,   // the disk failed or is full; the transaction was rolled back
  corrupt,    // the file is not a database we can use (bad schema version, integrity)
  not_found,  // a looked-up row does not exist
};

struct StoreError {
  StoreErrorCode code;
  std::string message;
};

std::string_view to_string(StoreErrorCode code) noexcept;

// Either a value or a StoreError. A minimal stand-in for std::expected (C++23).
template <class T>
class StoreResult {
 public:
  StoreResult(T value) : state_(std::move(value)) {}
  StoreResult(StoreError error) : state_(std::move(error)) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  // By value, so `for (auto& x : store.journal(id).value())` does not dangle.
  T value() && { return std::get<0>(std::move(state_)); }
  const StoreError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, StoreError> state_;
};

// Success, or the error that prevented it.
struct StoreStatus {
  std::optional<StoreError> error;
  bool ok() const noexcept { return !error.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  static StoreStatus success() { return {}; }
  static StoreStatus failure(StoreErrorCode code, std::string message) {
    return {StoreError{code, std::move(message)}};
  }
};

}  // namespace saga
