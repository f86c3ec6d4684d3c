#include "picture.hpp"

#include <map>
#include <optional>
#include <sstream>

#include "output.hpp"

namespace sagactl {
namespace {

struct Edge {
  std::size_t from = 0;
  std::size_t to = 0;
  std::string cause;
  std::vector<std::string> sends;
  bool compensation = false;
  bool operator_action = false;
  int number = 0;

  std::string label() const {
    std::string text = std::to_string(number) + ". " + cause;
    for (std::size_t i = 0; i < sends.size(); ++i) text += (i == 0 ? " / " : ", ") + sends[i];
    return text;
  }
};

struct Node {
  std::string label;
  bool parked = false;  // a pseudo-state: the saga was parked as Failed here
};

struct Path {
  std::vector<Node> nodes;
  std::vector<Edge> edges;
  std::size_t current = 0;
  std::string current_label;
  std::string status_class;  // completed, compensated, failed, in_flight
};

bool is_compensation_state(const std::string& state) {
  return state.rfind("compensating:", 0) == 0 || state == "Compensated";
}

// Walks the journal: transitions become edges between state nodes, the commands a reaction sent
// label its last edge, parking as Failed leads to a pseudo-node "Failed", and operator actions
// lead out of it (retry: back to the state; resolve: to a pseudo-node "resolved as ...").
Path build_path(const SagaRow& saga, const std::vector<JournalRow>& journal) {
  Path path;
  std::map<std::string, std::size_t> index;
  const auto node = [&](const std::string& state) {
    auto [slot, inserted] = index.emplace(state, path.nodes.size());
    if (inserted) path.nodes.push_back({state});
    return slot->second;
  };
  const auto pseudo_node = [&](std::string label, bool parked) {
    path.nodes.push_back({std::move(label), parked});
    return path.nodes.size() - 1;
  };
  std::map<std::string, std::string> causes;
  for (const auto& entry : journal) {
    if (entry.kind == "message_in") causes[entry.message_id] = entry.message_type;
    if (entry.kind == "timed_out") causes[entry.message_id] = "timeout of " + entry.message_type;
  }
  std::optional<std::size_t> reaction_edge;
  std::optional<std::size_t> at;
  std::string state = saga.state;
  int number = 0;
  const auto add_edge = [&](std::size_t from, std::size_t to, std::string cause) -> Edge& {
    Edge edge;
    edge.from = from;
    edge.to = to;
    edge.cause = std::move(cause);
    edge.number = ++number;
    path.edges.push_back(std::move(edge));
    at = to;
    return path.edges.back();
  };
  for (const auto& entry : journal) {
    if (entry.kind == "started" || entry.kind == "message_in" || entry.kind == "timed_out") {
      reaction_edge.reset();
    } else if (entry.kind == "transition") {
      auto cause = causes.find(entry.message_id);
      Edge& edge = add_edge(node(entry.from_state), node(entry.to_state),
                            entry.message_id.empty() ? "start"
                            : cause != causes.end()  ? cause->second
                                                     : entry.message_id);
      edge.compensation =
          is_compensation_state(entry.from_state) || is_compensation_state(entry.to_state);
      reaction_edge = path.edges.size() - 1;
      state = entry.to_state;
    } else if (entry.kind == "message_out" && reaction_edge) {
      Edge& edge = path.edges[*reaction_edge];
      edge.sends.push_back(entry.message_type);
      if (entry.detail.rfind("compensation ", 0) == 0) edge.compensation = true;
    } else if (entry.kind == "status_changed" && entry.detail.rfind("Failed", 0) == 0) {
      std::size_t parked = pseudo_node("Failed\nparked in " + state, true);
      if (reaction_edge) {
        path.edges[*reaction_edge].to = parked;
        at = parked;
      } else {
        add_edge(at ? *at : node(state), parked, "parked");
      }
      reaction_edge.reset();
    } else if (entry.kind == "status_changed" &&
               entry.detail.find("by an operator") != std::string::npos) {
      std::size_t from = at ? *at : node(state);
      std::string status = entry.detail.substr(0, entry.detail.find(':'));
      bool resolved = entry.detail.find("resolved") != std::string::npos;
      std::size_t to =
          resolved ? pseudo_node(status + "\nresolved by an operator", false) : node(state);
      Edge& edge = add_edge(from, to, resolved ? "operator resolve" : "operator retry");
      if (!entry.message_type.empty()) edge.sends.push_back(entry.message_type);
      edge.operator_action = true;
      reaction_edge.reset();
    }
  }
  bool ended_on_pseudo_node =
      at && (path.nodes[*at].parked || index.count(path.nodes[*at].label) == 0);
  path.current = ended_on_pseudo_node ? *at : node(saga.state);
  path.current_label = path.nodes[path.current].label;
  if (!ended_on_pseudo_node && saga.state != saga.status && !saga.status.empty())
    path.current_label += "\n(" + saga.status + ")";
  path.status_class = saga.status == "Completed"     ? "completed"
                      : saga.status == "Compensated" ? "compensated"
                      : saga.status == "Failed"      ? "failed"
                                                     : "in_flight";
  return path;
}

struct Style {
  const char* fill;
  const char* stroke;
};

Style style_of(const std::string& status_class) {
  if (status_class == "completed") return {"#c8e6c9", "#2e7d32"};
  if (status_class == "compensated") return {"#ffe0b2", "#ef6c00"};
  if (status_class == "failed") return {"#ffcdd2", "#c62828"};
  return {"#bbdefb", "#1565c0"};
}

constexpr const char* kCompensationColor = "#c62828";
constexpr const char* kOperatorColor = "#6a1b9a";

std::string dot_quote(const std::string& text) {
  std::string out = "\"";
  for (char c : printable(text)) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string dot_label(const std::string& text) {
  // The one intended line break (state and status) becomes DOT's \n.
  std::string out = "\"";
  for (std::size_t start = 0;;) {
    std::size_t end = text.find('\n', start);
    std::string piece = dot_quote(text.substr(start, end - start));
    out += piece.substr(1, piece.size() - 2);
    if (end == std::string::npos) break;
    out += "\\n";
    start = end + 1;
  }
  return out + "\"";
}

std::string mermaid_text(const std::string& text) {
  std::string out;
  for (char c : printable(text)) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '<') {
      out += "#lt;";
    } else if (c == '>') {
      out += "#gt;";
    } else if (c == '\n') {
      out += "<br/>";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string render_dot(const SagaRow& saga, const std::vector<JournalRow>& journal) {
  Path path = build_path(saga, journal);
  Style style = style_of(path.status_class);
  std::ostringstream out;
  out << "digraph saga {\n"
      << "  graph [rankdir=TB, labelloc=t, fontname=\"Helvetica\", label="
      << dot_quote(saga.type + " saga " + saga.id + ": " + saga.status) << "];\n"
      << "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
      << "  edge [fontname=\"Helvetica\", fontsize=10];\n"
      << "  start [shape=point, width=0.15];\n";
  for (std::size_t i = 0; i < path.nodes.size(); ++i) {
    out << "  s" << i << " [label=";
    if (i == path.current) {
      out << dot_label(path.current_label) << ", style=\"rounded,filled,bold\", fillcolor=\""
          << style.fill << "\", color=\"" << style.stroke << "\", penwidth=2";
    } else if (path.nodes[i].parked) {
      Style failed = style_of("failed");
      out << dot_label(path.nodes[i].label) << ", style=\"rounded,filled,dashed\", fillcolor=\""
          << failed.fill << "\", color=\"" << failed.stroke << "\"";
    } else {
      out << dot_label(path.nodes[i].label);
    }
    out << "];\n";
  }
  if (!path.edges.empty()) out << "  start -> s" << path.edges.front().from << ";\n";
  for (const auto& edge : path.edges) {
    out << "  s" << edge.from << " -> s" << edge.to << " [label=" << dot_quote(edge.label());
    if (edge.operator_action) {
      out << ", style=dotted, color=\"" << kOperatorColor << "\", fontcolor=\"" << kOperatorColor
          << "\"";
    } else if (edge.compensation) {
      out << ", style=dashed, color=\"" << kCompensationColor << "\", fontcolor=\""
          << kCompensationColor << "\"";
    }
    out << "];\n";
  }
  out << "}\n";
  return out.str();
}

std::string render_mermaid(const SagaRow& saga, const std::vector<JournalRow>& journal) {
  Path path = build_path(saga, journal);
  Style style = style_of(path.status_class);
  std::ostringstream out;
  out << "---\ntitle: \"" << mermaid_text(saga.type + " saga " + saga.id + ": " + saga.status)
      << "\"\n---\n"
      << "flowchart TD\n"
      << "  start((\" \"))\n";
  std::vector<std::size_t> parked;
  for (std::size_t i = 0; i < path.nodes.size(); ++i) {
    out << "  s" << i << "[\""
        << mermaid_text(i == path.current ? path.current_label : path.nodes[i].label) << "\"]\n";
    if (path.nodes[i].parked && i != path.current) parked.push_back(i);
  }
  std::size_t link = 0;
  std::vector<std::size_t> compensation_links, operator_links;
  if (!path.edges.empty()) {
    out << "  start --> s" << path.edges.front().from << "\n";
    ++link;
  }
  for (const auto& edge : path.edges) {
    bool dashed = edge.compensation || edge.operator_action;
    out << "  s" << edge.from << (dashed ? " -.->|\"" : " -->|\"") << mermaid_text(edge.label())
        << "\"| s" << edge.to << "\n";
    if (edge.operator_action) {
      operator_links.push_back(link);
    } else if (edge.compensation) {
      compensation_links.push_back(link);
    }
    ++link;
  }
  out << "  classDef " << path.status_class << " fill:" << style.fill << ",stroke:" << style.stroke
      << ",stroke-width:3px\n"
      << "  class s" << path.current << " " << path.status_class << "\n";
  if (!parked.empty()) {
    Style failed = style_of("failed");
    out << "  classDef parked fill:" << failed.fill << ",stroke:" << failed.stroke
        << ",stroke-dasharray:4\n  class ";
    for (std::size_t i = 0; i < parked.size(); ++i) out << (i ? "," : "") << "s" << parked[i];
    out << " parked\n";
  }
  const auto link_style = [&](const std::vector<std::size_t>& links, const char* color) {
    if (links.empty()) return;
    out << "  linkStyle ";
    for (std::size_t i = 0; i < links.size(); ++i) out << (i ? "," : "") << links[i];
    out << " stroke:" << color << ",color:" << color << "\n";
  };
  link_style(compensation_links, kCompensationColor);
  link_style(operator_links, kOperatorColor);
  return out.str();
}

}  // namespace sagactl
