// Saga tests that read like a specification, with no transport and no store:
//
//   saga::testing::given<order::OrderSaga>(order)
//       .expect_command<inventory::Reserve>().to("inventory")
//       .when_reply(inventory::Reserved{"r-1"})
//       .expect_command<payment::Charge>().to("payment")
//       .when_reply(payment::Declined{"card expired"})
//       .expect_compensation<inventory::Release>().to("inventory")
//       .when_reply(inventory::Released{"r-1"})
//       .expect_rolled_back();
//
// when_timed_out() stands for a command whose retry policy ran out with no reply.
//
// Each step drives the same SagaType code the engine runs (make_saga_type<Definition>), so what
// passes here behaves the same in production. Failures are reported with GoogleTest at the line
// of the failing expectation. Every command a step produces must be expected before the next
// reply is given.
//
// Link with saga::testing (GoogleTest). Not thread-safe; one scenario per test.
#pragma once

#include <deque>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "saga/message.hpp"
#include "saga/saga_type.hpp"

namespace saga::testing {

template <class Definition>
class Scenario {
 public:
  using data_type = typename Definition::data_type;

  explicit Scenario(const data_type& data)
      : type_(make_saga_type<Definition>()), instance_(type_->create(nlohmann::json(data))) {
    absorb(instance_->begin(), std::source_location::current());
  }

  // The next unchecked command is a step command of type Cmd.
  template <class Cmd>
  Scenario& expect_command(std::source_location at = std::source_location::current()) {
    return expect<Cmd>(CommandRole::step, at);
  }
  // The next unchecked command is a compensation of type Cmd.
  template <class Cmd>
  Scenario& expect_compensation(std::source_location at = std::source_location::current()) {
    return expect<Cmd>(CommandRole::compensation, at);
  }
  // The command just expected goes to `service`.
  Scenario& to(std::string_view service,
               std::source_location at = std::source_location::current()) {
    if (!last_)
      fail(at, "to(\"" + std::string(service) + "\") without a preceding expectation");
    else if (last_->destination != service)
      fail(at, "expected command '" + std::string(last_->type) + "' to go to '" +
                   std::string(service) + "', it goes to '" + std::string(last_->destination) +
                   "'");
    return *this;
  }
  // The payload of the command just expected satisfies `check` (use EXPECT_* inside).
  template <class Cmd, class Check>
  Scenario& with(Check&& check, std::source_location at = std::source_location::current()) {
    if (!last_ || last_->type != Cmd::type) {
      fail(at, "with<" + std::string(Cmd::type) + ">() does not follow that command");
      return *this;
    }
    check(last_->payload.template get<Cmd>());
    return *this;
  }

  // Delivers a reply; it must be accepted by the current state.
  template <class Reply>
  Scenario& when_reply(const Reply& reply,
                       std::source_location at = std::source_location::current()) {
    static_assert(Message<Reply>, "when_reply: the reply needs static `type` and `version`");
    if (!pending_.empty())
      fail(at, "reply '" + std::string(Reply::type) + "' given while command '" +
                   std::string(pending_.front().type) + "' was never expected");
    pending_.clear();
    Reaction reaction = instance_->handle(Reply::type, nlohmann::json(reply));
    if (!reaction.applied()) fail(at, "reply rejected: " + reaction.reason);
    absorb(std::move(reaction), at);
    return *this;
  }
  // The command the saga waits on got no reply after every retry: what the engine does when the
  // command's retry policy runs out (SagaInstance::time_out). Linear sagas compensate a
  // compensatable step itself, then the steps before it, and park a timed-out pivot.
  Scenario& when_timed_out(std::source_location at = std::source_location::current()) {
    if (!pending_.empty())
      fail(at, "timeout given while command '" + std::string(pending_.front().type) +
                   "' was never expected");
    pending_.clear();
    Reaction reaction = instance_->time_out("no reply after every retry (saga::testing)");
    if (!reaction.applied()) fail(at, "timeout rejected: " + reaction.reason);
    absorb(std::move(reaction), at);
    return *this;
  }
  // The compensation just expected names Step as the step command it undoes (its envelope's
  // `compensates` will carry that command's eventId).
  template <class Step>
  Scenario& undoing(std::source_location at = std::source_location::current()) {
    if (!last_ || last_->role != CommandRole::compensation)
      fail(at, "undoing<" + std::string(Step::type) + ">() does not follow a compensation");
    else if (last_->undoes != Step::type)
      fail(at, "expected '" + std::string(last_->type) + "' to undo '" + std::string(Step::type) +
                   "', it undoes '" + std::string(last_->undoes) + "'");
    return *this;
  }
  // Delivers a reply the current state must reject, leaving the saga unchanged.
  template <class Reply>
  Scenario& when_unexpected_reply(const Reply& reply,
                                  std::source_location at = std::source_location::current()) {
    std::string before(instance_->state());
    Reaction reaction = instance_->handle(Reply::type, nlohmann::json(reply));
    if (reaction.applied())
      fail(at, "reply '" + std::string(Reply::type) + "' was accepted in state '" + before + "'");
    if (instance_->state() != before) fail(at, "a rejected reply changed the state");
    return *this;
  }

