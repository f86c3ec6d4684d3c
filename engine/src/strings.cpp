#include <optional>
#include <string_view>

#include "saga/status.hpp"
#include "saga/store.hpp"
#include "saga/transport.hpp"

namespace saga {

std::string_view to_string(SagaStatus status) noexcept {
  switch (status) {
    case SagaStatus::Running:
      return "Running";
    case SagaStatus::Compensating:
      return "Compensating";
    case SagaStatus::Completed:
      return "Completed";
    case SagaStatus::Compensated:
      return "Compensated";
    case SagaStatus::Failed:
      return "Failed";
  }
  return "unknown";
}

std::optional<SagaStatus> saga_status_from_string(std::string_view text) noexcept {
  for (auto status : {SagaStatus::Running, SagaStatus::Compensating, SagaStatus::Completed,
                      SagaStatus::Compensated, SagaStatus::Failed}) {
    if (to_string(status) == text) return status;
  }
  return std::nullopt;
}

std::string_view to_string(StoreErrorCode code) noexcept {
  switch (code) {
    case StoreErrorCode::busy:
      return "busy";
    case StoreErrorCode::conflict:
      return "conflict";
    case StoreErrorCode::io_error:
      return "io_error";
    case StoreErrorCode::corrupt:
      return "corrupt";
    case StoreErrorCode::not_found:
      return "not_found";
  }
  return "unknown";
}

std::string_view to_string(JournalKind kind) noexcept {
  switch (kind) {
    case JournalKind::started:
      return "started";
    case JournalKind::message_in:
      return "message_in";
    case JournalKind::message_out:
      return "message_out";
    case JournalKind::transition:
      return "transition";
    case JournalKind::duplicate:
      return "duplicate";
    case JournalKind::unexpected:
      return "unexpected";
    case JournalKind::user_error:
      return "user_error";
    case JournalKind::status_changed:
      return "status_changed";
    case JournalKind::timed_out:
      return "timed_out";
  }
  return "unknown";
}

std::optional<JournalKind> journal_kind_from_string(std::string_view text) noexcept {
  for (auto kind : {JournalKind::started, JournalKind::message_in, JournalKind::message_out,
                    JournalKind::transition, JournalKind::duplicate, JournalKind::unexpected,
                    JournalKind::user_error, JournalKind::status_changed, JournalKind::timed_out}) {
    if (to_string(kind) == text) return kind;
  }
  return std::nullopt;
}

std::string_view to_string(SendResult result) noexcept {
  switch (result) {
    case SendResult::sent:
      return "sent";
    case SendResult::would_block:
      return "would_block";
    case SendResult::unroutable:
      return "unroutable";
  }
  return "unknown";
}

}  // namespace saga
