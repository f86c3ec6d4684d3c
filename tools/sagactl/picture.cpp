#include "picture.hpp"

#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "output.hpp"
#include "saga/diagram.hpp"
#include "saga/store.hpp"

namespace sagactl {
namespace {

std::vector<saga::JournalEntry> journal_entries(const std::vector<JournalRow>& rows) {
  std::vector<saga::JournalEntry> entries;
  for (const auto& row : rows) {
    auto kind = saga::journal_kind_from_string(row.kind);
    if (!kind) continue;  // a kind this sagactl does not know says nothing about the path
    saga::JournalEntry entry;
    entry.sequence = row.sequence;
    entry.saga_id = row.saga_id;
    entry.kind = *kind;
    entry.message_id = row.message_id;
    entry.message_type = row.message_type;
    entry.from_state = row.from_state;
    entry.to_state = row.to_state;
    entry.detail = row.detail;
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::optional<std::string> stored_graph(Database& db, const SagaRow& saga) {
  if (!db.has_table("saga_definitions")) return std::nullopt;
  auto query = db.prepare("SELECT graph FROM saga_definitions WHERE type = ?1 AND version = ?2");
  query.bind(1, saga.type);
  query.bind(2, saga.definition_version);
  if (!query.step()) return std::nullopt;
  return query.text(0);
}

// The definition's graph, or why it cannot be used.
std::optional<saga::Graph> definition_graph(Database& db, const SagaRow& saga,
                                            const saga::Path& path, std::string& why) {
  std::string name = printable(saga.type) + " version " + std::to_string(saga.definition_version);
  std::optional<std::string> text = stored_graph(db, saga);
  if (!text) {
    why = db.has_table("saga_definitions")
              ? "no graph of " + name + " in saga_definitions (no engine registered it here)"
              : "the database has no saga_definitions table (schema older than 6)";
    return std::nullopt;
  }
  saga::Graph graph;
  try {
    nlohmann::json::parse(*text).get_to(graph);
  } catch (const std::exception& error) {
    why = "the stored graph of " + name + " cannot be read: " + printable(error.what());
    return std::nullopt;
  }
  std::vector<const std::string*> states{&path.current};
  for (const auto& step : path.steps) states.insert(states.end(), {&step.from, &step.to});
  for (const std::string* state : states)
    if (!state->empty() && !graph.find_state(*state)) {
      why = "the stored graph of " + name + " has no state '" + printable(*state) +
            "' this saga was in";
      return std::nullopt;
    }
  return graph;
}

void make_printable(saga::Graph& graph) {
  graph.saga = printable(graph.saga);
  for (auto& state : graph.states) state.name = printable(state.name);
  for (auto& edge : graph.edges) {
    edge.from = printable(edge.from);
    edge.to = printable(edge.to);
    edge.event = printable(edge.event);
    edge.guard = printable(edge.guard);
    for (auto& command : edge.commands) {
      command.type = printable(command.type);
      command.destination = printable(command.destination);
    }
  }
}

void make_printable(saga::Path& path) {
  path.current = printable(path.current);
  path.instance = printable(path.instance);
  for (auto& step : path.steps) {
    step.from = printable(step.from);
    step.to = printable(step.to);
    step.event = printable(step.event);
  }
}

}  // namespace

Drawing draw_saga(Database& db, const SagaRow& saga, const std::vector<JournalRow>& journal,
                  Picture picture) {
  std::vector<saga::JournalEntry> entries = journal_entries(journal);
  saga::Path path = saga::path_from_journal(entries);
  path.instance = saga.id;
  if (!saga.state.empty()) path.current = saga.state;
  Drawing drawing;
  std::optional<saga::Graph> graph = definition_graph(db, saga, path, drawing.note);
  if (!graph) {
    graph = saga::graph_from_journal(entries, saga.type, static_cast<int>(saga.definition_version));
    // The journal does not name the services; the outbox does.
    std::map<std::string, std::string> destinations;
    for (const auto& row : read_outbox(db, saga.id))
      destinations[row.message_type] = row.destination;
    for (auto& edge : graph->edges)
      for (auto& command : edge.commands)
        if (auto found = destinations.find(command.type); found != destinations.end())
          command.destination = found->second;
    drawing.note += "; drawing only what this saga went through";
  }
  make_printable(*graph);
  make_printable(path);
  drawing.text =
      picture == Picture::mermaid ? saga::to_mermaid(*graph, &path) : saga::to_dot(*graph, &path);
  return drawing;
}

}  // namespace sagactl
