// Pictures of saga state machines (saga/diagram.hpp): the graph read from a definition, DOT and
// Mermaid output, the JSON round trip, one instance's path drawn over the graph, and the
// checked-in docs/order_saga.dot.
#include "saga/diagram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <boost/mpl/vector.hpp>
#include <boost/msm/front/functor_row.hpp>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/definition.hpp"
#include "saga/detail/diagram_walk.hpp"
#include "saga/engine.hpp"
#include "saga/machine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace diagram {

// Message types for the sagas below. graph_of<> reads only the front-end's table, so these need
// no JSON conversion and no command builders.
#define DIAGRAM_MESSAGE(Name, Type, Service)             \
  struct Name {                                          \
    static constexpr std::string_view type = Type;       \
    static constexpr int version = 1;                    \
    static constexpr std::string_view service = Service; \
  };

DIAGRAM_MESSAGE(CheckCredit, "credit.Check", "credit")
DIAGRAM_MESSAGE(CreditOk, "credit.Ok", "")
DIAGRAM_MESSAGE(CreditLow, "credit.Low", "")
DIAGRAM_MESSAGE(RequestApproval, "approval.Request", "approval")
DIAGRAM_MESSAGE(NotifyRisk, "risk.Notify", "risk")
DIAGRAM_MESSAGE(Approved, "approval.Approved", "")
DIAGRAM_MESSAGE(Rejected, "approval.Rejected", "")
DIAGRAM_MESSAGE(HoldFunds, "funds.Hold", "funds")
DIAGRAM_MESSAGE(FundsHeld, "funds.Held", "")
DIAGRAM_MESSAGE(Disburse, "funds.Disburse", "funds")
DIAGRAM_MESSAGE(Disbursed, "funds.Disbursed", "")
DIAGRAM_MESSAGE(DisburseFailed, "funds.DisburseFailed", "")
DIAGRAM_MESSAGE(ReleaseHold, "funds.ReleaseHold", "funds")
DIAGRAM_MESSAGE(HoldReleased, "funds.HoldReleased", "")

DIAGRAM_MESSAGE(Book, "tiny.Book", "booking")
DIAGRAM_MESSAGE(Booked, "tiny.Booked", "")
DIAGRAM_MESSAGE(Full, "tiny.Full", "")
DIAGRAM_MESSAGE(Cancel, "tiny.Cancel", "booking")
DIAGRAM_MESSAGE(Cancelled, "tiny.Cancelled", "")
DIAGRAM_MESSAGE(Pay, "tiny.Pay", "bank")
DIAGRAM_MESSAGE(Paid, "tiny.Paid", "")
DIAGRAM_MESSAGE(Refused, "tiny.Refused", "")
DIAGRAM_MESSAGE(Notify, "tiny.Notify", "mail")
DIAGRAM_MESSAGE(Notified, "tiny.Notified", "")
DIAGRAM_MESSAGE(Bounced, "tiny.Bounced", "")

struct Data {};

struct Checking : saga::state<> {
  static constexpr std::string_view name = "Checking";
};
struct AwaitingApproval : saga::state<> {
  static constexpr std::string_view name = "AwaitingApproval";
};
struct Holding : saga::state<> {
  static constexpr std::string_view name = "Holding";
};
struct Disbursing : saga::state<> {
  static constexpr std::string_view name = "Disbursing";
};
struct Releasing : saga::state<saga::SagaStatus::Compensating> {
  static constexpr std::string_view name = "Releasing";
};
struct SmallLoan {
  template <class Event, class Fsm, class Source, class Target>
  bool operator()(const Event&, Fsm&, Source&, Target&) const {
    return true;
  }
};

using saga::compensate;
using saga::send;
using Initial = saga::states::Initial;
using Completed = saga::states::Completed;
using Compensated = saga::states::Compensated;
using Failed = saga::states::Failed;
template <class... Actions>
using both = boost::msm::front::ActionSequence_<boost::mpl::vector<Actions...>>;

// A branching table with a guard, a sequence of two commands and a Failed state.
struct LoanSaga : saga::machine<LoanSaga, Data> {
  static constexpr std::string_view name = "loan";
  static constexpr int version = 3;
  using initial_state = Initial;
  // clang-format off
  using transition_table = saga::table<
  //               Source            Event              Target            Action                                Guard
  saga::transition< Initial,          saga::Begin,       Checking,         send<CheckCredit>>,
  saga::transition< Checking,         CreditOk,          Holding,          send<HoldFunds>>,
  saga::transition< Checking,         CreditLow,         Holding,          send<HoldFunds>,                      SmallLoan>,
  saga::transition< Checking,         CreditLow,         AwaitingApproval, both<send<RequestApproval>, send<NotifyRisk>>>,
  saga::transition< AwaitingApproval, Approved,          Holding,          send<HoldFunds>>,
  saga::transition< AwaitingApproval, Rejected,          Compensated>,
  saga::transition< Holding,          FundsHeld,         Disbursing,       send<Disburse>>,
  saga::transition< Disbursing,       Disbursed,         Completed>,
  saga::transition< Disbursing,       DisburseFailed,    Releasing,        compensate<ReleaseHold>>,
  saga::transition< Releasing,        HoldReleased,      Compensated>,
  saga::transition< Releasing,        saga::StepFailed,  Failed>
  >;
  // clang-format on
};

// The same rows in reverse order.
struct LoanSagaReordered : saga::machine<LoanSagaReordered, Data> {
  static constexpr std::string_view name = "loan";
  static constexpr int version = 3;
  using initial_state = Initial;
  // clang-format off
  using transition_table = saga::table<
  saga::transition< Releasing,        saga::StepFailed,  Failed>,
  saga::transition< Releasing,        HoldReleased,      Compensated>,
  saga::transition< Disbursing,       DisburseFailed,    Releasing,        compensate<ReleaseHold>>,
  saga::transition< Disbursing,       Disbursed,         Completed>,
  saga::transition< Holding,          FundsHeld,         Disbursing,       send<Disburse>>,
  saga::transition< AwaitingApproval, Rejected,          Compensated>,
  saga::transition< AwaitingApproval, Approved,          Holding,          send<HoldFunds>>,
  saga::transition< Checking,         CreditLow,         AwaitingApproval, both<send<RequestApproval>, send<NotifyRisk>>>,
  saga::transition< Checking,         CreditLow,         Holding,          send<HoldFunds>,                      SmallLoan>,
  saga::transition< Checking,         CreditOk,          Holding,          send<HoldFunds>>,
  saga::transition< Initial,          saga::Begin,       Checking,         send<CheckCredit>>
  >;
  // clang-format on
};

// A linear saga with all three step kinds.
// clang-format off
struct TinySaga : saga::definition<"tiny", 2, Data,
    saga::step<Book>::on_success<Booked>::on_failure<Full>::compensate_with<Cancel, Cancelled>,
    saga::pivot<Pay>::on_success<Paid>::on_failure<Refused>,
    saga::retriable<Notify>::on_success<Notified>::on_failure<Bounced>> {};
// clang-format on

}  // namespace diagram

