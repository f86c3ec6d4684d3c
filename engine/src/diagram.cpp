#include "saga/diagram.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "saga/detail/diagram_walk.hpp"
#include "saga/store.hpp"

namespace saga {

namespace {

constexpr std::array kAllKinds = {StateKind::initial,      StateKind::waiting,
                                  StateKind::compensating, StateKind::completed,
                                  StateKind::compensated,  StateKind::failed};

StateKind kind_from_string(std::string_view text) {
  for (StateKind kind : kAllKinds)
    if (to_string(kind) == text) return kind;
  throw std::invalid_argument("saga graph: unknown state kind '" + std::string(text) + "'");
}

StateKind kind_of(SagaStatus status) {
  switch (status) {
    case SagaStatus::Running:
      return StateKind::waiting;
    case SagaStatus::Compensating:
      return StateKind::compensating;
    case SagaStatus::Completed:
      return StateKind::completed;
    case SagaStatus::Compensated:
      return StateKind::compensated;
    case SagaStatus::Failed:
      return StateKind::failed;
  }
  return StateKind::waiting;
}

bool is_end(StateKind kind) {
  return kind == StateKind::completed || kind == StateKind::compensated ||
         kind == StateKind::failed;
}

// How the current state is drawn when the saga's last step left it parked or resolved.
enum class Ending { none, parked, resolved };

// Which edges and states a Path touches.
struct Overlay {
  std::vector<std::vector<std::size_t>> edge_steps;  // per edge: 1-based step numbers
  std::vector<bool> visited;                         // per state
  std::vector<std::size_t> loops;  // 0-based indexes of steps drawn as loops, in order
  std::size_t current = static_cast<std::size_t>(-1);
  Ending ending = Ending::none;
  std::string resolved_as;  // Ending::resolved: the status
};

std::size_t state_index(const Graph& graph, std::string_view name) {
  for (std::size_t i = 0; i < graph.states.size(); ++i)
    if (graph.states[i].name == name) return i;
  return static_cast<std::size_t>(-1);
}

Overlay overlay_of(const Graph& graph, const Path& path) {
  Overlay overlay;
  overlay.edge_steps.resize(graph.edges.size());
  overlay.visited.resize(graph.states.size());
  auto visit = [&](std::string_view name) {
    std::size_t index = state_index(graph, name);
    if (index < overlay.visited.size()) overlay.visited[index] = true;
  };
  for (std::size_t step = 0; step < path.steps.size(); ++step) {
    const PathStep& taken = path.steps[step];
    visit(taken.from);
    visit(taken.to);
    if (taken.kind != PathStepKind::transition) {
      if (state_index(graph, taken.from) < graph.states.size()) overlay.loops.push_back(step);
      continue;
    }
    auto between = [&](const GraphEdge& edge) {
      return edge.from == taken.from && edge.to == taken.to;
    };
    bool exact = !taken.event.empty() &&
                 std::any_of(graph.edges.begin(), graph.edges.end(), [&](const GraphEdge& edge) {
                   return between(edge) && edge.event == taken.event;
                 });
    for (std::size_t e = 0; e < graph.edges.size(); ++e) {
      const GraphEdge& edge = graph.edges[e];
      if (between(edge) && (!exact || edge.event == taken.event))
        overlay.edge_steps[e].push_back(step + 1);
    }
  }
  std::string_view current = path.current;
  if (current.empty() && !path.steps.empty()) current = path.steps.back().to;
  overlay.current = state_index(graph, current);
  if (overlay.current < overlay.visited.size()) {
    overlay.visited[overlay.current] = true;
    const PathStep* last = path.steps.empty() ? nullptr : &path.steps.back();
    if (last && last->from == current) {
      if (last->kind == PathStepKind::parked) overlay.ending = Ending::parked;
      if (last->kind == PathStepKind::resolved) {
        overlay.ending = Ending::resolved;
        overlay.resolved_as = last->event;
      }
    }
  }
  return overlay;
}

// The annotation of the current state, or "".
std::string ending_text(const Overlay& overlay) {
  switch (overlay.ending) {
    case Ending::parked:
      return "(parked as Failed)";
    case Ending::resolved:
      return "(resolved as " + overlay.resolved_as + ")";
    case Ending::none:
      break;
  }
  return "";
}

// The lines of a step that is not a transition, after its number.
std::vector<std::string> loop_lines(const PathStep& step) {
  switch (step.kind) {
    case PathStepKind::parked:
      return {"parked as Failed"};
    case PathStepKind::retried:
      if (step.event.empty()) return {"operator retry"};
      return {"operator retry", "send " + step.event};
    case PathStepKind::resolved:
      return {"operator resolve as " + step.event};
    case PathStepKind::transition:
      break;
  }
  return {};
}

constexpr std::string_view kOperatorColor = "purple3";

std::string step_numbers(const std::vector<std::size_t>& steps) {
  if (steps.empty()) return "";
  std::string text = "(";
  for (std::size_t i = 0; i < steps.size(); ++i) text += (i ? ", " : "") + std::to_string(steps[i]);
  return text + ") ";
}

std::string title_of(const Graph& graph, const Path* path) {
  std::string title = "saga " + graph.saga + ", version " + std::to_string(graph.version);
  if (path && !path->instance.empty()) title += ", instance " + path->instance;
  return title;
}

std::string state_label(const GraphState& state, std::string_view separator) {
  std::string label = state.name;
  if (state.pivot) label += std::string(separator) + "(pivot)";
  if (state.after_pivot) label += std::string(separator) + "(after pivot)";
  return label;
}

// The event, then one line per command.
std::vector<std::string> edge_lines(const GraphEdge& edge) {
  std::string guard = edge.guard.empty() ? "guard" : edge.guard;
  std::vector<std::string> lines{edge.event + (edge.guarded ? " [" + guard + "]" : "")};
  for (const GraphCommand& command : edge.commands)
    lines.push_back((command.compensation ? "compensate " : "send ") + command.type +
                    (command.destination.empty() ? "" : " to " + command.destination));
  return lines;
}

std::string dot_quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

using Attributes = std::vector<std::pair<std::string, std::string>>;

std::string dot_attributes(const Attributes& attributes) {
  if (attributes.empty()) return "";
  std::string out = " [";
  for (std::size_t i = 0; i < attributes.size(); ++i)
    out += (i ? ", " : "") + attributes[i].first + "=" + dot_quoted(attributes[i].second);
  return out + "]";
}

Attributes dot_state_attributes(const GraphState& state, const Overlay* overlay,
                                std::size_t index) {
  Attributes attributes;
  std::string shape = state.kind == StateKind::initial ? "circle" : "box";
  std::vector<std::string> style;
  if (shape == "box") style.push_back("rounded");
  std::string fill, color;
  switch (state.kind) {
    case StateKind::initial:
      fill = "gray85";
      break;
    case StateKind::waiting:
      break;
    case StateKind::compensating:
      fill = "moccasin";
      color = "darkorange";
      break;
    case StateKind::completed:
      fill = "palegreen";
      break;
    case StateKind::compensated:
      fill = "khaki";
      break;
    case StateKind::failed:
      fill = "lightpink";
      color = "red3";
      break;
  }
  std::string penwidth = state.pivot ? "2" : "";
  std::string label = state.pivot || state.after_pivot ? state_label(state, "\n") : "";
  if (overlay && overlay->visited[index]) fill = "lightblue";
  if (overlay && overlay->current == index) {
    fill = "gold";
    penwidth = "3";
    if (overlay->ending == Ending::parked) {
      fill = "lightpink";
      color = "red3";
    } else if (overlay->ending == Ending::resolved) {
      fill = overlay->resolved_as == "Completed"     ? "palegreen"
             : overlay->resolved_as == "Compensated" ? "khaki"
                                                     : "gold";
      color = kOperatorColor;
    }
    if (overlay->ending != Ending::none)
      label = state_label(state, "\n") + "\n" + ending_text(*overlay);
  }
  if (!fill.empty()) style.push_back("filled");
  if (shape != "box") attributes.push_back({"shape", shape});
  if (!label.empty()) attributes.push_back({"label", label});
  if (style != std::vector<std::string>{"rounded"}) {
    std::string joined;
    for (const auto& token : style) joined += (joined.empty() ? "" : ",") + token;
    attributes.push_back({"style", joined});
  }
  if (!fill.empty()) attributes.push_back({"fillcolor", fill});
  if (!color.empty()) attributes.push_back({"color", color});
  if (!penwidth.empty()) attributes.push_back({"penwidth", penwidth});
  if (is_end(state.kind)) attributes.push_back({"peripheries", "2"});
  return attributes;
}

Attributes dot_edge_attributes(const GraphEdge& edge, const Overlay* overlay, std::size_t index) {
  std::string label;
  if (overlay) label = step_numbers(overlay->edge_steps[index]);
  auto lines = edge_lines(edge);
  for (std::size_t i = 0; i < lines.size(); ++i) label += (i ? "\n" : "") + lines[i];
  Attributes attributes{{"label", label}};
  std::string color = edge.failure ? "red3" : edge.compensation ? "darkorange" : "";
  if (edge.compensation)
    attributes.push_back({"style", "dashed"});
  else if (edge.failure)
    attributes.push_back({"style", "dotted"});
  if (overlay) {
    bool taken = !overlay->edge_steps[index].empty();
    color = taken ? "blue3" : "gray70";
    attributes.push_back({"color", color});
    attributes.push_back({"fontcolor", taken ? "blue3" : "gray50"});
    if (taken) attributes.push_back({"penwidth", "3"});
  } else if (!color.empty()) {
    attributes.push_back({"color", color});
    attributes.push_back({"fontcolor", color});
  }
  return attributes;
}

std::string html_text(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The steps that are not transitions, one loop per state (Graphviz draws several loops on one
// node over each other): each step its lines in its colour, the loop in the last step's colour.
std::string dot_loops(const Graph& graph, const Path& path, const Overlay& overlay) {
  std::map<std::size_t, std::vector<std::size_t>> by_state;  // in the graph's state order
  for (std::size_t step : overlay.loops)
    by_state[state_index(graph, path.steps[step].from)].push_back(step);
  std::string out;
  for (const auto& [state, steps] : by_state) {
    std::string label, color;
    for (std::size_t step : steps) {
      const PathStep& loop = path.steps[step];
      color = loop.kind == PathStepKind::parked ? "red3" : std::string(kOperatorColor);
      auto lines = loop_lines(loop);
      lines.front() = step_numbers({step + 1}) + lines.front();
      label += std::string(label.empty() ? "" : "<br/>") + "<font color=\"" + color + "\">";
      for (std::size_t i = 0; i < lines.size(); ++i)
        label += (i ? "<br/>" : "") + html_text(lines[i]);
      label += "</font>";
    }
    std::string name = dot_quoted(graph.states[state].name);
    out += "  " + name + " -> " + name + " [label=<" + label + ">, style=\"dashed\", color=\"" +
           color + "\", penwidth=\"3\"];\n";
  }
  return out;
}

std::string mermaid_text(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"')
      out += "#quot;";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string mermaid_id(std::size_t index) {
  return "s" + std::to_string(index);
}

// The journal read once: the path, and per step what graph_from_journal needs.
struct JournalWalk {
  Path path;
  std::vector<std::vector<GraphCommand>> commands;  // sent by the reaction that ended there
  std::vector<SagaStatus> status_after;             // the saga's status once at `to`
  std::vector<bool> settles;                        // the last transition of its reaction
};

constexpr std::string_view kRetriedByAnOperator = "retried by an operator";
constexpr std::string_view kResolvedByAnOperator = "resolved by an operator";

// One input's entries: its transitions, then its user errors, commands and status change.
struct ReactionReading {
  bool open = false;
  std::string cause;      // the message id of the input
  int failures = 0;       // user_error entries
  int step_failures = 0;  // transitions raised by StepFailed
};

JournalWalk walk_journal(const std::vector<JournalEntry>& journal) {
  std::map<std::string, std::string, std::less<>> message_types;
  std::set<std::string, std::less<>> timed_out;
  for (const JournalEntry& entry : journal) {
    if (entry.kind == JournalKind::message_in)
      message_types.emplace(entry.message_id, entry.message_type);
    if (entry.kind == JournalKind::timed_out) timed_out.insert(entry.message_id);
  }
  JournalWalk walk;
  std::vector<PathStep>& steps = walk.path.steps;
  auto add = [&](PathStep step, SagaStatus status) {
    steps.push_back(std::move(step));
    walk.commands.emplace_back();
    walk.status_after.push_back(status);
    walk.settles.push_back(true);
  };
  SagaStatus status = SagaStatus::Running;
  ReactionReading reaction;
  const JournalEntry* previous = nullptr;  // the entry before, when it is a transition
  for (const JournalEntry& entry : journal) {
    // An input's own entry (started, message_in, timed_out) records the first transition of its
    // reaction; journals written before it did have a transition entry for it instead.
    const bool input_with_transition =
        (entry.kind == JournalKind::started || entry.kind == JournalKind::message_in ||
         entry.kind == JournalKind::timed_out) &&
        !entry.to_state.empty();
    if (entry.kind == JournalKind::transition || input_with_transition) {
      PathStep step{entry.from_state, entry.to_state, ""};
      bool continues =
          !input_with_transition && previous && previous->message_id == entry.message_id;
      if (continues)
        step.event = kStepFailedEvent;  // the same input failed again in the state just reached
      else if (auto found = message_types.find(entry.message_id); found != message_types.end())
        step.event = found->second;
      else if (entry.message_id.empty())
        step.event = kBeginEvent;
      else if (timed_out.contains(entry.message_id))
        step.event = kStepFailedEvent;
      if (continues)
        walk.settles.back() = false;
      else
        reaction = {true, entry.message_id, 0, 0};
      if (step.event == kStepFailedEvent) ++reaction.step_failures;
      add(std::move(step), status);
      previous = &entry;
      continue;
    }
    previous = nullptr;
    bool in_reaction = reaction.open;  // then its transitions are the last steps
    switch (entry.kind) {
      case JournalKind::user_error:
        if (in_reaction && entry.message_id == reaction.cause) ++reaction.failures;
        break;
      case JournalKind::message_out:
        if (in_reaction)
          walk.commands.back().push_back(
              {entry.message_type, "", entry.detail.starts_with("compensation ")});
        break;
      case JournalKind::status_changed: {
        std::string_view detail = entry.detail;
        std::optional<SagaStatus> changed =
            saga_status_from_string(detail.substr(0, detail.find(':')));
        std::string here = steps.empty() ? "" : steps.back().to;
        if (detail.find(kRetriedByAnOperator) != std::string_view::npos) {
          add({here, here, entry.message_type, PathStepKind::retried}, changed.value_or(status));
          reaction.open = false;
        } else if (detail.find(kResolvedByAnOperator) != std::string_view::npos) {
          add({here, here, std::string(detail.substr(0, detail.find(':'))), PathStepKind::resolved},
              changed.value_or(status));
          reaction.open = false;
        } else if (in_reaction && entry.message_id == reaction.cause && changed) {
          PathStep& last = steps.back();
          bool in_place = last.kind == PathStepKind::transition && last.from == last.to;
          if (*changed == SagaStatus::Failed &&
              (in_place || reaction.failures > reaction.step_failures)) {
            if (in_place) {
              last.kind = PathStepKind::parked;
              last.event = kStepFailedEvent;
            } else {
              add({here, here, std::string(kStepFailedEvent), PathStepKind::parked}, status);
            }
          } else {
            walk.status_after.back() = *changed;
          }
          reaction.open = false;
        }
        if (changed) status = *changed;
        break;
      }
      default:
        reaction.open = false;
        break;
    }
  }
  return walk;
}

}  // namespace

std::string_view to_string(StateKind kind) noexcept {
  switch (kind) {
    case StateKind::initial:
      return "initial";
    case StateKind::waiting:
      return "waiting";
    case StateKind::compensating:
      return "compensating";
    case StateKind::completed:
      return "completed";
    case StateKind::compensated:
      return "compensated";
    case StateKind::failed:
      return "failed";
  }
  return "unknown";
}

const GraphState* Graph::find_state(std::string_view name) const {
  for (const GraphState& state : states)
    if (state.name == name) return &state;
  return nullptr;
}

namespace detail {

GraphBuilder::GraphBuilder(std::string_view saga, int version) {
  graph_.saga = std::string(saga);
  graph_.version = version;
}

void GraphBuilder::add_state(std::string_view name, SagaStatus status, bool initial,
                             std::optional<StepKind> step) {
  if (graph_.find_state(name)) return;
  GraphState state;
  state.name = std::string(name);
  state.kind = initial ? StateKind::initial : kind_of(status);
  state.pivot = step == StepKind::pivot;
  state.after_pivot = step == StepKind::retriable;
  graph_.states.push_back(std::move(state));
}

void GraphBuilder::add_edge(std::string_view from, std::string_view to, std::string_view event,
                            bool guarded, std::string_view guard,
                            std::vector<GraphCommand> commands) {
  GraphEdge edge;
  edge.from = std::string(from);
  edge.to = std::string(to);
  edge.event = std::string(event);
  edge.commands = std::move(commands);
  edge.failure = event == kStepFailedEvent;
  edge.guarded = guarded;
  edge.guard = std::string(guard);
  graph_.edges.push_back(std::move(edge));
}

Graph GraphBuilder::finish() {
  for (GraphEdge& edge : graph_.edges) {
    const GraphState* from = graph_.find_state(edge.from);
    const GraphState* to = graph_.find_state(edge.to);
    edge.compensation =
        std::any_of(edge.commands.begin(), edge.commands.end(),
                    [](const GraphCommand& command) { return command.compensation; }) ||
        (from && from->kind == StateKind::compensating) ||
        (to && (to->kind == StateKind::compensating || to->kind == StateKind::compensated));
  }
  return std::move(graph_);
}

}  // namespace detail

Path path_from_journal(const std::vector<JournalEntry>& journal) {
  return walk_journal(journal).path;
}

Graph graph_from_journal(const std::vector<JournalEntry>& journal, std::string_view saga,
                         int version) {
  JournalWalk walk = walk_journal(journal);
  const std::vector<PathStep>& steps = walk.path.steps;
  // A state's status: the one the saga had once a reaction ended there, else on the way through.
  struct Seen {
    std::optional<SagaStatus> status;
    bool settled = false;
  };
  std::vector<std::string> order;
  std::map<std::string, Seen, std::less<>> seen;
  std::string initial;
  auto note = [&](const std::string& name) -> Seen& {
    auto [slot, inserted] = seen.try_emplace(name);
    if (inserted) order.push_back(name);
    return slot->second;
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const PathStep& step = steps[i];
    if (step.kind != PathStepKind::transition) continue;
    if (initial.empty() && step.event == kBeginEvent) initial = step.from;
    note(step.from);
    Seen& to = note(step.to);
    if (!to.status || walk.settles[i] || !to.settled)
      to = {walk.status_after[i], walk.settles[i] || to.settled};
  }
  detail::GraphBuilder builder(saga, version);
  for (const auto& name : order)
    builder.add_state(name, seen[name].status.value_or(SagaStatus::Running), name == initial,
                      std::nullopt);
  std::set<std::tuple<std::string, std::string, std::string>> edges;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const PathStep& step = steps[i];
    if (step.kind == PathStepKind::transition &&
        edges.emplace(step.from, step.to, step.event).second)
      builder.add_edge(step.from, step.to, step.event, false, {}, walk.commands[i]);
  }
  return builder.finish();
}

std::string to_dot(const Graph& graph, const Path* path) {
  std::optional<Overlay> overlay;
  if (path) overlay = overlay_of(graph, *path);
  const Overlay* drawn = overlay ? &*overlay : nullptr;

  std::string out = "digraph " + dot_quoted(graph.saga) + " {\n";
  out += "  graph [label=" + dot_quoted(title_of(graph, path)) +
         ", labelloc=\"t\", fontname=\"Helvetica\", rankdir=\"TB\"];\n";
  out += "  node [shape=\"box\", style=\"rounded\", fontname=\"Helvetica\", fontsize=\"11\"];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=\"9\"];\n";
  for (std::size_t i = 0; i < graph.states.size(); ++i)
    out += "  " + dot_quoted(graph.states[i].name) +
           dot_attributes(dot_state_attributes(graph.states[i], drawn, i)) + ";\n";
  for (std::size_t i = 0; i < graph.edges.size(); ++i) {
    const GraphEdge& edge = graph.edges[i];
    out += "  " + dot_quoted(edge.from) + " -> " + dot_quoted(edge.to) +
           dot_attributes(dot_edge_attributes(edge, drawn, i)) + ";\n";
  }
  if (drawn) out += dot_loops(graph, *path, *drawn);
  return out + "}\n";
}

std::string to_mermaid(const Graph& graph, const Path* path) {
  std::optional<Overlay> overlay;
  if (path) overlay = overlay_of(graph, *path);

  std::string out = "---\ntitle: \"" + mermaid_text(title_of(graph, path)) + "\"\n---\n";
  out += "stateDiagram-v2\n";
  for (std::size_t i = 0; i < graph.states.size(); ++i) {
    std::string label = state_label(graph.states[i], " ");
    if (overlay && overlay->current == i && overlay->ending != Ending::none)
      label += " " + ending_text(*overlay);
    out += "  state \"" + mermaid_text(label) + "\" as " + mermaid_id(i) + "\n";
  }
  for (std::size_t i = 0; i < graph.states.size(); ++i)
    if (graph.states[i].kind == StateKind::initial) out += "  [*] --> " + mermaid_id(i) + "\n";
  for (std::size_t e = 0; e < graph.edges.size(); ++e) {
    const GraphEdge& edge = graph.edges[e];
    std::size_t from = state_index(graph, edge.from), to = state_index(graph, edge.to);
    if (from >= graph.states.size() || to >= graph.states.size()) continue;
    std::string label = overlay ? step_numbers(overlay->edge_steps[e]) : "";
    auto lines = edge_lines(edge);
    for (std::size_t i = 0; i < lines.size(); ++i)
      label += (i == 0 ? "" : i == 1 ? " / " : ", ") + lines[i];
    out += "  " + mermaid_id(from) + " --> " + mermaid_id(to) + " : " + mermaid_text(label) + "\n";
  }
  if (overlay)
    for (std::size_t step : overlay->loops) {
      const PathStep& loop = path->steps[step];
      std::string label = step_numbers({step + 1});
      auto lines = loop_lines(loop);
      for (std::size_t i = 0; i < lines.size(); ++i) label += (i ? " / " : "") + lines[i];
      std::string id = mermaid_id(state_index(graph, loop.from));
      out += "  " + id + " --> " + id + " : " + mermaid_text(label) + "\n";
    }
  for (std::size_t i = 0; i < graph.states.size(); ++i)
    if (is_end(graph.states[i].kind)) out += "  " + mermaid_id(i) + " --> [*]\n";

  // One class per state: the overlay's, else its kind's, else the pivot's.
  std::string resolved_style =
      std::string(!overlay || overlay->resolved_as == "Completed" ? "fill:#98fb98"
                  : overlay->resolved_as == "Compensated"         ? "fill:#f0e68c"
                                                                  : "fill:#ffd700") +
      ",stroke:#7d26cd,stroke-width:3px";
  const std::array<std::pair<std::string_view, std::string_view>, 9> styles = {{
      {"compensating", "fill:#ffe4b5,stroke:#ff8c00"},
      {"completed", "fill:#98fb98"},
      {"compensated", "fill:#f0e68c"},
      {"failed", "fill:#ffb6c1,stroke:#cd0000"},
      {"pivot", "stroke-width:3px"},
      {"visited", "fill:#add8e6"},
      {"current", "fill:#ffd700,stroke-width:3px"},
      {"parked", "fill:#ffb6c1,stroke:#cd0000,stroke-width:3px"},
      {"resolved", resolved_style},
  }};
  std::map<std::string_view, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < graph.states.size(); ++i) {
    const GraphState& state = graph.states[i];
    std::string_view cls;
    if (overlay && overlay->current == i)
      cls = overlay->ending == Ending::parked     ? "parked"
            : overlay->ending == Ending::resolved ? "resolved"
                                                  : "current";
    else if (overlay && overlay->visited[i])
      cls = "visited";
    else if (state.kind != StateKind::initial && state.kind != StateKind::waiting)
      cls = to_string(state.kind);
    else if (state.pivot)
      cls = "pivot";
    if (!cls.empty()) members[cls].push_back(i);
  }
  for (const auto& [name, style] : styles) {
    auto found = members.find(name);
    if (found == members.end()) continue;
    out += "  classDef " + std::string(name) + " " + std::string(style) + "\n";
    std::string ids;
    for (std::size_t i : found->second) ids += (ids.empty() ? "" : ",") + mermaid_id(i);
    out += "  class " + ids + " " + std::string(name) + "\n";
  }
  return out;
}

void to_json(nlohmann::json& json, const Graph& graph) {
  nlohmann::json states = nlohmann::json::array();
  for (const GraphState& state : graph.states)
    states.push_back({{"name", state.name},
                      {"kind", to_string(state.kind)},
                      {"pivot", state.pivot},
                      {"after_pivot", state.after_pivot}});
  nlohmann::json edges = nlohmann::json::array();
  for (const GraphEdge& edge : graph.edges) {
    nlohmann::json commands = nlohmann::json::array();
    for (const GraphCommand& command : edge.commands)
      commands.push_back({{"type", command.type},
                          {"destination", command.destination},
                          {"compensation", command.compensation}});
    edges.push_back({{"from", edge.from},
                     {"to", edge.to},
                     {"event", edge.event},
                     {"compensation", edge.compensation},
                     {"failure", edge.failure},
                     {"guarded", edge.guarded},
                     {"commands", std::move(commands)}});
    if (!edge.guard.empty()) edges.back()["guard"] = edge.guard;
  }
  json = {{"format", 1},
          {"saga", graph.saga},
          {"version", graph.version},
          {"states", std::move(states)},
          {"edges", std::move(edges)}};
}

void from_json(const nlohmann::json& json, Graph& graph) {
  int format = json.at("format").get<int>();
  if (format != 1)
    throw std::invalid_argument("saga graph: unknown format " + std::to_string(format));
  Graph read;
  json.at("saga").get_to(read.saga);
  json.at("version").get_to(read.version);
  for (const auto& item : json.at("states")) {
    GraphState state;
    item.at("name").get_to(state.name);
    state.kind = kind_from_string(item.at("kind").get<std::string>());
    item.at("pivot").get_to(state.pivot);
    item.at("after_pivot").get_to(state.after_pivot);
    read.states.push_back(std::move(state));
  }
  for (const auto& item : json.at("edges")) {
    GraphEdge edge;
    item.at("from").get_to(edge.from);
    item.at("to").get_to(edge.to);
    item.at("event").get_to(edge.event);
    item.at("compensation").get_to(edge.compensation);
    item.at("failure").get_to(edge.failure);
    item.at("guarded").get_to(edge.guarded);
    if (auto guard = item.find("guard"); guard != item.end()) guard->get_to(edge.guard);
    for (const auto& entry : item.at("commands")) {
      GraphCommand command;
      entry.at("type").get_to(command.type);
      entry.at("destination").get_to(command.destination);
      entry.at("compensation").get_to(command.compensation);
      edge.commands.push_back(std::move(command));
    }
    if (!read.find_state(edge.from) || !read.find_state(edge.to))
      throw std::invalid_argument("saga graph: edge " + edge.from + " -> " + edge.to +
                                  " names a state that is not in the graph");
    read.edges.push_back(std::move(edge));
  }
  graph = std::move(read);
}

}  // namespace saga
