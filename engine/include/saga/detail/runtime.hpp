// Implementation of make_saga_type<Definition>(): the Boost.MSM back-end behind SagaType.
// Included by saga/definition.hpp users' translation units that instantiate a saga; not part of
// the stable API.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/mpl/for_each.hpp>
#include <boost/mpl/size.hpp>
#include <boost/msm/back/metafunctions.hpp>
#include <boost/msm/back/state_machine.hpp>

#include "saga/detail/diagram_walk.hpp"
#include "saga/machine.hpp"
#include "saga/saga_type.hpp"

namespace saga::detail {

// Boost.MSM keeps the active state id private; its serialize() hook is the supported way to
// set it. This "archive" writes one id into the single region and ignores everything else.
struct active_state_writer {
  int state_id;
  template <class T>
  active_state_writer& operator&(T& value) {
    write(value);
    return *this;
  }
  void write(int (&active)[1]) { active[0] = state_id; }
  template <class T>
  void write(T&) {}
};

struct state_info {
  std::string_view name;
  SagaStatus status;
};

template <class Def>
class saga_type_impl;

template <class Def>
class saga_instance final : public SagaInstance {
 public:
  using backend = boost::msm::back::state_machine<Def>;
  using data_type = typename Def::data_type;

  saga_instance(const saga_type_impl<Def>& type, data_type data)
      : type_(type), data_(std::move(data)) {}

  void enter_initial_state() { machine_.start(); }
  void restore_state(int state_id, std::optional<SagaStatus> status_override) {
    active_state_writer writer{state_id};
    machine_.serialize(writer, 0);
    override_ = status_override;
  }

  Reaction begin() override { return drive(Begin{}); }

  Reaction time_out(const std::string& reason) override {
    Reaction reaction = drive(StepFailed{reason, true});
    if (reaction.outcome == Reaction::Outcome::unexpected && !is_terminal(status())) {
      override_ = SagaStatus::Failed;  // nothing in the table handles it: park for an operator
      reaction.outcome = Reaction::Outcome::applied;
      reaction.path.push_back(std::string(state()));
    }
    reaction.user_errors.insert(reaction.user_errors.begin(), reason);
    return reaction;
  }

  Reaction handle(std::string_view message_type, const nlohmann::json& payload) override {
    auto handler = type_.handler_for(message_type);
    if (handler == nullptr) {
      Reaction reaction;
      reaction.outcome = Reaction::Outcome::unknown_type;
      reaction.reason = "saga '" + std::string(Def::name) + "' does not consume message type '" +
                        std::string(message_type) + "'";
      return reaction;
    }
    return handler(*this, payload);
  }

  std::string_view state() const override { return type_.state_at(active_id()).name; }

  bool unpark() override {
    if (override_ != SagaStatus::Failed || type_.state_at(active_id()).status == SagaStatus::Failed)
      return false;
    override_.reset();
    return true;
  }
  void resolve(SagaStatus status) override { override_ = status; }
  SagaStatus status() const override {
    return override_ ? *override_ : type_.state_at(active_id()).status;
  }
  nlohmann::json data() const override { return nlohmann::json(data_); }

  template <class Event>
  static Reaction handle_typed(saga_instance& self, const nlohmann::json& payload) {
    std::optional<Event> event;
    std::optional<std::string> error = run_user_code([&] { event.emplace(payload.get<Event>()); });
    if (error) {
      Reaction reaction;
      reaction.outcome = Reaction::Outcome::undecodable;
      reaction.reason = "payload of '" + std::string(Event::type) +
                        "' does not match the message type: " + *error;
      return reaction;
    }
    return self.drive(*event);
  }

 private:
  int active_id() const { return machine_.current_state()[0]; }

