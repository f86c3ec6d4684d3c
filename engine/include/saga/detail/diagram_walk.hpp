// graph_of<Definition>(): the Graph of a saga definition (saga/diagram.hpp), read from its
// Boost.MSM front-end transition table with boost::mpl::for_each. It needs only the front-end
// (no back-end instantiation); everything that is not type-dependent is done by GraphBuilder in
// engine/src/diagram.cpp, to keep this template small. Used by make_saga_type<Def>() for
// SagaType::graph(); not part of the stable API.
#pragma once

#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/mpl/for_each.hpp>
#include <boost/msm/front/functor_row.hpp>

#include "saga/definition.hpp"
#include "saga/diagram.hpp"
#include "saga/machine.hpp"

namespace saga::detail {

// Passes a type through boost::mpl::for_each without constructing it (and, unlike saga::tag,
// without a nested `type` that MPL's lambda would unwrap).
template <class T>
struct boxed {};

// Collects states and edges in table order and derives the edge kinds.
class GraphBuilder {
 public:
  GraphBuilder(std::string_view saga, int version);
  void add_state(std::string_view name, SagaStatus status, bool initial,
                 std::optional<StepKind> step);
  void add_edge(std::string_view from, std::string_view to, std::string_view event, bool guarded,
                std::string_view guard, std::vector<GraphCommand> commands);
  Graph finish();

 private:
  Graph graph_;
};

template <class State>
struct awaited_command {
  using type = void;
};
template <class Command>
struct awaited_command<awaiting<Command>> {
  using type = Command;
};

template <class Action>
struct action_commands {
  static void append(std::vector<GraphCommand>&) {}
};
template <class Cmd>
struct action_commands<send<Cmd>> {
  static void append(std::vector<GraphCommand>& out) {
    out.push_back({std::string(Cmd::type), std::string(Cmd::service), false});
  }
};
template <class Cmd, class Undoes>
struct action_commands<compensate<Cmd, Undoes>> {
  static void append(std::vector<GraphCommand>& out) {
    out.push_back({std::string(Cmd::type), std::string(Cmd::service), true});
  }
};
template <class Sequence>
struct action_commands<boost::msm::front::ActionSequence_<Sequence>> {
  static void append(std::vector<GraphCommand>& out) {
    boost::mpl::for_each<Sequence, boxed<boost::mpl::placeholders::_1>>(
        [&out]<class Action>(boxed<Action>) { action_commands<Action>::append(out); });
  }
};

template <class Def, class State>
void add_graph_state(GraphBuilder& builder) {
  std::optional<StepKind> step;
  if constexpr (requires { Def::step_kind(std::string_view{}); }) {
    using Command = typename awaited_command<State>::type;
    if constexpr (!std::is_void_v<Command>) step = Def::step_kind(Command::type);
  }
  builder.add_state(State::name, State::status, std::is_same_v<State, typename Def::initial_state>,
                    step);
}

template <class Event>
constexpr std::string_view graph_event_name() {
  if constexpr (std::is_same_v<Event, Begin>)
    return kBeginEvent;
  else if constexpr (std::is_same_v<Event, StepFailed>)
    return kStepFailedEvent;
  else if constexpr (requires { std::string_view{Event::type}; })
    return Event::type;
  else
    return "(unnamed event)";
}

template <class Guard>
constexpr std::string_view guard_name() {
  if constexpr (requires { std::string_view{Guard::name}; })
    return Guard::name;
  else
    return {};
}

template <class Def>
Graph graph_of() {
  GraphBuilder builder(Def::name, Def::version);
  add_graph_state<Def, typename Def::initial_state>(builder);
  boost::mpl::for_each<typename Def::transition_table, boxed<boost::mpl::placeholders::_1>>(
      [&builder]<class Row>(boxed<Row>) {
        add_graph_state<Def, typename Row::Source>(builder);
        add_graph_state<Def, typename Row::Target>(builder);
        std::vector<GraphCommand> commands;
        action_commands<typename Row::Action>::append(commands);
        builder.add_edge(Row::Source::name, Row::Target::name,
                         graph_event_name<typename Row::Evt>(),
                         !std::is_same_v<typename Row::Guard, boost::msm::front::none>,
                         guard_name<typename Row::Guard>(), std::move(commands));
      });
  return builder.finish();
}

}  // namespace saga::detail