namespace {

using saga::StateKind;

struct ExpectedEdge {
  std::string from, to, event;
  std::vector<std::string> commands;  // "send T to S" / "compensate T to S"
  bool compensation = false;
  bool failure = false;
  auto key() const { return std::tie(from, to, event, commands, compensation, failure); }
  bool operator<(const ExpectedEdge& other) const { return key() < other.key(); }
  bool operator==(const ExpectedEdge& other) const { return key() == other.key(); }
};

std::ostream& operator<<(std::ostream& out, const ExpectedEdge& edge) {
  out << edge.from << " --" << edge.event << "--> " << edge.to;
  for (const auto& command : edge.commands) out << " [" << command << "]";
  return out << (edge.compensation ? " compensation" : "") << (edge.failure ? " failure" : "");
}

// Written by hand from sagas/order/order_saga.hpp and the DSL semantics in saga/definition.hpp:
// each success reply advances, each failure reply (and StepFailed) compensates the completed
// compensatable steps in reverse order, each acknowledgement moves to the next compensation; a
// timed-out compensatable step is compensated itself first, and a timed-out pivot (no row for
// it) parks the saga.
const std::vector<ExpectedEdge>& expected_order_edges() {
  static const std::vector<ExpectedEdge> edges = {
      {"Initial", "awaiting:inventory.Reserve", "Begin", {"send inventory.Reserve to inventory"}},
      {"awaiting:inventory.Reserve",
       "awaiting:payment.Charge",
       "inventory.Reserved",
       {"send payment.Charge to payment"}},
      {"awaiting:inventory.Reserve", "Compensated", "inventory.OutOfStock", {}, true},
      {"awaiting:inventory.Reserve", "Compensated", "StepFailed [not timed out]", {}, true, true},
      {"awaiting:inventory.Reserve",
       "compensating:inventory.Release",
       "StepFailed [timed out]",
       {"compensate inventory.Release to inventory"},
       true,
       true},
      {"awaiting:payment.Charge",
       "awaiting:shipping.Ship",
       "payment.Charged",
       {"send shipping.Ship to shipping"}},
      {"awaiting:payment.Charge",
       "compensating:inventory.Release",
       "payment.Declined",
       {"compensate inventory.Release to inventory"},
       true},
      {"awaiting:payment.Charge",
       "compensating:inventory.Release",
       "StepFailed [not timed out]",
       {"compensate inventory.Release to inventory"},
       true,
       true},
      {"awaiting:payment.Charge",
       "compensating:payment.Refund",
       "StepFailed [timed out]",
       {"compensate payment.Refund to payment"},
       true,
       true},
      {"awaiting:shipping.Ship", "Completed", "shipping.Shipped", {}},
      {"awaiting:shipping.Ship",
       "compensating:payment.Refund",
       "shipping.Undeliverable",
       {"compensate payment.Refund to payment"},
       true},
      {"awaiting:shipping.Ship",
       "compensating:payment.Refund",
       "StepFailed [not timed out]",
       {"compensate payment.Refund to payment"},
       true,
       true},
      {"compensating:payment.Refund",
       "compensating:inventory.Release",
       "payment.Refunded",
       {"compensate inventory.Release to inventory"},
       true},
      {"compensating:inventory.Release", "Compensated", "inventory.Released", {}, true},
  };
  return edges;
}

const std::map<std::string, StateKind>& expected_order_states() {
  static const std::map<std::string, StateKind> states = {
      {"Initial", StateKind::initial},
      {"awaiting:inventory.Reserve", StateKind::waiting},
      {"awaiting:payment.Charge", StateKind::waiting},
      {"awaiting:shipping.Ship", StateKind::waiting},
      {"compensating:payment.Refund", StateKind::compensating},
      {"compensating:inventory.Release", StateKind::compensating},
      {"Completed", StateKind::completed},
      {"Compensated", StateKind::compensated},
  };
  return states;
}

std::string command_text(const saga::GraphCommand& command) {
  return (command.compensation ? "compensate " : "send ") + command.type + " to " +
         command.destination;
}

std::multiset<ExpectedEdge> edges_of(const saga::Graph& graph) {
  std::multiset<ExpectedEdge> edges;
  for (const auto& edge : graph.edges) {
    std::string event = edge.event;
    if (edge.guarded) event += " [" + (edge.guard.empty() ? "guard" : edge.guard) + "]";
    ExpectedEdge seen{edge.from, edge.to, event, {}, edge.compensation, edge.failure};
    for (const auto& command : edge.commands) seen.commands.push_back(command_text(command));
    edges.insert(seen);
  }
  return edges;
}

saga::Graph order_graph() {
  return saga::make_saga_type<order::OrderSaga>()->graph();
}

// A DOT file as written by to_dot: one statement per line.
struct Dot {
  struct Statement {
    std::string from, to;  // `to` empty for a node
    std::map<std::string, std::string> attributes;
  };
  std::vector<Statement> nodes, edges;
};

Dot parse_dot(const std::string& text) {
  static const std::regex node(R"re(^  "((?:[^"\\]|\\.)*)"(?: \[(.*)\])?;$)re");
  static const std::regex edge(R"re(^  "((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[(.*)\];$)re");
  static const std::regex attribute(R"re((\w+)="((?:[^"\\]|\\.)*)")re");
  auto attributes_of = [](const std::string& list) {
    std::map<std::string, std::string> found;
    for (std::sregex_iterator it(list.begin(), list.end(), attribute), end; it != end; ++it)
      found[(*it)[1]] = (*it)[2];
    return found;
  };
  Dot dot;
  std::istringstream lines(text);
  std::smatch match;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_match(line, match, edge))
      dot.edges.push_back({match[1], match[2], attributes_of(match[3])});
    else if (std::regex_match(line, match, node))
      dot.nodes.push_back({match[1], "", attributes_of(match[2])});
  }
  return dot;
}

// Splits a DOT label ("a\nb") into its lines.
std::vector<std::string> label_lines(const std::string& label) {
  std::vector<std::string> lines{""};
  for (std::size_t i = 0; i < label.size(); ++i) {
    if (label.compare(i, 2, "\\n") == 0) {
      lines.emplace_back();
      ++i;
    } else {
      lines.back() += label[i];
    }
  }
  return lines;
}

TEST(OrderSagaDiagram, GraphHasExactlyTheStatesAndEdgesOfTheDefinition) {
  saga::Graph graph = order_graph();
  EXPECT_EQ(graph.saga, "order");
  EXPECT_EQ(graph.version, 1);

  std::map<std::string, StateKind> states;
  for (const auto& state : graph.states) states[state.name] = state.kind;
  EXPECT_EQ(states, expected_order_states());
  EXPECT_EQ(graph.states.size(), expected_order_states().size()) << "a state is listed twice";
  EXPECT_EQ(graph.states.front().name, "Initial");

  for (const auto& state : graph.states) {
    EXPECT_EQ(state.pivot, state.name == "awaiting:shipping.Ship") << state.name;
    EXPECT_FALSE(state.after_pivot) << state.name;
  }
  std::multiset<ExpectedEdge> expected(expected_order_edges().begin(),
                                       expected_order_edges().end());
  EXPECT_EQ(edges_of(graph), expected);
}

TEST(OrderSagaDiagram, CommandsCarryTheirDestinations) {
  saga::Graph graph = order_graph();
  const saga::GraphEdge& begin = graph.edges.front();
  ASSERT_EQ(begin.commands.size(), 1u);
  EXPECT_EQ(begin.commands[0], (saga::GraphCommand{"inventory.Reserve", "inventory", false}));
}

TEST(OrderSagaDiagram, SagaTypeGraphIsTheGraphOfTheDefinition) {
  EXPECT_EQ(order_graph(), saga::detail::graph_of<order::OrderSaga>());
}

TEST(OrderSagaDiagram, DotHasExactlyTheStatesAndEdgesOfTheDefinition) {
  Dot dot = parse_dot(saga::to_dot(order_graph()));

  std::set<std::string> nodes;
  for (const auto& node : dot.nodes) nodes.insert(node.from);
  std::set<std::string> expected_nodes;
  for (const auto& [name, kind] : expected_order_states()) expected_nodes.insert(name);
  EXPECT_EQ(nodes, expected_nodes);
  EXPECT_EQ(dot.nodes.size(), expected_nodes.size());

  std::multiset<ExpectedEdge> edges;
  for (const auto& edge : dot.edges) {
    auto lines = label_lines(edge.attributes.at("label"));
    ExpectedEdge seen{edge.from, edge.to, lines.front(), {}, false, false};
    seen.commands.assign(lines.begin() + 1, lines.end());
    auto style = edge.attributes.find("style");
    seen.compensation = style != edge.attributes.end() && style->second == "dashed";
    auto color = edge.attributes.find("color");
    seen.failure = color != edge.attributes.end() && color->second == "red3";
    edges.insert(seen);
  }
  std::multiset<ExpectedEdge> expected(expected_order_edges().begin(),
                                       expected_order_edges().end());
  EXPECT_EQ(edges, expected);
}

TEST(OrderSagaDiagram, DotMarksThePivotAndTheEndStates) {
  Dot dot = parse_dot(saga::to_dot(order_graph()));
  std::map<std::string, std::map<std::string, std::string>> nodes;
  for (const auto& node : dot.nodes) nodes[node.from] = node.attributes;
  EXPECT_EQ(nodes["awaiting:shipping.Ship"]["label"], "awaiting:shipping.Ship\\n(pivot)");
  EXPECT_EQ(nodes["awaiting:payment.Charge"].count("label"), 0u);
  EXPECT_EQ(nodes["Completed"]["fillcolor"], "palegreen");
  EXPECT_EQ(nodes["Compensated"]["fillcolor"], "khaki");
  EXPECT_EQ(nodes["Completed"]["peripheries"], "2");
  EXPECT_EQ(nodes["compensating:payment.Refund"]["fillcolor"], "moccasin");
  EXPECT_EQ(nodes["Initial"]["shape"], "circle");
}

TEST(BranchingSagaDiagram, GraphHasTheRowsOfTheHandWrittenTable) {
  saga::Graph graph = saga::detail::graph_of<diagram::LoanSaga>();
  EXPECT_EQ(graph.saga, "loan");
  EXPECT_EQ(graph.version, 3);

  std::vector<std::pair<std::string, StateKind>> states;
  for (const auto& state : graph.states) {
    states.emplace_back(state.name, state.kind);
    EXPECT_FALSE(state.pivot || state.after_pivot) << "a hand-written table has no pivot";
  }
  std::vector<std::pair<std::string, StateKind>> expected_states = {
      {"Initial", StateKind::initial},
      {"Checking", StateKind::waiting},
      {"Holding", StateKind::waiting},
      {"AwaitingApproval", StateKind::waiting},
      {"Compensated", StateKind::compensated},
      {"Disbursing", StateKind::waiting},
      {"Completed", StateKind::completed},
      {"Releasing", StateKind::compensating},
      {"Failed", StateKind::failed}};
  EXPECT_EQ(states, expected_states) << "states in order of first appearance";

  std::multiset<ExpectedEdge> expected = {
      {"Initial", "Checking", "Begin", {"send credit.Check to credit"}},
      {"Checking", "Holding", "credit.Ok", {"send funds.Hold to funds"}},
      {"Checking", "Holding", "credit.Low [guard]", {"send funds.Hold to funds"}},
      {"Checking",
       "AwaitingApproval",
       "credit.Low",
       {"send approval.Request to approval", "send risk.Notify to risk"}},
      {"AwaitingApproval", "Holding", "approval.Approved", {"send funds.Hold to funds"}},
      {"AwaitingApproval", "Compensated", "approval.Rejected", {}, true},
      {"Holding", "Disbursing", "funds.Held", {"send funds.Disburse to funds"}},
      {"Disbursing", "Completed", "funds.Disbursed", {}},
      {"Disbursing",
       "Releasing",
       "funds.DisburseFailed",
       {"compensate funds.ReleaseHold to funds"},
       true},
      {"Releasing", "Compensated", "funds.HoldReleased", {}, true},
      {"Releasing", "Failed", "StepFailed", {}, true, true},
  };
  EXPECT_EQ(edges_of(graph), expected);

  auto guarded = std::count_if(graph.edges.begin(), graph.edges.end(),
                               [](const saga::GraphEdge& edge) { return edge.guarded; });
  EXPECT_EQ(guarded, 1);
  EXPECT_NE(saga::to_dot(graph).find("credit.Low [guard]"), std::string::npos);
}

TEST(BranchingSagaDiagram, ReorderedTableHasTheSameStatesAndEdges) {
  saga::Graph graph = saga::detail::graph_of<diagram::LoanSaga>();
  saga::Graph reordered = saga::detail::graph_of<diagram::LoanSagaReordered>();
  EXPECT_EQ(edges_of(graph), edges_of(reordered));
  auto names = [](const saga::Graph& g) {
    std::set<std::string> out;
    for (const auto& state : g.states) out.insert(state.name);
    return out;
  };
  EXPECT_EQ(names(graph), names(reordered));
  EXPECT_EQ(reordered.states.front().name, "Initial") << "the initial state always comes first";
}

TEST(LinearSagaDiagram, MarksThePivotAndTheRetriableStepsAfterIt) {
  saga::Graph graph = saga::detail::graph_of<diagram::TinySaga>();
  const saga::GraphState* pay = graph.find_state("awaiting:tiny.Pay");
  const saga::GraphState* notify = graph.find_state("awaiting:tiny.Notify");
  const saga::GraphState* book = graph.find_state("awaiting:tiny.Book");
  ASSERT_TRUE(pay && notify && book);
  EXPECT_TRUE(pay->pivot);
  EXPECT_FALSE(pay->after_pivot);
  EXPECT_TRUE(notify->after_pivot);
  EXPECT_FALSE(notify->pivot);
  EXPECT_FALSE(book->pivot || book->after_pivot);
}

TEST(LinearSagaDiagram, MermaidShowsTheSameStatesAndEdges) {
  saga::Graph graph = saga::detail::graph_of<diagram::TinySaga>();
  const std::string expected = R"mermaid(---
title: "saga tiny, version 2"
---
stateDiagram-v2
  state "Initial" as s0
  state "awaiting:tiny.Book" as s1
  state "awaiting:tiny.Pay (pivot)" as s2
  state "Compensated" as s3
  state "compensating:tiny.Cancel" as s4
  state "awaiting:tiny.Notify (after pivot)" as s5
  state "Completed" as s6
  [*] --> s0
  s0 --> s1 : Begin / send tiny.Book to booking
  s1 --> s2 : tiny.Booked / send tiny.Pay to bank
  s1 --> s3 : StepFailed [not timed out]
  s1 --> s4 : StepFailed [timed out] / compensate tiny.Cancel to booking
  s1 --> s3 : tiny.Full
  s4 --> s3 : tiny.Cancelled
  s2 --> s5 : tiny.Paid / send tiny.Notify to mail
  s2 --> s4 : StepFailed [not timed out] / compensate tiny.Cancel to booking
  s2 --> s4 : tiny.Refused / compensate tiny.Cancel to booking
  s5 --> s6 : tiny.Notified
  s5 --> s5 : tiny.Bounced / send tiny.Notify to mail
  s3 --> [*]
  s6 --> [*]
  classDef compensating fill:#ffe4b5,stroke:#ff8c00
  class s4 compensating
  classDef completed fill:#98fb98
  class s6 completed
  classDef compensated fill:#f0e68c
  class s3 compensated
  classDef pivot stroke-width:3px
  class s2 pivot
)mermaid";
  EXPECT_EQ(saga::to_mermaid(graph), expected);
}

TEST(OrderSagaDiagram, MermaidHasEveryEdgeOfTheDefinition) {
  saga::Graph graph = order_graph();
  std::string mermaid = saga::to_mermaid(graph);
  std::map<std::string, std::string> ids;
  std::regex state_line(R"re(^  state "([^"]*)" as (s\d+)$)re");
  std::regex edge_line(R"(^  (s\d+) --> (s\d+) : (.*)$)");
  std::istringstream lines(mermaid);
  std::smatch match;
  std::vector<std::tuple<std::string, std::string, std::string>> edges;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_match(line, match, state_line))
      ids[match[2]] = std::string(match[1]).substr(0, match[1].str().find(" (pivot)"));
    else if (std::regex_match(line, match, edge_line))
      edges.emplace_back(ids.at(match[1]), ids.at(match[2]), match[3]);
  }
  EXPECT_EQ(ids.size(), expected_order_states().size());
  std::multiset<std::tuple<std::string, std::string, std::string>> seen(edges.begin(), edges.end());
  std::multiset<std::tuple<std::string, std::string, std::string>> expected;
  for (const auto& edge : expected_order_edges()) {
    std::string label = edge.event;
    for (std::size_t i = 0; i < edge.commands.size(); ++i)
      label += (i == 0 ? " / " : ", ") + edge.commands[i];
    expected.emplace(edge.from, edge.to, label);
  }
  EXPECT_EQ(seen, expected);
  EXPECT_NE(mermaid.find("  [*] --> s0\n"), std::string::npos);
}

TEST(Diagram, OutputIsDeterministic) {
  EXPECT_EQ(saga::to_dot(order_graph()), saga::to_dot(order_graph()));
  EXPECT_EQ(saga::to_mermaid(order_graph()), saga::to_mermaid(order_graph()));
  saga::Graph loan = saga::detail::graph_of<diagram::LoanSaga>();
  EXPECT_EQ(loan, saga::detail::graph_of<diagram::LoanSaga>());
  EXPECT_EQ(saga::to_dot(loan), saga::to_dot(saga::detail::graph_of<diagram::LoanSaga>()));
  saga::Path path{{{"Initial", "Checking", "Begin"}}, "", "loan-1"};
  EXPECT_EQ(saga::to_dot(loan, &path), saga::to_dot(loan, &path));
}

TEST(DiagramJson, GraphSurvivesARoundTripThroughText) {
  for (const saga::Graph& graph : {order_graph(), saga::detail::graph_of<diagram::LoanSaga>(),
                                   saga::detail::graph_of<diagram::TinySaga>()}) {
    std::string text = nlohmann::json(graph).dump();
    saga::Graph read = nlohmann::json::parse(text).get<saga::Graph>();
    EXPECT_EQ(read, graph) << text;
    EXPECT_EQ(saga::to_dot(read), saga::to_dot(graph));
  }
}

TEST(DiagramJson, HasTheDocumentedShape) {
  nlohmann::json json = order_graph();
  EXPECT_EQ(json["format"], 1);
  EXPECT_EQ(json["saga"], "order");
  EXPECT_EQ(json["version"], 1);
  EXPECT_EQ(
      json["states"][0],
      (nlohmann::json{
          {"name", "Initial"}, {"kind", "initial"}, {"pivot", false}, {"after_pivot", false}}));
  const auto& edges = json["edges"];
  auto declined = std::find_if(edges.begin(), edges.end(), [](const nlohmann::json& edge) {
    return edge["event"] == "payment.Declined";
  });
  ASSERT_NE(declined, edges.end());
  EXPECT_EQ(*declined, (nlohmann::json{{"from", "awaiting:payment.Charge"},
                                       {"to", "compensating:inventory.Release"},
                                       {"event", "payment.Declined"},
                                       {"compensation", true},
                                       {"failure", false},
                                       {"guarded", false},
                                       {"commands",
                                        {{{"type", "inventory.Release"},
                                          {"destination", "inventory"},
                                          {"compensation", true}}}}}));
}

TEST(DiagramJson, MalformedGraphsAreRefused) {
  nlohmann::json good = order_graph();
  auto refused = [](nlohmann::json json) {
    try {
      (void)json.get<saga::Graph>();
      return false;
    } catch (const std::exception&) {
      return true;
    }
  };
  EXPECT_FALSE(refused(good));
  nlohmann::json bad = good;
  bad["states"][1]["kind"] = "sleeping";
  EXPECT_TRUE(refused(bad));
  bad = good;
  bad["format"] = 2;
  EXPECT_TRUE(refused(bad));
  bad = good;
  bad["edges"][0].erase("event");
  EXPECT_TRUE(refused(bad));
  bad = good;
  bad["edges"][0]["to"] = "nowhere";
  EXPECT_TRUE(refused(bad));
}

// The declined-payment path, as the journal records it.
saga::Path declined_payment_path() {
  return {{{"Initial", "awaiting:inventory.Reserve", "Begin"},
           {"awaiting:inventory.Reserve", "awaiting:payment.Charge", "inventory.Reserved"},
           {"awaiting:payment.Charge", "compensating:inventory.Release", "payment.Declined"},
           {"compensating:inventory.Release", "Compensated", "inventory.Released"}},
          "",
          "order-7"};
}

TEST(DiagramOverlay, DotHighlightsTheTakenPathOnly) {
  saga::Path path = declined_payment_path();
  Dot dot = parse_dot(saga::to_dot(order_graph(), &path));

  std::map<std::string, std::string> taken;  // "from -> to event" -> label
  for (const auto& edge : dot.edges) {
    std::string event = label_lines(edge.attributes.at("label")).front();
    bool bold = edge.attributes.count("penwidth") && edge.attributes.at("penwidth") == "3";
    EXPECT_EQ(bold, edge.attributes.at("color") == "blue3") << edge.from << " -> " << edge.to;
    if (bold) {
      taken[edge.from + " -> " + edge.to] = event;
    } else {
      EXPECT_EQ(edge.attributes.at("color"), "gray70");
    }
  }
  std::map<std::string, std::string> expected = {
      {"Initial -> awaiting:inventory.Reserve", "(1) Begin"},
      {"awaiting:inventory.Reserve -> awaiting:payment.Charge", "(2) inventory.Reserved"},
      {"awaiting:payment.Charge -> compensating:inventory.Release", "(3) payment.Declined"},
      {"compensating:inventory.Release -> Compensated", "(4) inventory.Released"}};
  EXPECT_EQ(taken, expected) << "the StepFailed edge beside payment.Declined is not taken";

  std::map<std::string, std::string> fills;
  for (const auto& node : dot.nodes)
    if (node.attributes.count("fillcolor")) fills[node.from] = node.attributes.at("fillcolor");
  EXPECT_EQ(fills["Initial"], "lightblue");
  EXPECT_EQ(fills["awaiting:inventory.Reserve"], "lightblue");
  EXPECT_EQ(fills["awaiting:payment.Charge"], "lightblue");
  EXPECT_EQ(fills["compensating:inventory.Release"], "lightblue");
  EXPECT_EQ(fills["Compensated"], "gold") << "the current state";
  EXPECT_EQ(fills["Completed"], "palegreen") << "not visited: its own colour";
  EXPECT_EQ(fills.count("awaiting:shipping.Ship"), 0u);
  EXPECT_NE(saga::to_dot(order_graph(), &path).find("instance order-7"), std::string::npos);
}

TEST(DiagramOverlay, StepWithoutEventMarksEveryEdgeBetweenItsStates) {
  saga::Path path{{{"awaiting:payment.Charge", "compensating:inventory.Release", ""}},
                  "compensating:inventory.Release",
                  ""};
  Dot dot = parse_dot(saga::to_dot(order_graph(), &path));
  int bold = 0;
  for (const auto& edge : dot.edges)
    if (edge.attributes.at("color") == "blue3") ++bold;
  EXPECT_EQ(bold, 2) << "payment.Declined and StepFailed both lead there";
}

TEST(DiagramOverlay, RepeatedEdgesAreNumberedEachTime) {
  saga::Graph graph = saga::detail::graph_of<diagram::TinySaga>();
  saga::Path path{{{"awaiting:tiny.Notify", "awaiting:tiny.Notify", "tiny.Bounced"},
                   {"awaiting:tiny.Notify", "awaiting:tiny.Notify", "tiny.Bounced"},
                   {"awaiting:tiny.Notify", "Completed", "tiny.Notified"}},
                  "",
                  ""};
  std::string mermaid = saga::to_mermaid(graph, &path);
  EXPECT_NE(mermaid.find("  s5 --> s5 : (1, 2) tiny.Bounced / send tiny.Notify to mail\n"),
            std::string::npos)
      << mermaid;
  EXPECT_NE(mermaid.find("  s5 --> s6 : (3) tiny.Notified\n"), std::string::npos);
  EXPECT_NE(mermaid.find("  s1 --> s2 : tiny.Booked / send tiny.Pay to bank\n"), std::string::npos)
      << "edges not taken are not numbered";
  EXPECT_NE(mermaid.find("  class s6 current\n"), std::string::npos);
  EXPECT_NE(mermaid.find("  class s5 visited\n"), std::string::npos);
}

TEST(DiagramOverlay, StatesTheGraphDoesNotKnowAreIgnored) {
  saga::Path path{{{"awaiting:gone", "Initial", ""}}, "nowhere", ""};
  std::string dot = saga::to_dot(order_graph(), &path);
  EXPECT_EQ(dot.find("gone"), std::string::npos);
  EXPECT_EQ(dot.find("nowhere"), std::string::npos);
  EXPECT_EQ(dot.find("gold"), std::string::npos);
}

// The path of real sagas, from the journal an engine wrote.
class DiagramJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saga::Options options;
    options.store.path = ":memory:";
    options.idle_wait = std::chrono::milliseconds(0);
    // A compensation gives up after two sends: the saga is parked as Failed.
    options.compensation_retry = {std::chrono::seconds(10), 1.0, std::chrono::seconds(10), 0.0, 2};
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }

  // Answers the next command with `reply`.
  void answer(const std::string& reply, nlohmann::json data) {
    auto sent = saga::test::take_commands(transport);
    ASSERT_EQ(sent.size(), 1u);
    transport.deliver(saga::test::reply_bytes(sent[0].envelope, reply, std::move(data)));
    engine->run_once();
  }

  saga::Path path_of(const std::string& id) {
    return saga::path_from_journal(store->journal(id).value());
  }

  // An order whose payment was declined and whose inventory.Release is never acknowledged.
  std::string parked_saga() {
    std::string id = engine->start<order::OrderSaga>(
        order::OrderData{"order-9", "customer-1", "1 Main St", {{"sku-1", 1, 500}}});
    engine->run_once();
    answer("inventory.Reserved", {{"reservation_id", "r-9"}});
    answer("payment.Declined", {{"reason", "card expired"}});
    for (int turn = 0; turn < 3; ++turn) {
      clock.advance(std::chrono::seconds(11));
      engine->run_once();
      saga::test::take_commands(transport);
    }
    EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);
    return id;
  }

  saga::OperatorResult apply(std::future<saga::OperatorResult> future) {
    engine->run_once();
    EXPECT_EQ(future.wait_for(std::chrono::seconds(0)), std::future_status::ready);
    return future.get();
  }

  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

using Steps = std::vector<std::tuple<std::string, std::string, std::string>>;

Steps steps_of(const saga::Path& path) {
  Steps steps;
  for (const auto& step : path.steps) steps.emplace_back(step.from, step.to, step.event);
  return steps;
}

TEST_F(DiagramJournalTest, PathOfADeclinedPaymentNamesTheRepliesThatMovedIt) {
  std::string id = engine->start<order::OrderSaga>(
      order::OrderData{"order-7", "customer-1", "1 Main St", {{"sku-1", 1, 500}}});
  engine->run_once();
  answer("inventory.Reserved", {{"reservation_id", "r-1"}});
  answer("payment.Declined", {{"reason", "card expired"}});
  answer("inventory.Released", {{"reservation_id", "r-1"}});

  Steps expected;
  for (const auto& step : declined_payment_path().steps)
    expected.emplace_back(step.from, step.to, step.event);
  saga::Path path = path_of(id);
  EXPECT_EQ(steps_of(path), expected);

  path.instance = "order-7";
  saga::Path by_hand = declined_payment_path();
  EXPECT_EQ(saga::to_dot(order_graph(), &path), saga::to_dot(order_graph(), &by_hand));
}

TEST_F(DiagramJournalTest, ATransitionRaisedByAFailingBuilderIsAStepFailure) {
  // inventory.Reserve cannot be built for an order without items.
  std::string id =
      engine->start<order::OrderSaga>(order::OrderData{"order-8", "customer-1", "1 Main St", {}});
  engine->run_once();
  Steps expected = {{"Initial", "awaiting:inventory.Reserve", "Begin"},
                    {"awaiting:inventory.Reserve", "Compensated", "StepFailed"}};
  EXPECT_EQ(steps_of(path_of(id)), expected);
}

using KindedSteps =
    std::vector<std::tuple<std::string, std::string, std::string, saga::PathStepKind>>;

KindedSteps kinded_steps_of(const saga::Path& path) {
  KindedSteps steps;
  for (const auto& step : path.steps) steps.emplace_back(step.from, step.to, step.event, step.kind);
  return steps;
}

const Dot::Statement* find_edge(const Dot& dot, const std::string& from, const std::string& to,
                                const std::string& label_start) {
  for (const auto& edge : dot.edges)
    if (edge.from == from && edge.to == to && edge.attributes.count("label") &&
        edge.attributes.at("label").starts_with(label_start))
      return &edge;
  return nullptr;
}

const Dot::Statement* find_node(const Dot& dot, const std::string& name) {
  for (const auto& node : dot.nodes)
    if (node.from == name) return &node;
  return nullptr;
}

// The start of a DOT edge from a state to itself.
std::string loop_of(const std::string& state) {
  return "\"" + state + "\" -> \"" + state + "\" ";
}

constexpr auto kTransition = saga::PathStepKind::transition;
const std::string kRelease = "compensating:inventory.Release";

TEST_F(DiagramJournalTest, ACompensationThatRunsOutIsParkedInPlaceAndTheOperatorsRetryIsAStep) {
  std::string id = parked_saga();
  KindedSteps expected = {
      {"Initial", "awaiting:inventory.Reserve", "Begin", kTransition},
      {"awaiting:inventory.Reserve", "awaiting:payment.Charge", "inventory.Reserved", kTransition},
      {"awaiting:payment.Charge", kRelease, "payment.Declined", kTransition},
      {kRelease, kRelease, "StepFailed", saga::PathStepKind::parked}};
  saga::Path path = path_of(id);
  EXPECT_EQ(kinded_steps_of(path), expected);

  Dot dot = parse_dot(saga::to_dot(order_graph(), &path));
  const auto* parked = find_node(dot, kRelease);
  ASSERT_NE(parked, nullptr);
  EXPECT_EQ(parked->attributes.at("fillcolor"), "lightpink");
  EXPECT_EQ(parked->attributes.at("color"), "red3");
  EXPECT_EQ(parked->attributes.at("label"), kRelease + "\\n(parked as Failed)");
  std::string text = saga::to_dot(order_graph(), &path);
  EXPECT_NE(text.find("  " + loop_of(kRelease) +
                      "[label=<<font color=\"red3\">(4) parked as Failed</font>>, "
                      "style=\"dashed\", color=\"red3\", penwidth=\"3\"];\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(dot.edges.size(), order_graph().edges.size() + 1) << "one loop beside the definition";
  for (const auto& node : dot.nodes) {
    if (node.from == kRelease || !node.attributes.count("fillcolor")) continue;
    EXPECT_NE(node.attributes.at("fillcolor"), "gold") << node.from;
  }

  std::string mermaid = saga::to_mermaid(order_graph(), &path);
  EXPECT_NE(mermaid.find("  state \"" + kRelease + " (parked as Failed)\" as s4\n"),
            std::string::npos)
      << mermaid;
  EXPECT_NE(mermaid.find("  s4 --> s4 : (4) parked as Failed\n"), std::string::npos) << mermaid;
  EXPECT_NE(mermaid.find("  class s4 parked\n"), std::string::npos) << mermaid;
  EXPECT_EQ(mermaid.find("current"), std::string::npos) << mermaid;

  ASSERT_TRUE(apply(engine->retry(id)).ok);
  answer("inventory.Released", {{"reservation_id", "r-9"}});
  expected.push_back({kRelease, kRelease, "inventory.Release", saga::PathStepKind::retried});
  expected.push_back({kRelease, "Compensated", "inventory.Released", kTransition});
  path = path_of(id);
  EXPECT_EQ(kinded_steps_of(path), expected);

  dot = parse_dot(saga::to_dot(order_graph(), &path));
  text = saga::to_dot(order_graph(), &path);
  EXPECT_NE(
      text.find("  " + loop_of(kRelease) +
                "[label=<<font color=\"red3\">(4) parked as Failed</font><br/>"
                "<font color=\"purple3\">(5) operator retry<br/>send inventory.Release</font>>, "
                "style=\"dashed\", color=\"purple3\", penwidth=\"3\"];\n"),
      std::string::npos)
      << "one loop lists both steps, each in its colour\n"
      << text;
  EXPECT_EQ(dot.edges.size(), order_graph().edges.size() + 1);
  const auto* released = find_edge(dot, kRelease, "Compensated", "(6) inventory.Released");
  ASSERT_NE(released, nullptr);
  EXPECT_EQ(released->attributes.at("color"), "blue3");
  EXPECT_EQ(find_node(dot, kRelease)->attributes.at("fillcolor"), "lightblue")
      << "no longer parked";
  EXPECT_EQ(find_node(dot, "Compensated")->attributes.at("fillcolor"), "gold");
}

TEST_F(DiagramJournalTest, AResolvedSagaIsDrawnWithTheStatusTheOperatorGaveIt) {
  std::string id = parked_saga();
  ASSERT_TRUE(apply(engine->resolve(id, saga::SagaStatus::Compensated, "released by hand")).ok);
  saga::Path path = path_of(id);
  ASSERT_EQ(path.steps.size(), 5u);
  EXPECT_EQ(kinded_steps_of(path).back(),
            std::make_tuple(kRelease, kRelease, std::string("Compensated"),
                            saga::PathStepKind::resolved));

  Dot dot = parse_dot(saga::to_dot(order_graph(), &path));
  const auto* node = find_node(dot, kRelease);
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->attributes.at("label"), kRelease + "\\n(resolved as Compensated)");
  EXPECT_EQ(node->attributes.at("fillcolor"), "khaki");
  EXPECT_EQ(node->attributes.at("color"), "purple3");
  std::string text = saga::to_dot(order_graph(), &path);
  EXPECT_NE(text.find("[label=<<font color=\"red3\">(4) parked as Failed</font><br/>"
                      "<font color=\"purple3\">(5) operator resolve as Compensated</font>>, "
                      "style=\"dashed\", color=\"purple3\", penwidth=\"3\"];\n"),
            std::string::npos)
      << text;

  std::string mermaid = saga::to_mermaid(order_graph(), &path);
  EXPECT_NE(mermaid.find("  s4 --> s4 : (5) operator resolve as Compensated\n"), std::string::npos)
      << mermaid;
  EXPECT_NE(mermaid.find("  classDef resolved fill:#f0e68c,stroke:#7d26cd,stroke-width:3px\n"
                         "  class s4 resolved\n"),
            std::string::npos)
      << mermaid;
}

TEST_F(DiagramJournalTest, GraphFromTheJournalHasTheStatesAndEdgesTheSagaWentThrough) {
  std::string id = engine->start<order::OrderSaga>(
      order::OrderData{"order-7", "customer-1", "1 Main St", {{"sku-1", 1, 500}}});
  engine->run_once();
  answer("inventory.Reserved", {{"reservation_id", "r-1"}});
  answer("payment.Declined", {{"reason", "card expired"}});
  answer("inventory.Released", {{"reservation_id", "r-1"}});
  saga::Graph graph = saga::graph_from_journal(store->journal(id).value(), "order", 1);

  saga::Graph definition = order_graph();
  EXPECT_EQ(graph.saga, "order");
  EXPECT_EQ(graph.version, 1);
  std::vector<std::string> names;
  for (const auto& state : graph.states) {
    names.push_back(state.name);
    const saga::GraphState* defined = definition.find_state(state.name);
    ASSERT_NE(defined, nullptr) << state.name;
    EXPECT_EQ(state.kind, defined->kind) << state.name;
    EXPECT_FALSE(state.pivot);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"Initial", "awaiting:inventory.Reserve",
                                             "awaiting:payment.Charge", kRelease, "Compensated"}));
  // Every edge is the definition's edge, without the destinations the journal does not know.
  ASSERT_EQ(graph.edges.size(), 4u);
  for (const auto& edge : graph.edges) {
    saga::GraphEdge without_destinations = edge;
    bool found = false;
    for (auto defined : definition.edges) {
      for (auto& command : defined.commands) command.destination.clear();
      found |= defined == without_destinations;
    }
    EXPECT_TRUE(found) << edge.from << " --" << edge.event << "--> " << edge.to;
  }
  saga::Path path = path_of(id);
  std::string dot = saga::to_dot(graph, &path);
  EXPECT_NE(dot.find("label=\"(1) Begin\\nsend inventory.Reserve\""), std::string::npos) << dot;
  EXPECT_EQ(dot.find("gray70"), std::string::npos) << "every edge was taken";
}

TEST_F(DiagramJournalTest, GraphFromTheJournalOfAParkedSagaKeepsTheKindOfTheStateItWaitsIn) {
  std::string id = parked_saga();
  ASSERT_TRUE(apply(engine->retry(id)).ok);
  answer("inventory.Released", {{"reservation_id", "r-9"}});
  saga::Graph graph = saga::graph_from_journal(store->journal(id).value(), "order", 1);
  ASSERT_NE(graph.find_state(kRelease), nullptr);
  EXPECT_EQ(graph.find_state(kRelease)->kind, StateKind::compensating);
  EXPECT_EQ(graph.find_state("Compensated")->kind, StateKind::compensated);
  for (const auto& edge : graph.edges)
    EXPECT_NE(edge.from, edge.to) << "parking and the retry are not transitions of the saga";
  EXPECT_EQ(graph.edges.size(), 4u);
}

// Journals written by hand, for what the order saga cannot do.
saga::JournalEntry entry(saga::JournalKind kind, std::string message_id, std::string type,
                         std::string from, std::string to, std::string detail) {
  saga::JournalEntry made;
  made.kind = kind;
  made.message_id = std::move(message_id);
  made.message_type = std::move(type);
  made.from_state = std::move(from);
  made.to_state = std::move(to);
  made.detail = std::move(detail);
  return made;
}

using saga::JournalKind;

TEST(DiagramJournal, AFailureThatFindsNoTransitionParksTheSagaInTheStateItReached) {
  // A reply moved the saga on; the next command's builder threw and StepFailed had no row.
  std::vector<saga::JournalEntry> journal = {
      entry(JournalKind::started, "", "", "", "", "{}"),
      entry(JournalKind::transition, "", "", "Initial", "A", ""),
      entry(JournalKind::message_in, "m1", "x.Done", "", "", "{}"),
      entry(JournalKind::transition, "m1", "", "A", "B", ""),
      entry(JournalKind::user_error, "m1", "", "", "", "boom"),
      entry(JournalKind::status_changed, "m1", "", "", "", "Failed: boom")};
  KindedSteps expected = {{"Initial", "A", "Begin", kTransition},
                          {"A", "B", "x.Done", kTransition},
                          {"B", "B", "StepFailed", saga::PathStepKind::parked}};
  EXPECT_EQ(kinded_steps_of(saga::path_from_journal(journal)), expected);
  saga::Graph graph = saga::graph_from_journal(journal, "x", 1);
  EXPECT_EQ(graph.find_state("Initial")->kind, StateKind::initial);
  EXPECT_EQ(graph.find_state("B")->kind, StateKind::waiting) << "parked, not a Failed state";
}

TEST(DiagramJournal, AFailedStateReachedByStepFailedIsATransitionNotParking) {
  // LoanSaga: Releasing --StepFailed--> Failed, after the release timed out.
  std::vector<saga::JournalEntry> journal = {
      entry(JournalKind::transition, "", "", "Initial", "Checking", ""),
      entry(JournalKind::message_in, "m1", "credit.Ok", "", "", "{}"),
      entry(JournalKind::transition, "m1", "", "Checking", "Holding", ""),
      entry(JournalKind::message_in, "m2", "funds.Held", "", "", "{}"),
      entry(JournalKind::transition, "m2", "", "Holding", "Disbursing", ""),
      entry(JournalKind::message_in, "m3", "funds.DisburseFailed", "", "", "{}"),
      entry(JournalKind::transition, "m3", "", "Disbursing", "Releasing", ""),
      entry(JournalKind::message_out, "c1", "funds.ReleaseHold", "", "", "compensation {}"),
      entry(JournalKind::status_changed, "m3", "", "", "", "Compensating"),
      entry(JournalKind::timed_out, "c1", "funds.ReleaseHold", "", "", "no reply"),
      entry(JournalKind::transition, "c1", "", "Releasing", "Failed", ""),
      entry(JournalKind::user_error, "c1", "", "", "", "no reply"),
      entry(JournalKind::status_changed, "c1", "", "", "", "Failed: no reply")};
  saga::Path path = saga::path_from_journal(journal);
  for (const auto& step : path.steps) EXPECT_EQ(step.kind, kTransition) << step.from;
  EXPECT_EQ(kinded_steps_of(path).back(),
            std::make_tuple(std::string("Releasing"), std::string("Failed"),
                            std::string("StepFailed"), kTransition));

  saga::Graph graph = saga::graph_from_journal(journal, "loan", 3);
  EXPECT_EQ(graph.find_state("Releasing")->kind, StateKind::compensating);
  EXPECT_EQ(graph.find_state("Failed")->kind, StateKind::failed);
  const auto& release = graph.edges.at(3);
  EXPECT_EQ(release.commands, (std::vector<saga::GraphCommand>{{"funds.ReleaseHold", "", true}}));
  EXPECT_TRUE(release.compensation);
  EXPECT_TRUE(graph.edges.at(4).failure);

  Dot dot = parse_dot(saga::to_dot(saga::detail::graph_of<diagram::LoanSaga>(), &path));
  EXPECT_EQ(find_node(dot, "Failed")->attributes.at("fillcolor"), "gold");
  EXPECT_NE(find_edge(dot, "Releasing", "Failed", "(5) StepFailed"), nullptr);
  EXPECT_EQ(dot.edges.size(), saga::detail::graph_of<diagram::LoanSaga>().edges.size());
}

TEST(DiagramJournal, ATransitionTakenTwiceIsOneEdgeOfTheJournalGraph) {
  std::vector<saga::JournalEntry> journal = {
      entry(JournalKind::transition, "", "", "Initial", "awaiting:tiny.Notify", ""),
      entry(JournalKind::message_in, "m1", "tiny.Bounced", "", "", "{}"),
      entry(JournalKind::transition, "m1", "", "awaiting:tiny.Notify", "awaiting:tiny.Notify", ""),
      entry(JournalKind::message_out, "c2", "tiny.Notify", "", "", "{}"),
      entry(JournalKind::message_in, "m2", "tiny.Bounced", "", "", "{}"),
      entry(JournalKind::transition, "m2", "", "awaiting:tiny.Notify", "awaiting:tiny.Notify", ""),
      entry(JournalKind::message_out, "c3", "tiny.Notify", "", "", "{}"),
      entry(JournalKind::message_in, "m3", "tiny.Notified", "", "", "{}"),
      entry(JournalKind::transition, "m3", "", "awaiting:tiny.Notify", "Completed", ""),
      entry(JournalKind::status_changed, "m3", "", "", "", "Completed")};
  saga::Graph graph = saga::graph_from_journal(journal, "tiny", 2);
  ASSERT_EQ(graph.edges.size(), 3u);
  EXPECT_EQ(graph.edges[1].event, "tiny.Bounced");
  EXPECT_EQ(graph.edges[1].commands, (std::vector<saga::GraphCommand>{{"tiny.Notify", "", false}}));
  EXPECT_EQ(graph.find_state("Completed")->kind, StateKind::completed);
  saga::Path path = saga::path_from_journal(journal);
  std::string mermaid = saga::to_mermaid(graph, &path);
  EXPECT_NE(mermaid.find("  s1 --> s1 : (2, 3) tiny.Bounced / send tiny.Notify\n"),
            std::string::npos)
      << mermaid;
}

// The journal as the engine writes it now: the first transition of each reaction on the entry
// of the input that caused it (started, message_in, timed_out), not an entry of its own.
std::vector<saga::JournalEntry> with_transitions_on_inputs(std::vector<saga::JournalEntry> old) {
  std::vector<saga::JournalEntry> folded;
  for (auto& entry : old) {
    if (entry.kind == JournalKind::transition && !folded.empty()) {
      saga::JournalEntry& input = folded.back();
      const bool is_input = input.kind == JournalKind::started ||
                            input.kind == JournalKind::message_in ||
                            input.kind == JournalKind::timed_out;
      if (is_input && input.to_state.empty() && input.message_id == entry.message_id) {
        input.from_state = entry.from_state;
        input.to_state = entry.to_state;
        continue;
      }
    }
    folded.push_back(std::move(entry));
  }
  return folded;
}

TEST(DiagramJournal, TransitionsOnTheInputsEntriesReadAsTransitionEntriesDo) {
  const std::vector<std::vector<saga::JournalEntry>> journals = {
      {entry(JournalKind::started, "", "", "", "", "{}"),
       entry(JournalKind::transition, "", "", "Initial", "A", ""),
       entry(JournalKind::message_in, "m1", "x.Done", "", "", "{}"),
       entry(JournalKind::transition, "m1", "", "A", "B", ""),
       entry(JournalKind::transition, "m1", "", "B", "C", ""),  // StepFailed raised in B
       entry(JournalKind::user_error, "m1", "", "", "", "boom"),
       entry(JournalKind::message_out, "c1", "x.Undo", "", "", "compensation {}"),
       entry(JournalKind::status_changed, "m1", "", "", "", "Compensating"),
       entry(JournalKind::timed_out, "c1", "x.Undo", "", "", "no reply"),
       entry(JournalKind::transition, "c1", "", "C", "Failed", ""),
       entry(JournalKind::user_error, "c1", "", "", "", "no reply"),
       entry(JournalKind::status_changed, "c1", "", "", "", "Failed: no reply")},
      {entry(JournalKind::started, "", "", "", "", "{}"),
       entry(JournalKind::transition, "", "", "Initial", "A", ""),
       entry(JournalKind::message_in, "m1", "x.Done", "", "", "{}"),
       entry(JournalKind::transition, "m1", "", "A", "B", ""),
       entry(JournalKind::user_error, "m1", "", "", "", "boom"),
       entry(JournalKind::status_changed, "m1", "", "", "", "Failed: boom")}};
  for (const auto& old : journals) {
    const auto folded = with_transitions_on_inputs(old);
    ASSERT_LT(folded.size(), old.size());
    EXPECT_EQ(kinded_steps_of(saga::path_from_journal(folded)),
              kinded_steps_of(saga::path_from_journal(old)));
    const saga::Graph a = saga::graph_from_journal(folded, "x", 1);
    const saga::Graph b = saga::graph_from_journal(old, "x", 1);
    EXPECT_EQ(saga::to_dot(a), saga::to_dot(b));
  }
}

std::string checked_in(const std::string& name) {
  std::ifstream file(std::string(SAGA_DOCS_DIR) + "/" + name);
  EXPECT_TRUE(file) << "cannot read " << SAGA_DOCS_DIR << "/" << name;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

TEST(OrderSagaDiagram, CheckedInPictureIsWhatTheDefinitionDraws) {
  EXPECT_EQ(checked_in("order_saga.dot"), saga::to_dot(order_graph()))
      << "docs/order_saga.dot is out of date; regenerate it (docs/diagrams.md):\n"
      << "  build/default/tools/saga_diagram/saga_diagram > docs/order_saga.dot\n"
      << "  dot -Tsvg docs/order_saga.dot -o docs/order_saga.svg";
}

TEST(OrderSagaDiagram, MermaidInTheDocsIsWhatTheDefinitionDraws) {
  EXPECT_NE(
      checked_in("diagrams.md").find("```mermaid\n" + saga::to_mermaid(order_graph()) + "```"),
      std::string::npos)
      << "docs/diagrams.md shows an outdated Mermaid picture; paste the output of\n"
      << "  build/default/tools/saga_diagram/saga_diagram --format mermaid";
}

TEST(OrderSagaDiagram, CheckedInDeclinedPaymentPictureIsWhatTheGeneratorDraws) {
  saga::Path path = declined_payment_path();
  path.instance.clear();
  EXPECT_EQ(checked_in("order_saga_declined.dot"), saga::to_dot(order_graph(), &path))
      << "docs/order_saga_declined.dot is out of date; regenerate it (docs/diagrams.md)";
}

}  // namespace
