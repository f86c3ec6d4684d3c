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

struct Path {
  std::vector<std::string> states;
  std::vector<Edge> edges;
  std::size_t current = 0;
  std::string current_label;
  std::string status_class;  // completed, compensated, failed, in_flight
};

bool is_compensation_state(const std::string& state) {
  return state.rfind("compensating:", 0) == 0 || state == "Compensated";
}

Path build_path(const SagaRow& saga, const std::vector<JournalRow>& journal) {
  Path path;
  std::map<std::string, std::size_t> index;
  const auto node = [&](const std::string& state) {
    auto [slot, inserted] = index.emplace(state, path.states.size());
    if (inserted) path.states.push_back(state);
    return slot->second;
  };
  std::map<std::string, std::string> causes;
  for (const auto& entry : journal) {
    if (entry.kind == "message_in") causes[entry.message_id] = entry.message_type;
    if (entry.kind == "timed_out") causes[entry.message_id] = "timeout of " + entry.message_type;
  }
  std::optional<std::size_t> reaction_edge;
  std::optional<std::size_t> at;
  int number = 0;
  for (const auto& entry : journal) {
    if (entry.kind == "started" || entry.kind == "message_in" || entry.kind == "timed_out") {
      reaction_edge.reset();
    } else if (entry.kind == "transition") {
      Edge edge;
      edge.from = node(entry.from_state);
      edge.to = node(entry.to_state);
      auto cause = causes.find(entry.message_id);
      edge.cause = entry.message_id.empty() ? "start"
                   : cause != causes.end()  ? cause->second
                                            : entry.message_id;
      edge.compensation =
          is_compensation_state(entry.from_state) || is_compensation_state(entry.to_state);
      edge.number = ++number;
      path.edges.push_back(std::move(edge));
      reaction_edge = path.edges.size() - 1;
      at = path.edges.back().to;
    } else if (entry.kind == "message_out" && reaction_edge) {
      Edge& edge = path.edges[*reaction_edge];
      edge.sends.push_back(entry.message_type);
      if (entry.detail.rfind("compensation ", 0) == 0) edge.compensation = true;
    } else if (entry.kind == "status_changed" &&
               entry.detail.find("by an operator") != std::string::npos) {
      std::size_t here = at ? *at : node(saga.state);
      Edge edge;
      edge.from = edge.to = here;
      std::string status = entry.detail.substr(0, entry.detail.find(':'));
      edge.cause = entry.detail.find("resolved") != std::string::npos
                       ? "operator resolved as " + status
                       : "operator retry";
      if (!entry.message_type.empty()) edge.sends.push_back(entry.message_type);
      edge.operator_action = true;
      edge.number = ++number;
      path.edges.push_back(std::move(edge));
      reaction_edge.reset();
    }
  }
  path.current = node(saga.state);
  path.current_label = saga.state == saga.status || saga.status.empty()
                           ? saga.state
                           : saga.state + "\n(" + saga.status + ")";
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
      << "  graph [rankdir=LR, labelloc=t, fontname=\"Helvetica\", label="
      << dot_quote(saga.type + " saga " + saga.id + ": " + saga.status) << "];\n"
      << "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
      << "  edge [fontname=\"Helvetica\", fontsize=10];\n"
      << "  start [shape=point, width=0.15];\n";
  for (std::size_t i = 0; i < path.states.size(); ++i) {
    out << "  s" << i << " [label=";
    if (i == path.current) {
      out << dot_label(path.current_label) << ", style=\"rounded,filled,bold\", fillcolor=\""
          << style.fill << "\", color=\"" << style.stroke << "\", penwidth=2";
    } else {
      out << dot_label(path.states[i]);
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
      << "flowchart LR\n"
      << "  start((\" \"))\n";
  for (std::size_t i = 0; i < path.states.size(); ++i)
    out << "  s" << i << "[\""
        << mermaid_text(i == path.current ? path.current_label : path.states[i]) << "\"]\n";
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