  Scenario& expect_no_command(std::source_location at = std::source_location::current()) {
    if (!pending_.empty())
      fail(at, "expected no command, got '" + std::string(pending_.front().type) + "'");
    return *this;
  }
  Scenario& expect_state(std::string_view state,
                         std::source_location at = std::source_location::current()) {
    if (instance_->state() != state)
      fail(at, "expected state '" + std::string(state) + "', saga is in '" +
                   std::string(instance_->state()) + "'");
    return *this;
  }
  Scenario& expect_status(SagaStatus status,
                          std::source_location at = std::source_location::current()) {
    if (instance_->status() != status)
      fail(at, "expected status " + std::string(to_string(status)) + ", saga is " +
                   std::string(to_string(instance_->status())));
    return *this;
  }
  Scenario& expect_completed(std::source_location at = std::source_location::current()) {
    return expect_no_command(at).expect_status(SagaStatus::Completed, at);
  }
  Scenario& expect_rolled_back(std::source_location at = std::source_location::current()) {
    return expect_no_command(at).expect_status(SagaStatus::Compensated, at);
  }
  Scenario& expect_failed(std::source_location at = std::source_location::current()) {
    return expect_no_command(at).expect_status(SagaStatus::Failed, at);
  }
  // A user-code exception was turned into a step failure with this text (substring).
  Scenario& expect_user_error(std::string_view text,
                              std::source_location at = std::source_location::current()) {
    if (last_errors_.empty() || last_errors_.back().find(text) == std::string::npos)
      fail(at, "expected a user-code error containing '" + std::string(text) + "'");
    return *this;
  }

  data_type data() const { return instance_->data().template get<data_type>(); }
  const SagaInstance& instance() const { return *instance_; }

 private:
  template <class Cmd>
  Scenario& expect(CommandRole role, std::source_location at) {
    const char* kind = role == CommandRole::step ? "command" : "compensation";
    last_.reset();
    if (pending_.empty()) {
      fail(at, std::string("expected ") + kind + " '" + std::string(Cmd::type) +
                   "', none was sent (state '" + std::string(instance_->state()) + "')");
      return *this;
    }
    OutgoingCommand next = std::move(pending_.front());
    pending_.pop_front();
    if (next.type != Cmd::type || next.role != role)
      fail(at, std::string("expected ") + kind + " '" + std::string(Cmd::type) + "', got " +
                   (next.role == CommandRole::step ? "command '" : "compensation '") +
                   std::string(next.type) + "'");
    last_ = std::move(next);
    return *this;
  }

  void absorb(Reaction reaction, std::source_location) {
    last_errors_ = reaction.user_errors;
    for (auto& command : reaction.commands) pending_.push_back(std::move(command));
  }

  static void fail(std::source_location at, const std::string& message) {
    ADD_FAILURE_AT(at.file_name(), static_cast<int>(at.line())) << message;
  }

  std::unique_ptr<SagaType> type_;
  std::unique_ptr<SagaInstance> instance_;
  std::deque<OutgoingCommand> pending_;
  std::optional<OutgoingCommand> last_;
  std::vector<std::string> last_errors_;
};

template <class Definition>
Scenario<Definition> given(const typename Definition::data_type& data) {
  return Scenario<Definition>(data);
}

}  // namespace saga::testing
