// Pictures of saga state machines, generated from the compile-time definition so they cannot
// drift from the code.
//
// A Graph is plain data: the states and transitions of one definition (name and version). Get
// it from a registered definition with `saga::make_saga_type<Def>()->graph()` (SagaType::graph;
// the walk over the Boost.MSM transition table is saga::detail::graph_of<Def>() in
// saga/detail/diagram_walk.hpp). Render it with to_dot() (Graphviz) or to_mermaid() (Mermaid
// stateDiagram-v2), optionally with one saga instance's Path drawn over it. A Graph converts to
// and from JSON, so tools that have no C++ definition (sagactl) can draw it from a database (the
// engine stores each registered definition's graph in the table saga_definitions). Where no
// definition graph is at hand, graph_from_journal() builds one of only what a saga went through.
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
//   A Path shows where a saga was parked, and what an operator did about it.
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
//   A guarded edge whose guard has a name also has "guard": "<name>" (e.g. "timed out"); it is
//   optional when read.
//   "kind" is one of initial, waiting, compensating, completed, compensated, failed. from_json
//   throws nlohmann::json::exception when a field is missing or has the wrong type, and
//   std::invalid_argument for an unknown format or kind, or an edge naming a state the graph
//   does not have.
//
// Rendering is deterministic: the same Graph and Path give the same text, byte for byte. A
// command with an empty destination is drawn without one ("send T").
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
  std::string guard;  // the guard's `name` (saga::if_timed_out: "timed out"); may be empty
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

enum class PathStepKind {
  transition,  // the state machine moved `from` -> `to`, caused by `event`
  parked,      // the saga was parked as Failed in `from` (== `to`); `event`: StepFailed
  retried,     // an operator retried the parked saga in `from` (== `to`); `event`: the command
               // sent again (may be empty)
  resolved,    // an operator closed the saga in `from` (== `to`); `event`: the status it was
               // given (Completed or Compensated)
};

// One step of a saga instance. For a transition, `event` may be empty (unknown): then every edge
// from `from` to `to` counts as taken. When no edge has the given event, the same fallback
// applies.
struct PathStep {
  std::string from;
  std::string to;
  std::string event;
  PathStepKind kind = PathStepKind::transition;
};

// The way one saga instance went, drawn over its definition's graph: taken edges bold and
// numbered in order, visited states filled, the current state marked. Transition steps that match
// no edge only mark their states; states the graph does not know are ignored. The other steps are
// numbered in the same sequence and drawn as loops on their state (parked red, operator actions
// purple), since they are not transitions of the definition; in DOT, one loop per state lists
// them all (an HTML-like label, one colour per step). When the last step is `parked` or
// `resolved` and its state is the current one, the current state is drawn as parked as Failed
// (red), or as resolved with its new status (that status's colour, purple border), instead of
// gold, and says so in its label.
struct Path {
  std::vector<PathStep> steps;
  std::string current;   // the state the saga is in; empty: the last step's `to`
  std::string instance;  // shown in the picture's title (the saga id), optional
};

// The path recorded in a saga's journal (entries in sequence order, as Store::journal returns
// them). Each transition is a step, in order: the one an input's entry (started, message_in,
// timed_out) records in its from_state and to_state, and each `transition` entry (journals
// written by earlier builds have one for every transition). The event of each is filled in where
// the journal tells it: the type of the message whose id caused it, "Begin" for the start, and
// "StepFailed" for any further transition caused by the same input or for a command whose retry
// policy ran out; otherwise left empty. A reaction whose status_changed entry sets Failed while
// the state stays is a `parked` step: the reaction ended in a transition from a state to itself
// (that transition becomes the parked step), or journaled more failures (user_error) than it took
// StepFailed transitions (StepFailed found no transition). The engine's "<status>: retried by an
// operator" and "<status>: resolved by an operator: <note>" status_changed entries are
// `retried` and `resolved` steps in the state the saga was in.
Path path_from_journal(const std::vector<JournalEntry>& journal);

// A graph of only what one saga went through, from its journal, for when the definition's graph
// is not at hand (a database from before saga_definitions, a definition no engine registered):
// the states of its transition steps in order of first appearance, and one edge per distinct
// (from, to, event) transition with the commands that reaction sent (message_out entries; their
// destinations are not in the journal and are left empty). A state's kind is the saga's status
// once it got there (a parked saga keeps the kind of the state it waits in); the first Begin
// step's source is `initial`. Pivot marks are unknown (false). Edge kinds follow the same rules
// as a definition's graph.
Graph graph_from_journal(const std::vector<JournalEntry>& journal, std::string_view saga,
                         int version);

// Graphviz DOT (`dot -Tsvg`). Node ids are the quoted state names.
std::string to_dot(const Graph& graph, const Path* overlay = nullptr);

// Mermaid stateDiagram-v2. Mermaid cannot style single transitions: the overlay numbers the
// taken ones in their labels and styles visited and current states with classes (`visited`,
// `current`, or `parked` / `resolved`); steps that are not transitions are self transitions.
std::string to_mermaid(const Graph& graph, const Path* overlay = nullptr);

void to_json(nlohmann::json& json, const Graph& graph);
void from_json(const nlohmann::json& json, Graph& graph);

}  // namespace saga
