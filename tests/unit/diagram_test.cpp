// Pictures of saga state machines (saga/diagram.hpp): the graph read from a definition, DOT and
// Mermaid output, the JSON round trip, one instance's path drawn over the graph, and the
// checked-in docs/order_saga.dot.
#include "saga/diagram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
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
// compensatable steps in reverse order, each acknowledgement moves to the next compensation.
const std::vector<ExpectedEdge>& expected_order_edges() {
  static const std::vector<ExpectedEdge> edges = {
      {"Initial", "awaiting:inventory.Reserve", "Begin", {"send inventory.Reserve to inventory"}},
      {"awaiting:inventory.Reserve",
       "awaiting:payment.Charge",
       "inventory.Reserved",
       {"send payment.Charge to payment"}},
      {"awaiting:inventory.Reserve", "Compensated", "inventory.OutOfStock", {}, true},
      {"awaiting:inventory.Reserve", "Compensated", "StepFailed", {}, true, true},
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
       "StepFailed",
       {"compensate inventory.Release to inventory"},
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
       "StepFailed",
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
    ExpectedEdge seen{edge.from, edge.to, edge.event, {}, edge.compensation, edge.failure};
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
      {"Checking", "Holding", "credit.Low", {"send funds.Hold to funds"}},
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
  s1 --> s3 : StepFailed
  s1 --> s3 : tiny.Full
  s4 --> s3 : tiny.Cancelled
  s2 --> s5 : tiny.Paid / send tiny.Notify to mail
  s2 --> s4 : StepFailed / compensate tiny.Cancel to booking
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