  template <class Event>
  Reaction drive(const Event& event) {
    Reaction reaction;
    reaction.path.emplace_back(state());
    if (is_terminal(status())) {
      reaction.outcome = Reaction::Outcome::unexpected;
      reaction.reason = "saga is " + std::string(to_string(status())) + " in state '" +
                        std::string(state()) + "' and takes no more messages";
      return reaction;
    }
    if (auto from = take_refusal(machine_.process_event(event))) {
      machine_.take_recorded();
      reaction.outcome = Reaction::Outcome::unexpected;
      reaction.reason = "state '" + std::string(type_.state_at(*from).name) +
                        "' has no transition for " + event_name<Event>();
      return reaction;
    }
    reaction.path.emplace_back(state());

    // A reply handler that throws fails the step the saga moved on to; while the saga is
    // already undoing work, the error is journaled and the compensation goes ahead regardless.
    std::optional<std::string> failure = machine_.take_caught();
    if (!failure) {
      if constexpr (Message<Event>) {
        if (auto fold_error = run_user_code([&] { fold_reply(data_, event); })) {
          SagaStatus now = status();
          if (now == SagaStatus::Running || now == SagaStatus::Completed)
            failure = fold_error;
          else
            reaction.user_errors.push_back(*fold_error);
        }
      }
    }
    if (!failure) failure = run_user_code([&] { build_commands(reaction); });
    for (int attempt = 0; failure; ++attempt) {
      reaction.commands.clear();
      machine_.take_recorded();
      reaction.user_errors.push_back(*failure);
      if (attempt == kMaxFailureTransitions) {
        override_ = SagaStatus::Failed;
        break;
      }
      if (take_refusal(machine_.process_event(StepFailed{*failure}))) {
        override_ = SagaStatus::Failed;
        break;
      }
      reaction.path.emplace_back(state());
      failure = machine_.take_caught();
      if (!failure) failure = run_user_code([&] { build_commands(reaction); });
    }
    return reaction;
  }

  // The state that took no transition for the event just processed: none had a row for it, or
  // every row's guard refused it (Boost.MSM reports only the former through no_transition).
  std::optional<int> take_refusal(boost::msm::back::HandledEnum handled) {
    std::optional<int> from = machine_.take_no_transition();
    if (!from && handled == boost::msm::back::HANDLED_GUARD_REJECT) from = active_id();
    return from;
  }

  void build_commands(Reaction& reaction) {
    for (const auto& recorded : machine_.take_recorded()) {
      OutgoingCommand command = recorded.build(data_);
      command.role = recorded.role;
      command.undoes = recorded.undoes;
      reaction.commands.push_back(std::move(command));
    }
  }

  template <class Body>
  static std::optional<std::string> run_user_code(Body&& body) {
    try {
      body();
      return std::nullopt;
    } catch (const std::exception& error) {
      return std::string(error.what());
    } catch (...) {
      return std::string("unknown exception");
    }
  }

  template <class Event>
  static std::string event_name() {
    if constexpr (Message<Event>)
      return "'" + std::string(Event::type) + "'";
    else if constexpr (std::is_same_v<Event, StepFailed>)
      return "StepFailed";
    else
      return "the start event (Begin)";
  }

  static constexpr int kMaxFailureTransitions = 16;

  const saga_type_impl<Def>& type_;
  backend machine_;
  data_type data_;
  // Set when the status is not the current state's: parked as Failed in place, or resolved by
  // an operator.
  std::optional<SagaStatus> override_;
};

template <class Def>
class saga_type_impl final : public SagaType {
 public:
  using instance = saga_instance<Def>;
  using backend = typename instance::backend;
  using handler = Reaction (*)(instance&, const nlohmann::json&);

