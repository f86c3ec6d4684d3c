#include "saga/participant_ledger.hpp"

#include <exception>

namespace saga {

StoreResult<std::vector<ParticipantLedger::Outcome>> ParticipantLedger::process_batch(
    const std::vector<std::string>& command_ids,
    const std::function<std::string(std::size_t index, Unit&)>& work) {
  std::vector<Outcome> outcomes;
  outcomes.reserve(command_ids.size());
  for (std::size_t index = 0; index < command_ids.size(); ++index) {
    Outcome outcome;
    try {
      auto result = process_once(command_ids[index], [&](Unit& unit) { return work(index, unit); });
      if (!result) return result.error();
      outcome.kind = result.value().duplicate ? Outcome::Kind::duplicate : Outcome::Kind::handled;
      outcome.reply = std::move(result.value().reply);
    } catch (const StorageFailure& failure) {  // a ledger whose process_once lets it through
      return StoreError{failure.code(), failure.what()};
    } catch (const std::exception& error) {
      outcome.error = error.what();
    } catch (...) {
      outcome.error = "unknown exception";
    }
    outcomes.push_back(std::move(outcome));
  }
  return outcomes;
}

}  // namespace saga
