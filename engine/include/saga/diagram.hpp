// Pictures of saga state machines, generated from the compile-time definition so they cannot
// drift from the code.
//
// A Graph is plain data: the states and transitions of one definition (name and version). Get
// it from a registered definition with `saga::make_saga_type<Def>()->graph()` (SagaType::graph;
// the walk over the Boost.MSM transition table is saga::detail::graph_of<Def>() in
// saga/detail/diagram_walk.hpp). Render it with to_dot() (Graphviz) or to_mermaid() (Mermaid
// stateDiagram-v2), optionally with one saga instance's Path drawn over it. A Graph converts to
// and from JSON, so tools that have no C++ definition (sagactl) can draw it from a database.
//
// What the graph holds:
// - States in the order of first appearance in the transition table, the initial state first.
//   Each has a kind: its status, or `initial`. Linear sagas (saga::definition) also mark the
//   state awaiting the pivot step (`pivot`) and the states of retriable steps (`after_pivot`);
//   hand-written tables leave both false.
// - Edges in transition-table order: from, to, the event (a message's wire type, or the internal
//   events "Begin" and "StepFailed"), the commands the transition sends in order, with their
//   destination services and whether each is a compensation. An edge is a `compensation` edge
//   when it sends a compensating command or leaves or enters a compensating state, or enters a
//   compensated one (the whole way back); a `failure` edge is raised by StepFailed (user code
//   threw, or a step's retry policy ran out). A row with a guard is marked `guarded`.
// - A linear saga has no Failed state: StepFailed where nothing can be undone parks the saga as
//   Failed in the state it waits in (see saga/definition.hpp); the graph has the table's rows only.
//
// JSON shape (to_json/from_json; "format" is 1):
//   {"format": 1, "saga": "order", "version": 1,
//    "states": [{"name": "awaiting:shipping.Ship", "kind": "waiting",
//                "pivot": true, "after_pivot": false}, ...],
//    "edges":  [{"from": "awaiting:payment.Charge", "to": "compensating:inventory.Release",
//                "event": "payment.Declined", "compensation": true, "failure": false,
//                "guarded": false,
//                "commands": [{"type": "inventory.Release", "destination": "inventory",
//                              "compensation": true}]}, ...]}
//   "kind" is one of initial, waiting, compensating, completed, compensated, failed. from_json
//   throws nlohmann::json::exception when a field is missing or has the wrong type, and
//   std::invalid_argument for an unknown format or kind, or an edge naming a state the graph
//   does not have.
//
// Rendering is deterministic: the same Graph and Path give the same text, byte for byte.
// Thread safety: plain values and pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace saga {

struct JournalEntry;

enum class StateKind { initial, waiting, compensating, completed, compensated, failed };

std::string_view to_string(StateKind kind) noexcept;

struct GraphState {
  std::string name;
  StateKind kind = StateKind::waiting;
  bool pivot = false;        // waits on the pivot step (linear sagas)
  bool after_pivot = false;  // waits on a retriable step, after the pivot (linear sagas)
  bool operator==(const GraphState&) const = default;
};

struct GraphCommand {
  std::string type;         // wire type
  std::string destination;  // service
  bool compensation = false;
  bool operator==(const GraphCommand&) const = default;
};

struct GraphEdge {
  std::string from;
  std::string to;
  std::string event;  // wire type, or "Begin" / "StepFailed"
  std::vector<GraphCommand> commands;
  bool compensation = false;
  bool failure = false;  // raised by StepFailed
  bool guarded = false;
  bool operator==(const GraphEdge&) const = default;
};

struct Graph {
  std::string saga;
  int version = 0;
  std::vector<GraphState> states;
  std::vector<GraphEdge> edges;

  const GraphState* find_state(std::string_view name) const;
  bool operator==(const Graph&) const = default;
};

inline constexpr std::string_view kBeginEvent = "Begin";
inline constexpr std::string_view kStepFailedEvent = "StepFailed";

// One transition a saga instance took. `event` may be empty (unknown): then every edge from
// `from` to `to` counts as taken. When no edge has the given event, the same fallback applies.
struct PathStep {
  std::string from;
  std::string to;
  std::string event;
};

// The way one saga instance went, drawn over its definition's graph: taken edges bold and
// numbered in order, visited states filled, the current state marked. Steps that match no edge
// (a saga parked in place records a step from a state to itself) only mark their states; states
// the graph does not know are ignored.
struct Path {
  std::vector<PathStep> steps;
  std::string current;   // the state the saga is in; empty: the last step's `to`
  std::string instance;  // shown in the picture's title (the saga id), optional
};

// The path recorded in a saga's journal (entries in sequence order, as Store::journal returns
// them): its `transition` entries in order. The event of each step is filled in where the
// journal tells it: the type of the message whose id caused it, "Begin" for the start, and
// "StepFailed" for any further transition caused by the same input; otherwise left empty.
Path path_from_journal(const std::vector<JournalEntry>& journal);

// Graphviz DOT (`dot -Tsvg`). Node ids are the quoted state names.
std::string to_dot(const Graph& graph, const Path* overlay = nullptr);

// Mermaid stateDiagram-v2. Mermaid cannot style single transitions: the overlay numbers the
// taken ones in their labels and styles visited and current states with classes.
std::string to_mermaid(const Graph& graph, const Path* overlay = nullptr);

void to_json(nlohmann::json& json, const Graph& graph);
void from_json(const nlohmann::json& json, Graph& graph);

}  // namespace saga