  saga_type_impl() {
    using stt = typename backend::stt;
    states_.resize(boost::mpl::size<typename backend::state_list>::value);
    boost::mpl::for_each<typename backend::state_list, boxed<boost::mpl::placeholders::_1>>(
        [this]<class S>(boxed<S>) {
          static_assert(
              requires { std::string_view{S::name}; },
              "every saga state needs `static constexpr std::string_view name`");
          static_assert(
              requires { SagaStatus{S::status}; },
              "every saga state derives from saga::state<Status>");
          states_[boost::msm::back::get_state_id<stt, S>::value] = {S::name, S::status};
        });
    for (std::size_t id = 0; id < states_.size(); ++id) {
      if (!by_name_.emplace(states_[id].name, static_cast<int>(id)).second)
        throw std::logic_error("saga '" + std::string(Def::name) + "' has two states named '" +
                               std::string(states_[id].name) + "'");
    }
    bool begins = false;
    boost::mpl::for_each<typename Def::transition_table, boxed<boost::mpl::placeholders::_1>>(
        [this, &begins]<class Row>(boxed<Row>) {
          using Event = typename Row::Evt;
          if constexpr (std::is_same_v<Event, Begin> &&
                        std::is_same_v<typename Row::Source, typename Def::initial_state>)
            begins = true;
          if constexpr (Message<Event>) {
            handlers_.emplace(std::string_view{Event::type},
                              &instance::template handle_typed<Event>);
            versions_.emplace(std::string_view{Event::type}, Event::version);
          }
        });
    if (!begins)
      throw std::logic_error("saga '" + std::string(Def::name) +
                             "' has no transition for saga::Begin from its initial state");
  }

  std::string_view name() const override { return Def::name; }
  int version() const override { return Def::version; }

  std::unique_ptr<SagaInstance> create(const nlohmann::json& data) const override {
    auto created = std::make_unique<instance>(*this, data.get<typename Def::data_type>());
    created->enter_initial_state();
    return created;
  }

  RestoreResult restore(std::string_view state, SagaStatus status,
                        const nlohmann::json& data) const override {
    auto found = by_name_.find(state);
    if (found == by_name_.end())
      return "state '" + std::string(state) + "' is not a state of saga '" +
             std::string(Def::name) + "' version " + std::to_string(Def::version);
    try {
      auto restored = std::make_unique<instance>(*this, data.get<typename Def::data_type>());
      std::optional<SagaStatus> status_override;
      if (states_[found->second].status != status) status_override = status;
      restored->restore_state(found->second, status_override);
      return std::unique_ptr<SagaInstance>(std::move(restored));
    } catch (const std::exception& error) {
      return "data of saga '" + std::string(Def::name) +
             "' does not convert to its data type: " + error.what();
    }
  }

  std::vector<std::string_view> states() const override {
    std::vector<std::string_view> names;
    for (const auto& info : states_) names.push_back(info.name);
    return names;
  }
  std::vector<std::string_view> message_types() const override {
    std::vector<std::string_view> types;
    for (const auto& [type, unused] : handlers_) types.push_back(type);
    return types;
  }

  bool is_retriable(std::string_view command_type) const override {
    if constexpr (requires { Def::retriable_commands(); }) {
      static const std::vector<std::string_view> retriable = Def::retriable_commands();
      for (std::string_view type : retriable)
        if (type == command_type) return true;
    }
    return false;
  }

  int message_version(std::string_view message_type) const override {
    auto found = versions_.find(message_type);
    return found == versions_.end() ? 0 : found->second;
  }

  Graph graph() const override { return graph_of<Def>(); }

  handler handler_for(std::string_view message_type) const {
    auto found = handlers_.find(message_type);
    return found == handlers_.end() ? nullptr : found->second;
  }
  const state_info& state_at(int id) const { return states_.at(static_cast<std::size_t>(id)); }

 private:
  std::vector<state_info> states_;
  std::unordered_map<std::string_view, int> by_name_;
  std::unordered_map<std::string_view, handler> handlers_;
  std::unordered_map<std::string_view, int> versions_;
};

}  // namespace saga::detail

template <class Definition>
std::unique_ptr<saga::SagaType> saga::make_saga_type() {
  return std::make_unique<detail::saga_type_impl<Definition>>();
}
