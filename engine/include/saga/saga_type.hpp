// The runtime face of a saga definition: what the engine (and saga::testing) use to create,
// restore and drive saga instances without knowing their C++ types.
//
// make_saga_type<Definition>() turns a compile-time definition (saga/definition.hpp for linear
// sagas, saga/machine.hpp for hand-written transition tables) into a SagaType. Instantiating it
// compiles the Boost.MSM back-end, which is slow: do it in one translation unit per saga and
// declare it `extern template` in the saga's header (see sagas/order/order_saga.hpp).
//
// Thread safety: a SagaType is immutable after creation and safe to share. A SagaInstance is
// used by one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "saga/diagram.hpp"
#include "saga/status.hpp"

namespace saga {

enum class CommandRole { step, compensation };

// A command produced by a transition, not yet enveloped.
struct OutgoingCommand {
  std::string_view type;
  int version = 1;
  std::string_view destination;
  CommandRole role = CommandRole::step;
  nlohmann::json payload;
  // A compensation's step command type (saga::compensate<Cmd, Undoes>); empty when not named.
  std::string_view undoes;
};

// What one message did to one saga instance.
struct Reaction {
  enum class Outcome {
    applied,      // a transition was taken
    unexpected,   // the current state has no transition for this message; nothing changed
    undecodable,  // the payload does not convert to the message type; nothing changed
    unknown_type  // the saga does not know this message type; nothing changed
  };
  Outcome outcome = Outcome::applied;
  std::string reason;  // set unless applied
  // The states passed through, first the state before the message; one entry per transition
  // (a user-code failure adds a second transition).
  std::vector<std::string> path;
  std::vector<OutgoingCommand> commands;  // in the order they must be sent
  std::vector<std::string> user_errors;   // what() of each exception thrown by user code
  bool applied() const noexcept { return outcome == Outcome::applied; }
};

class SagaInstance {
 public:
  virtual ~SagaInstance() = default;

  // Starts the saga: the first transition, which normally sends the first command.
  virtual Reaction begin() = 0;
  // Applies one inbound message (already validated and upcast) to this saga.
  virtual Reaction handle(std::string_view message_type, const nlohmann::json& payload) = 0;
  // The step the saga waits on got no reply (its command's retry policy ran out): raises
  // StepFailed with timed_out set. With no transition for it (none at all, or every guard
  // refused), the saga is parked as Failed in place.
  virtual Reaction time_out(const std::string& reason) = 0;

  virtual std::string_view state() const = 0;
  // A saga parked as Failed in a state that still waits for something goes back to that state's
  // status (an operator retries it). False when it is not parked that way.
  virtual bool unpark() = 0;
  // An operator closes the saga with this status, whatever its state.
  virtual void resolve(SagaStatus status) = 0;
  virtual SagaStatus status() const = 0;
  virtual nlohmann::json data() const = 0;
};

// Result of SagaType::restore: an instance, or why it cannot be restored.
using RestoreResult = std::variant<std::unique_ptr<SagaInstance>, std::string>;

class SagaType {
 public:
  virtual ~SagaType() = default;
  virtual std::string_view name() const = 0;
  virtual int version() const = 0;

  // A fresh instance in its initial state. Throws when `data` does not convert to the data type.
  virtual std::unique_ptr<SagaInstance> create(const nlohmann::json& data) const = 0;

  // An instance in the named state with the given data and status. Fails (with a reason) when
  // the state name is unknown to this definition or the data does not convert.
  virtual RestoreResult restore(std::string_view state, SagaStatus status,
                                const nlohmann::json& data) const = 0;

  virtual std::vector<std::string_view> states() const = 0;
  // Wire types of the messages this saga consumes.
  virtual std::vector<std::string_view> message_types() const = 0;
  // The schema version of a message type this saga consumes; 0 when it does not consume it.
  virtual int message_version(std::string_view message_type) const = 0;
  // True for the commands of retriable steps: they are re-sent until answered, never given up.
  virtual bool is_retriable(std::string_view command_type) const = 0;
  // The definition's states and transitions, for pictures (saga/diagram.hpp).
  virtual Graph graph() const = 0;
};

template <class Definition>
std::unique_ptr<SagaType> make_saga_type();

}  // namespace saga
