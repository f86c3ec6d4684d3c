// Prints the order saga's state machine, generated from its compile-time definition: Graphviz
// DOT (default), Mermaid stateDiagram-v2, or the graph as JSON. docs/order_saga.dot is this
// program's output (see docs/diagrams.md). With --path, one way through the machine is drawn
// over it. Exits 0; 2 for a path the saga cannot take; CLI11's codes for bad flags.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "order/order_saga.hpp"
#include "saga/diagram.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Prints the order saga's state machine as Graphviz DOT, Mermaid or JSON."};
  std::string format = "dot";
  std::vector<std::string> states, events;
  app.add_option("--format", format, "Output format")
      ->check(CLI::IsMember({"dot", "mermaid", "json"}))
      ->capture_default_str();
  app.add_option("--path", states, "States of one saga's way through the machine, in order");
  app.add_option("--events", events,
                 "The event of each step of --path (one fewer than the states); without it "
                 "every edge between two consecutive states is drawn as taken");
  CLI11_PARSE(app, argc, argv);

  saga::Graph graph = saga::make_saga_type<order::OrderSaga>()->graph();
  saga::Path path;
  for (const auto& state : states) {
    if (!graph.find_state(state)) {
      std::cerr << "--path: '" << state << "' is not a state of saga " << graph.saga << "\n";
      return 2;
    }
  }
  if (!events.empty() && events.size() + 1 != states.size()) {
    std::cerr << "--events: " << events.size() << " events for " << states.size()
              << " states; give one per step\n";
    return 2;
  }
  for (std::size_t i = 1; i < states.size(); ++i)
    path.steps.push_back({states[i - 1], states[i], events.empty() ? "" : events[i - 1]});
  const saga::Path* overlay = states.empty() ? nullptr : &path;

  if (format == "dot")
    std::cout << saga::to_dot(graph, overlay);
  else if (format == "mermaid")
    std::cout << saga::to_mermaid(graph, overlay);
  else
    std::cout << nlohmann::json(graph).dump(2) << "\n";
  return 0;
}
