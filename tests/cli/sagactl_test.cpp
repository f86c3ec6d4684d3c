// sagactl against a database produced by a real run: an in-process engine with the SQLite store,
// the in-memory transport and the order saga, driven by scripted replies so that sagas complete,
// compensate, park as Failed, stay in flight, and bad input is dead-lettered. The built sagactl
// binary runs as a subprocess; each test checks its output and exit code.
//
// SAGACTL_TEST_KEEP=1 keeps the database and prints its path (to paste real output into docs).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/diagram.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using saga::test::reply_bytes;
using saga::test::take_commands;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs the built sagactl with `args`. SAGA_DB is removed from the environment unless `saga_db`
// is given.
Result run_sagactl(const std::vector<std::string>& args,
                   const std::optional<std::string>& saga_db = std::nullopt) {
  static std::atomic<int> counter{0};
  auto base = std::filesystem::temp_directory_path() /
              ("sagactl-run-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::string out_path = base.string() + ".out", err_path = base.string() + ".err";
  std::vector<std::string> argv_storage = {SAGACTL_PATH};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** entry = environ; *entry != nullptr; ++entry)
    if (std::string_view(*entry).rfind("SAGA_DB=", 0) != 0) env_storage.emplace_back(*entry);
  if (saga_db) env_storage.push_back("SAGA_DB=" + *saga_db);
  std::vector<char*> envp;
  for (auto& entry : env_storage) envp.push_back(entry.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = 0;
  Result result;
  int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    ADD_FAILURE() << "cannot run " << SAGACTL_PATH;
    return result;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  return result;
}

json parse(const Result& result) {
  auto parsed = json::parse(result.out, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << result.out;
  return parsed;
}

std::vector<std::string> ids(const json& list) {
  std::vector<std::string> result;
  for (const auto& item : list) result.push_back(item["id"]);
  return result;
}

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// The sagas of the scripted run, by what happened to them.
struct Scenario {
  std::string completed_old, compensated, failed, running_old, completed_new, running_new;
  std::string unknown_correlation;  // a reply for a saga that does not exist was sent with it
};

// An orchestrator on a database file, driven turn by turn on a manual clock that starts three
// hours ago, so the sagas have real ages for --older-than and stats.
class Orchestrator {
 public:
  explicit Orchestrator(const std::string& path)
      : clock(std::chrono::system_clock::now() - 3h), store(open_store(path)) {
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }

  saga::Options options_for(const std::string& path) {
    saga::Options result;
    result.store.path = path;
    result.store.durability = saga::Durability::off;
    result.idle_wait = 0ms;
    result.command_retry = {10s, 1.0, 10s, 0.0, 0};       // steps: re-sent every 10 s for ever
    result.compensation_retry = {10s, 1.0, 10s, 0.0, 2};  // compensations: give up after 2
    return result;
  }

  // Starts an order and answers its commands with `replies` in turn, 150 ms apart. Returns the
  // saga id; the commands still unanswered are in `pending`.
  std::string drive(const std::string& order_id,
                    const std::vector<std::pair<std::string, json>>& replies,
                    const std::string& correlation_id = "") {
    std::string id = engine->start<order::OrderSaga>(
        {order_id, "customer-7", "1 Main St", {{"sku-lamp", 2, 4500}}}, correlation_id);
    engine->run_once();
    pending = take_commands(transport);
    for (const auto& [type, data] : replies) {
      clock.advance(150ms);
      EXPECT_EQ(pending.size(), 1u) << order_id << " before " << type;
      if (pending.empty()) break;
      last_reply = reply_bytes(pending[0].envelope, type, data);
      transport.deliver(last_reply);
      engine->run_once();
      pending = take_commands(transport);
    }
    engine->run_once();  // an idle turn
    return id;
  }

  void turn(std::chrono::milliseconds advance) {
    clock.advance(advance);
    engine->run_once();
    take_commands(transport);
  }

  saga::ManualClock clock;
  saga::Options options;
  std::unique_ptr<saga::SqliteStore> store;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::Engine> engine;
  std::vector<saga::test::SentCommand> pending;
  std::string last_reply;

 private:
  std::unique_ptr<saga::SqliteStore> open_store(const std::string& path) {
    options = options_for(path);
    auto opened = saga::SqliteStore::open(options.store);
    if (!opened) throw std::runtime_error(opened.error().message);
    return std::move(opened.value());
  }
};

Scenario run_scenario(Orchestrator& o) {
  Scenario s;
  s.completed_old = o.drive("order-1", {{"inventory.Reserved", {{"reservation_id", "res-1"}}},
                                        {"payment.Charged", {{"payment_id", "pay-1"}}},
                                        {"shipping.Shipped", {{"tracking_number", "trk-1"}}}});
  std::string completed_reply = o.last_reply;
  s.compensated = o.drive("order-2", {{"inventory.Reserved", {{"reservation_id", "res-2"}}},
                                      {"payment.Declined", {{"reason", "card expired"}}},
                                      {"inventory.Released", {{"reservation_id", "res-2"}}}});
  // The release of order-3 is never acknowledged: after two sends the saga is parked as Failed.
  s.failed = o.drive("order-3", {{"inventory.Reserved", {{"reservation_id", "res-3"}}},
                                 {"payment.Declined", {{"reason", "insufficient funds"}}}});
  o.turn(11s);
  o.turn(11s);
  // order-4 waits for its payment; the charge is re-sent once.
  s.running_old = o.drive("order-4", {{"inventory.Reserved", {{"reservation_id", "res-4"}}}});
  o.turn(11s);
  o.engine->run_once();

  // Bad input: not JSON (with a terminal escape sequence), a reply for a saga that does not
  // exist, a reply the compensated saga does not expect, and a duplicate.
  o.transport.deliver("not json \x1b[31mred\x1b[0m\n");
  saga::Envelope ghost;
  ghost.event_id = saga::new_uuid();
  s.unknown_correlation = ghost.correlation_id = saga::new_uuid();
  o.transport.deliver(reply_bytes(ghost, "inventory.Reserved", {{"reservation_id", "res-x"}}));
  saga::Envelope compensated;
  compensated.event_id = saga::new_uuid();
  compensated.correlation_id = s.compensated;
  o.transport.deliver(
      reply_bytes(compensated, "inventory.Reserved", {{"reservation_id", "res-late"}}));
  o.transport.deliver(completed_reply);
  o.turn(1s);

  // Two sagas from the last minute.
  o.clock.set(std::chrono::system_clock::now() - 1min);
  o.turn(0ms);  // order-4's charge is overdue after the jump: its third send
  s.completed_new = o.drive("order-5", {{"inventory.Reserved", {{"reservation_id", "res-5"}}},
                                        {"payment.Charged", {{"payment_id", "pay-5"}}},
                                        {"shipping.Shipped", {{"tracking_number", "trk-5"}}}});
  s.running_new = o.drive("order-6", {});
  o.engine->run_once();
  return s;
}

class SagactlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    directory = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                          ("sagactl-test-" + std::to_string(::getpid())));
    std::filesystem::remove_all(*directory);
    std::filesystem::create_directories(*directory);
    db = new std::string((*directory / "orchestrator.db").string());
    // The orchestrator stays open (holding its writer lock) while sagactl reads.
    orchestrator = new Orchestrator(*db);
    scenario = new Scenario(run_scenario(*orchestrator));
  }

  static void TearDownTestSuite() {
    delete orchestrator;
    if (std::getenv("SAGACTL_TEST_KEEP") != nullptr) {
      std::cout << "kept the database: " << *db << "\n";
    } else {
      std::filesystem::remove_all(*directory);
    }
    delete scenario;
    delete db;
    delete directory;
  }

  static Result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--db", *db});
    return run_sagactl(args);
  }

  static inline std::filesystem::path* directory = nullptr;
  static inline std::string* db = nullptr;
  static inline Orchestrator* orchestrator = nullptr;
  static inline Scenario* scenario = nullptr;
};

TEST_F(SagactlTest, ListShowsEverySagaNewestFirstInAnAlignedTable) {
  Result r = ctl({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("ID ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("STATUS"), std::string::npos);
  EXPECT_EQ(count_lines(r.out), 1 + 6 + 1u) << r.out;  // header, rows, summary
  EXPECT_NE(r.out.find("6 of 6 sagas"), std::string::npos) << r.out;
  EXPECT_LT(r.out.find(scenario->running_new), r.out.find(scenario->completed_old));
  // Aligned: the STATUS column starts at the same offset on every row.
  std::istringstream lines(r.out);
  std::string header, row;
  std::getline(lines, header);
  std::size_t status_column = header.find("STATUS");
  while (std::getline(lines, row) && row.find(" of ") == std::string::npos) {
    std::string status = row.substr(status_column, row.find(' ', status_column) - status_column);
    EXPECT_TRUE(status == "Running" || status == "Completed" || status == "Compensated" ||
                status == "Failed")
        << row;
  }
}

TEST_F(SagactlTest, ListFiltersByStatusTypeAgeAndLimit) {
  Result failed = ctl({"list", "--status", "failed", "--json"});
  ASSERT_EQ(failed.code, 0) << failed.err;
  EXPECT_EQ(ids(parse(failed)["sagas"]), std::vector<std::string>{scenario->failed});

  Result in_flight = ctl({"list", "--status", "Running,Compensating", "--json"});
  EXPECT_EQ(ids(parse(in_flight)["sagas"]),
            (std::vector<std::string>{scenario->running_new, scenario->running_old}));

  Result old = ctl({"list", "--older-than", "2h", "--json"});
  auto old_ids = ids(parse(old)["sagas"]);
  EXPECT_EQ(old_ids.size(), 4u);
  EXPECT_EQ(std::count(old_ids.begin(), old_ids.end(), scenario->running_new), 0);
  EXPECT_EQ(
      ids(parse(ctl({"list", "--older-than", "10m", "--status", "running", "--json"}))["sagas"]),
      std::vector<std::string>{scenario->running_old});
  EXPECT_EQ(parse(ctl({"list", "--older-than", "1d", "--json"}))["total"], 0);

  EXPECT_EQ(parse(ctl({"list", "--type", "order", "--json"}))["total"], 6);
  Result other_type = ctl({"list", "--type", "loan"});
  EXPECT_EQ(other_type.code, 0);
  EXPECT_EQ(other_type.out, "no sagas match\n");

  Result limited = ctl({"list", "--limit", "2"});
  EXPECT_EQ(count_lines(limited.out), 1 + 2 + 1u) << limited.out;
  EXPECT_NE(limited.out.find("2 of 6 sagas (newest first; --limit for more)"), std::string::npos);
  json limited_json = parse(ctl({"list", "--limit", "2", "--json"}));
  EXPECT_EQ(limited_json["count"], 2);
  EXPECT_EQ(limited_json["total"], 6);
}

TEST_F(SagactlTest, ListJsonHasStableFieldNames) {
  json list = parse(ctl({"list", "--json"}));
  ASSERT_EQ(list["sagas"].size(), 6u);
  for (const auto& saga : list["sagas"]) {
    for (const char* field : {"id", "correlation_id", "type", "definition_version", "status",
                              "state", "created_at", "updated_at", "age_seconds", "row_version"})
      EXPECT_TRUE(saga.contains(field)) << field;
  }
  const auto& oldest = list["sagas"].back();
  EXPECT_EQ(oldest["id"], scenario->completed_old);
  EXPECT_EQ(oldest["correlation_id"], scenario->completed_old);
  EXPECT_EQ(oldest["status"], "Completed");
  EXPECT_GT(oldest["age_seconds"].get<double>(), 3 * 3600 - 60);
}

TEST_F(SagactlTest, ShowPrintsTheTimelineWithMessagesTransitionsRetriesAndData) {
  Result r = ctl({"show", scenario->failed});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* expected :
       {"Status             Failed in state compensating:inventory.Release", "Timeline", "started",
        "data {\"address\":\"1 Main St\"", "message_in", "payment.Declined",
        "{\"reason\":\"insufficient funds\"}", "Initial -> awaiting:inventory.Reserve",
        "awaiting:payment.Charge -> compensating:inventory.Release",
        "compensation, to inventory, sent 2x, timed out", "timed_out",
        "no reply to inventory.Release", "+150ms", "Commands", "Data now",
        "\"reservation_id\": \"res-3\""})
    EXPECT_NE(r.out.find(expected), std::string::npos) << expected << "\n" << r.out;

  Result running = ctl({"show", scenario->running_old});
  EXPECT_NE(running.out.find("to payment, sent 3x, awaiting reply"), std::string::npos)
      << running.out;
}

TEST_F(SagactlTest, ShowJsonHasTheTimelineCommandsAndDeadLetters) {
  json shown = parse(ctl({"show", scenario->compensated, "--json"}));
  EXPECT_EQ(shown["saga"]["status"], "Compensated");
  EXPECT_EQ(shown["saga"]["data"]["order_id"], "order-2");
  const auto& timeline = shown["timeline"];
  ASSERT_FALSE(timeline.empty());
  EXPECT_EQ(timeline[0]["kind"], "started");
  EXPECT_EQ(timeline[0]["payload"]["order_id"], "order-2");
  std::vector<std::string> in, out;
  for (const auto& entry : timeline) {
    if (entry["kind"] == "message_in") in.push_back(entry["message_type"]);
    if (entry["kind"] == "message_out") out.push_back(entry["message_type"]);
    EXPECT_GE(entry["since_previous_seconds"].get<double>(), 0.0);
  }
  EXPECT_EQ(in, (std::vector<std::string>{"inventory.Reserved", "payment.Declined",
                                          "inventory.Released"}));
  EXPECT_EQ(out,
            (std::vector<std::string>{"inventory.Reserve", "payment.Charge", "inventory.Release"}));
  ASSERT_EQ(shown["commands"].size(), 3u);
  EXPECT_EQ(shown["commands"][2]["compensation"], true);
  EXPECT_EQ(shown["commands"][2]["state"], "done");
  ASSERT_EQ(shown["dead_letters"].size(), 1u);
  EXPECT_EQ(shown["dead_letters"][0]["reason_code"], "unexpected");
}

// Saga ids are time-ordered: the sagas of one run share their first characters, and the last
// ones are random.
TEST_F(SagactlTest, ShowAcceptsAUniquePrefixOrSuffixAndRefusesUnknownOrAmbiguousIds) {
  const std::string& id = scenario->completed_old;
  Result by_suffix = ctl({"show", id.substr(id.size() - 8), "--json"});
  ASSERT_EQ(by_suffix.code, 0) << by_suffix.err;
  EXPECT_EQ(parse(by_suffix)["saga"]["id"], id);
  Result by_prefix = ctl({"show", id.substr(0, 30), "--json"});
  ASSERT_EQ(by_prefix.code, 0) << by_prefix.err;
  EXPECT_EQ(parse(by_prefix)["saga"]["id"], id);

  Result ambiguous = ctl({"show", id.substr(0, 4)});
  EXPECT_EQ(ambiguous.code, 1);
  EXPECT_NE(ambiguous.err.find("matches several sagas"), std::string::npos) << ambiguous.err;

  Result missing = ctl({"show", "no-such-saga"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "sagactl: no saga no-such-saga\n");
  EXPECT_TRUE(missing.out.empty());
}

// What the engine's renderer draws for a saga over its definition: sagactl must print exactly this.
std::string engine_picture(saga::Store& store, const std::string& id, bool mermaid) {
  saga::Graph graph = saga::make_saga_type<order::OrderSaga>()->graph();
  saga::Path path = saga::path_from_journal(store.journal(id).value());
  path.instance = id;
  path.current = store.load_saga(id).value()->state;
  return mermaid ? saga::to_mermaid(graph, &path) : saga::to_dot(graph, &path);
}

TEST_F(SagactlTest, ShowDrawsTheSagaOverItsFullDefinitionWithTheEnginesRenderer) {
  Result dot = ctl({"show", scenario->compensated, "--dot"});
  ASSERT_EQ(dot.code, 0) << dot.err;
  EXPECT_EQ(dot.err, "") << "the stored definition was used";
  EXPECT_EQ(dot.out, engine_picture(*orchestrator->store, scenario->compensated, false));
  // States of the definition the saga never reached are drawn too.
  for (const char* expected :
       {"\n  \"awaiting:shipping.Ship\" [label=\"awaiting:shipping.Ship\\n(pivot)\"",
        "\n  \"compensating:payment.Refund\" [", "\n  \"Completed\" [",
        "\n  \"Compensated\" [style=\"rounded,filled\", fillcolor=\"gold\""})
    EXPECT_NE(dot.out.find(expected), std::string::npos) << expected << "\n" << dot.out;
  // The path is highlighted: taken edges numbered, bold and blue; the others grey.
  for (const char* expected :
       {"[label=\"(1) Begin\\nsend inventory.Reserve to inventory\", color=\"blue3\"",
        "[label=\"(2) inventory.Reserved\\nsend payment.Charge to payment\", color=\"blue3\"",
        "[label=\"(3) payment.Declined\\ncompensate inventory.Release to inventory\", "
        "style=\"dashed\", color=\"blue3\"",
        "[label=\"(4) inventory.Released\", style=\"dashed\", color=\"blue3\"",
        "[label=\"payment.Charged\\nsend shipping.Ship to shipping\", color=\"gray70\""})
    EXPECT_NE(dot.out.find(expected), std::string::npos) << expected << "\n" << dot.out;

  Result mermaid = ctl({"show", scenario->compensated, "--mermaid"});
  ASSERT_EQ(mermaid.code, 0) << mermaid.err;
  EXPECT_EQ(mermaid.out, engine_picture(*orchestrator->store, scenario->compensated, true));
  for (const char* expected :
       {"stateDiagram-v2\n", "  state \"awaiting:shipping.Ship (pivot)\" as s5\n",
        "  s0 --> s1 : (1) Begin / send inventory.Reserve to inventory\n",
        "  s2 --> s5 : payment.Charged / send shipping.Ship to shipping\n", "  class s3 current\n"})
    EXPECT_NE(mermaid.out.find(expected), std::string::npos) << expected << "\n" << mermaid.out;

  Result failed = ctl({"show", scenario->failed, "--dot"});
  ASSERT_EQ(failed.code, 0) << failed.err;
  EXPECT_EQ(failed.out, engine_picture(*orchestrator->store, scenario->failed, false));
  for (const char* expected :
       {"label=\"compensating:inventory.Release\\n(parked as Failed)\", style=\"rounded,filled\", "
        "fillcolor=\"lightpink\", color=\"red3\"",
        "  \"compensating:inventory.Release\" -> \"compensating:inventory.Release\" "
        "[label=<<font color=\"red3\">(4) parked as Failed</font>>, style=\"dashed\", "
        "color=\"red3\""})
    EXPECT_NE(failed.out.find(expected), std::string::npos) << expected << "\n" << failed.out;

  Result both = ctl({"show", scenario->compensated, "--dot", "--mermaid"});
  EXPECT_EQ(both.code, 2);
}

TEST_F(SagactlTest, DotOutputRendersWithGraphviz) {
  // graphviz is installed by `make deps` (the Makefile's package list).
  for (const auto& id :
       {scenario->completed_old, scenario->compensated, scenario->failed, scenario->running_old}) {
    std::string command = std::string(SAGACTL_PATH) + " --db '" + *db + "' show " + id +
                          " --dot | /usr/bin/dot -Tsvg -o /dev/null";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
}

TEST_F(SagactlTest, TraceListsEveryMessageOfACorrelationInOrder) {
  json trace = parse(ctl({"trace", scenario->completed_old, "--json"}));
  ASSERT_EQ(trace["sagas"].size(), 1u);
  std::vector<std::string> flow;
  for (const auto& message : trace["messages"])
    flow.push_back(message["direction"].get<std::string>() + " " +
                   message["kind"].get<std::string>() + " " +
                   message["message_type"].get<std::string>());
  EXPECT_EQ(flow, (std::vector<std::string>{
                      "out message_out inventory.Reserve", "in message_in inventory.Reserved",
                      "out message_out payment.Charge", "in message_in payment.Charged",
                      "out message_out shipping.Ship", "in message_in shipping.Shipped",
                      "in duplicate shipping.Shipped"}));
  // A command names the reply that caused it.
  EXPECT_EQ(trace["messages"][2]["causation_id"], trace["messages"][1]["message_id"]);
  EXPECT_EQ(trace["messages"][0]["peer"], "inventory");

  Result table = ctl({"trace", scenario->completed_old});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("CAUSED BY"), std::string::npos);
  EXPECT_NE(table.out.find("7 messages across 1 saga"), std::string::npos) << table.out;
}

TEST_F(SagactlTest, TraceShowsAMessageThatWasDeadLetteredOnceWithItsReason) {
  json trace = parse(ctl({"trace", scenario->compensated, "--json"}));
  std::vector<std::string> kinds;
  for (const auto& message : trace["messages"]) kinds.push_back(message["kind"]);
  ASSERT_EQ(kinds.size(), 7u);
  EXPECT_EQ(kinds.back(), "dead_letter");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "unexpected"), 0);
  EXPECT_EQ(trace["messages"].back()["detail"].get<std::string>().rfind("unexpected: ", 0), 0u);
}

TEST_F(SagactlTest, TraceShowsDeadLettersOfACorrelationWithoutSaga) {
  json trace = parse(ctl({"trace", scenario->unknown_correlation, "--json"}));
  EXPECT_TRUE(trace["sagas"].empty());
  ASSERT_EQ(trace["messages"].size(), 1u);
  EXPECT_EQ(trace["messages"][0]["kind"], "dead_letter");
  Result missing = ctl({"trace", "nothing-here"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("no saga and no message with correlation id nothing-here"),
            std::string::npos);
}

TEST_F(SagactlTest, DeadLettersAreListedAndFilteredByReason) {
  json all = parse(ctl({"dead-letters", "--json"}));
  ASSERT_EQ(all["total"], 3);
  std::set<std::string> reasons;
  for (const auto& letter : all["dead_letters"]) reasons.insert(letter["reason_code"]);
  EXPECT_EQ(reasons, (std::set<std::string>{"not_json", "unknown_saga", "unexpected"}));
  for (const char* field :
       {"id", "at", "reason_code", "reason", "message_id", "message_type", "saga_id", "raw_size",
        "raw_kept", "truncated", "state", "replayed_at", "discarded_at"})
    EXPECT_TRUE(all["dead_letters"][0].contains(field)) << field;

  json not_json = parse(ctl({"dead-letters", "--reason", "not_json", "--json"}));
  ASSERT_EQ(not_json["dead_letters"].size(), 1u);

  Result table = ctl({"dead-letters"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("ID ", 0), 0u);
  EXPECT_NE(table.out.find("3 of 3 open dead letters"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";

  Result none = ctl({"dead-letters", "--reason", "too_large"});
  EXPECT_EQ(none.out, "no open dead letters match\n");
}

TEST_F(SagactlTest, DeadLetterShowPrintsEveryFieldAndTheBytesSafely) {
  json not_json = parse(ctl({"dead-letters", "--reason", "not_json", "--json"}));
  std::string id = std::to_string(not_json["dead_letters"][0]["id"].get<std::int64_t>());
  Result r = ctl({"dead-letters", "show", id});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";
  for (const char* expected :
       {"Reason code        not_json", "State              open", "Size               22 bytes",
        "Envelope           does not decode", "not json \\x1b[31mred\\x1b[0m\\n"})
    EXPECT_NE(r.out.find(expected), std::string::npos) << expected << "\n" << r.out;

  json shown = parse(ctl({"dead-letters", "show", id, "--json"}));
  EXPECT_EQ(shown["raw_base64"], "bm90IGpzb24gG1szMW1yZWQbWzBtCg==");
  EXPECT_EQ(shown["raw_text"], "not json \x1b[31mred\x1b[0m\n");
  EXPECT_EQ(shown["envelope_error"]["code"], "not_json");

  Result raw = ctl({"dead-letters", "show", id, "--raw"});
  EXPECT_EQ(raw.out, "not json \x1b[31mred\x1b[0m\n");

  json unexpected = parse(ctl({"dead-letters", "--reason", "unexpected", "--json"}));
  std::string json_id = std::to_string(unexpected["dead_letters"][0]["id"].get<std::int64_t>());
  Result envelope = ctl({"dead-letters", "show", json_id});
  EXPECT_NE(envelope.out.find("Raw bytes (JSON, indented"), std::string::npos) << envelope.out;
  EXPECT_NE(envelope.out.find("\"reservation_id\": \"res-late\""), std::string::npos);
  EXPECT_NE(envelope.out.find("(order, Compensated)"), std::string::npos);

  EXPECT_EQ(ctl({"dead-letters", "show", "9999"}).code, 1);
  Result bad = ctl({"dead-letters", "show", "seven"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.err, "sagactl: a dead-letter id is a positive number, not 'seven'\n");
}

TEST_F(SagactlTest, StatsCountsByStatusAndTypeWithOutboxAndDeadLetterDepth) {
  json stats = parse(ctl({"stats", "--json"}));
  EXPECT_EQ(stats["sagas"]["total"], 6);
  EXPECT_EQ(stats["sagas"]["by_status"], (json{{"Running", 2},
                                               {"Compensating", 0},
                                               {"Completed", 2},
                                               {"Compensated", 1},
                                               {"Failed", 1}}));
  ASSERT_EQ(stats["sagas"]["by_type"].size(), 1u);
  EXPECT_EQ(stats["sagas"]["by_type"][0]["type"], "order");
  EXPECT_EQ(stats["sagas"]["by_type"][0]["total"], 6);
  EXPECT_EQ(stats["oldest_in_flight"]["id"], scenario->running_old);
  EXPECT_GT(stats["oldest_in_flight"]["age_seconds"].get<double>(), 2 * 3600);
  EXPECT_EQ(stats["outbox"]["open"], 2);
  EXPECT_EQ(stats["outbox"]["resent"], 1);  // the payment sent 3x
  EXPECT_EQ(stats["dead_letters"]["open"], 3);
  EXPECT_EQ(stats["dead_letters"]["total"], 3);
  EXPECT_EQ(stats["dead_letters"]["open_by_reason"]["not_json"], 1);

  Result table = ctl({"stats"});
  ASSERT_EQ(table.code, 0) << table.err;
  for (const char* expected :
       {"Sagas              6 (Running 2, Compensating 0, Completed 2, Compensated 1, Failed 1)",
        "Oldest in flight", "Outbox             2 awaiting reply (oldest ", ", 1 of them re-sent",
        "Dead letters       3 open", "TYPE   RUNNING  COMPENSATING  COMPLETED  COMPENSATED",
        "order        2             0          2            1       1      6"})
    EXPECT_NE(table.out.find(expected), std::string::npos) << expected << "\n" << table.out;
}

TEST_F(SagactlTest, BadArgumentsGetOneLineAndExitCode2) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"--db", *db, "list", "--status", "stuck"}, "--status: 'stuck' is not a status"},
      {{"--db", *db, "list", "--older-than", "10x"}, "--older-than: '10x' is not an age"},
      {{"--db", *db, "list", "--limit", "-3"}, "--limit"},
      {{"--db", *db, "list", "--no-such-flag"}, "no-such-flag"},
      {{"--db", *db, "frobnicate"}, "frobnicate"},
      {{"--db", *db}, "subcommand"},
      {{"--db", *db, "show"}, "id"},
      {{"--db", *db, "resolve", scenario->failed, "--as", "done", "--note", "x"}, "--as"},
      {{"--db", *db, "resolve", scenario->failed, "--as", "completed"}, "--note"},
      {{"--db", *db, "retry", scenario->failed, "--wait", "-1"}, "--wait"},
      {{"list"}, "no database: pass --db PATH or set SAGA_DB"},
  };
  for (const auto& c : cases) {
    Result r = run_sagactl(c.args);
    EXPECT_EQ(r.code, 2) << c.args.back() << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("sagactl: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.message << " in " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(SagactlTest, HelpIsEverywhereAndDocumentsTheExitCodes) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--help"},
                                             {"list", "--help"},
                                             {"show", "--help"},
                                             {"trace", "--help"},
                                             {"dead-letters", "--help"},
                                             {"dead-letters", "show", "--help"},
                                             {"dead-letters", "retry", "--help"},
                                             {"dead-letters", "discard", "--help"},
                                             {"retry", "--help"},
                                             {"resolve", "--help"},
                                             {"stats", "--help"},
                                             {"requests", "--help"}}) {
    Result r = run_sagactl(args);
    EXPECT_EQ(r.code, 0) << args.front();
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("4  operator request queued but not applied within --wait"),
              std::string::npos)
        << r.out;
  }
  EXPECT_NE(run_sagactl({"resolve", "--help"}).out.find("--as"), std::string::npos);
}

TEST_F(SagactlTest, DatabaseComesFromSagaDbAndAMissingOrForeignFileIsExit3) {
  Result from_env = run_sagactl({"stats", "--json"}, *db);
  EXPECT_EQ(from_env.code, 0) << from_env.err;
  EXPECT_EQ(parse(from_env)["sagas"]["total"], 6);

  Result missing = run_sagactl({"--db", (*directory / "nope.db").string(), "list"});
  EXPECT_EQ(missing.code, 3);
  EXPECT_NE(missing.err.find("nope.db does not exist"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(*directory / "nope.db")) << "sagactl created a file";

  auto foreign = *directory / "notes.txt";
  std::ofstream(foreign) << "this is not a database, it is a text file of some length.....\n";
  Result not_a_db = run_sagactl({"--db", foreign.string(), "list"});
  EXPECT_EQ(not_a_db.code, 3);
  EXPECT_NE(not_a_db.err.find("not a database"), std::string::npos) << not_a_db.err;
  EXPECT_EQ(count_lines(not_a_db.err), 1u);

  auto empty = *directory / "empty.db";
  sqlite3* handle = nullptr;
  sqlite3_open(empty.string().c_str(), &handle);
  sqlite3_exec(handle, "CREATE TABLE t (x)", nullptr, nullptr, nullptr);
  sqlite3_close(handle);
  Result no_schema = run_sagactl({"--db", empty.string(), "stats"});
  EXPECT_EQ(no_schema.code, 3);
  EXPECT_NE(no_schema.err.find("is not a saga database"), std::string::npos) << no_schema.err;
}

TEST_F(SagactlTest, ReadCommandsNeverWriteTheDatabase) {
  auto before = std::filesystem::last_write_time(*db);
  auto size = std::filesystem::file_size(*db);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"list"}, {"stats"}, {"show", scenario->failed}, {"dead-letters"}})
    EXPECT_EQ(ctl(args).code, 0);
  EXPECT_EQ(std::filesystem::last_write_time(*db), before);
  EXPECT_EQ(std::filesystem::file_size(*db), size);
}

// Operator requests, on a database of their own with no orchestrator attached: sagactl queues the
// request and waits; a stand-in for the engine answers it, so each answer can be chosen. The
// end-to-end tests below have a real engine answer.
class SagactlRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory = std::filesystem::temp_directory_path() /
                ("sagactl-request-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory);
    std::filesystem::create_directories(directory);
    db = (directory / "orchestrator.db").string();
    {
      Orchestrator orchestrator(db);
      scenario = run_scenario(orchestrator);
    }
  }
  void TearDown() override {
    if (std::getenv("SAGACTL_TEST_KEEP") != nullptr)
      std::cout << "kept the database: " << db << "\n";
    else
      std::filesystem::remove_all(directory);
  }

  Result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--db", db});
    return run_sagactl(args);
  }

  struct Row {
    std::string action, target, status, note, requested_by;
    bool done = false;
  };
  std::vector<Row> requests() {
    sqlite3* handle = nullptr;
    sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(handle,
                       "SELECT action, target, status, note, requested_by, done_at IS NOT NULL "
                       "FROM operator_requests ORDER BY id",
                       -1, &stmt, nullptr);
    std::vector<Row> rows;
    const auto text = [&](int column) {
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, column)));
    };
    while (sqlite3_step(stmt) == SQLITE_ROW)
      rows.push_back(
          {text(0), text(1), text(2), text(3), text(4), sqlite3_column_int(stmt, 5) != 0});
    sqlite3_finalize(stmt);
    sqlite3_close(handle);
    return rows;
  }

  // Stands in for the engine: answers the first request it finds queued.
  std::thread answer_next_request(bool ok, std::string result) {
    return std::thread([this, ok, result] {
      sqlite3* handle = nullptr;
      sqlite3_open(db.c_str(), &handle);
      sqlite3_busy_timeout(handle, 5000);
      sqlite3_stmt* stmt = nullptr;
      sqlite3_prepare_v2(handle,
                         "UPDATE operator_requests SET done_at = 1, ok = ?1, result = ?2 WHERE id "
                         "= (SELECT min(id) FROM operator_requests WHERE done_at IS NULL)",
                         -1, &stmt, nullptr);
      auto deadline = std::chrono::steady_clock::now() + 20s;
      while (std::chrono::steady_clock::now() < deadline) {
        sqlite3_bind_int(stmt, 1, ok ? 1 : 0);
        sqlite3_bind_text(stmt, 2, result.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
        if (sqlite3_changes(handle) > 0) break;
        std::this_thread::sleep_for(5ms);  // polling for sagactl's insert, not a timeout
      }
      sqlite3_finalize(stmt);
      sqlite3_close(handle);
    });
  }

  std::filesystem::path directory;
  std::string db;
  Scenario scenario;
};

TEST_F(SagactlRequestTest, RetryQueuesARequestAndReportsTheEnginesAnswer) {
  std::thread engine = answer_next_request(true, "saga retried: inventory.Release sent again");
  Result r = ctl(
      {"retry", scenario.failed.substr(scenario.failed.size() - 8), "--note", "inventory is back"});
  engine.join();
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "request 1 applied: saga retried: inventory.Release sent again\n");
  auto rows = requests();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].action, "retry");
  EXPECT_EQ(rows[0].target, scenario.failed) << "the full id, not the prefix";
  EXPECT_EQ(rows[0].note, "inventory is back");
  EXPECT_EQ(rows[0].requested_by.rfind("sagactl ", 0), 0u) << rows[0].requested_by;
  EXPECT_NE(rows[0].requested_by.find('@'), std::string::npos);
}

TEST_F(SagactlRequestTest, ARefusalIsExit1WithTheEnginesReason) {
  std::thread engine = answer_next_request(false, "saga was parked by a failure");
  Result r = ctl(
      {"resolve", scenario.failed, "--as", "Compensated", "--note", "refunded by hand", "--json"});
  engine.join();
  EXPECT_EQ(r.code, 1);
  json answer = parse(r);
  EXPECT_EQ(answer["state"], "refused");
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["result"], "saga was parked by a failure");
  auto rows = requests();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].action, "resolve");
  EXPECT_EQ(rows[0].status, "Compensated");
  EXPECT_EQ(rows[0].note, "refunded by hand");

  std::thread again = answer_next_request(false, "no");
  Result table = ctl({"retry", scenario.failed});
  again.join();
  EXPECT_EQ(table.code, 1);
  EXPECT_EQ(table.err, "sagactl: request 2 refused: no\n");
}

TEST_F(SagactlRequestTest, WithoutAnOrchestratorTheRequestStaysQueuedAndExitIs4) {
  Result r = ctl({"retry", scenario.failed, "--wait", "0"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_EQ(r.out, "retry of saga " + scenario.failed +
                       " queued as request 1; it is applied when an orchestrator runs on this "
                       "database (sagactl requests)\n");
  Result waited = ctl({"dead-letters", "retry", "1", "--wait", "0.2", "--json"});
  EXPECT_EQ(waited.code, 4);
  json queued = parse(waited);
  EXPECT_EQ(queued["state"], "queued");
  EXPECT_EQ(queued["request_id"], 2);
  EXPECT_EQ(queued["ok"], nullptr);
  EXPECT_EQ(ctl({"dead-letters", "discard", "2", "--wait", "0"}).code, 4);
  auto rows = requests();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].action, "replay_dead_letter");
  EXPECT_EQ(rows[1].target, "1");
  EXPECT_EQ(rows[2].action, "discard_dead_letter");
  EXPECT_EQ(rows[2].target, "2");
  EXPECT_FALSE(rows[2].done);

  json listed = parse(ctl({"requests", "--pending", "--json"}));
  EXPECT_EQ(listed["count"], 3);
  EXPECT_EQ(listed["operator_requests"][0]["state"], "queued");
  Result table = ctl({"requests"});
  EXPECT_NE(table.out.find("discard_dead_letter"), std::string::npos) << table.out;
  json stats = parse(ctl({"stats", "--json"}));
  EXPECT_EQ(stats["operator_requests"]["queued"], 3);
}

TEST_F(SagactlRequestTest, RequestsThatCannotApplyAreRefusedBeforeTheyAreQueued) {
  Result running = ctl({"retry", scenario.running_old});
  EXPECT_EQ(running.code, 1);
  EXPECT_EQ(running.err, "sagactl: saga " + scenario.running_old +
                             " is Running, not Failed; only a Failed saga can be retried\n");
  Result completed = ctl({"resolve", scenario.completed_old, "--as", "completed", "--note", "x"});
  EXPECT_EQ(completed.code, 1);
  EXPECT_EQ(ctl({"retry", "no-such-saga"}).code, 1);
  EXPECT_EQ(ctl({"dead-letters", "retry", "99"}).code, 1);
  EXPECT_TRUE(requests().empty());
}

TEST_F(SagactlRequestTest, ADatabaseWithoutTheRequestsTableIsExit3) {
  // A database of schema version 4 or older has no operator_requests table.
  sqlite3* handle = nullptr;
  sqlite3_open(db.c_str(), &handle);
  sqlite3_exec(handle, "DROP TABLE operator_requests", nullptr, nullptr, nullptr);
  sqlite3_close(handle);
  Result r = ctl({"retry", scenario.failed});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("has no operator_requests table"), std::string::npos) << r.err;
}

// `show --dot` on databases where the definition's graph cannot be used: the graph is built from
// the journal alone, and a note on stderr says why.
using SagactlPictureTest = SagactlRequestTest;

TEST_F(SagactlPictureTest, WithoutTheStoredDefinitionTheJournalAloneIsDrawn) {
  const auto execute = [&](const std::string& sql) {
    sqlite3* handle = nullptr;
    sqlite3_open(db.c_str(), &handle);
    EXPECT_EQ(sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql;
    sqlite3_close(handle);
  };
  const auto check_journal_only = [&](const std::string& why) {
    Result dot = ctl({"show", scenario.failed, "--dot"});
    ASSERT_EQ(dot.code, 0) << dot.err;
    EXPECT_NE(dot.err.find(why), std::string::npos) << dot.err;
    EXPECT_NE(dot.err.find("drawing only what this saga went through"), std::string::npos);
    EXPECT_EQ(dot.out.rfind("digraph \"order\" {", 0), 0u) << dot.out;
    for (const char* expected :
         {"  \"Initial\" [shape=\"circle\"",
          "[label=\"(1) Begin\\nsend inventory.Reserve to inventory\", color=\"blue3\"",
          "[label=\"(3) payment.Declined\\ncompensate inventory.Release to inventory\", "
          "style=\"dashed\", color=\"blue3\"",
          "label=\"compensating:inventory.Release\\n(parked as Failed)\"",
          "[label=<<font color=\"red3\">(4) parked as Failed</font>>"})
      EXPECT_NE(dot.out.find(expected), std::string::npos) << expected << "\n" << dot.out;
    for (const char* absent : {"awaiting:shipping.Ship", "Completed", "gray70"})
      EXPECT_EQ(dot.out.find(absent), std::string::npos) << absent << "\n" << dot.out;
    Result mermaid = ctl({"show", scenario.failed, "--mermaid"});
    ASSERT_EQ(mermaid.code, 0) << mermaid.err;
    EXPECT_NE(mermaid.out.find("  s3 --> s3 : (4) parked as Failed\n"), std::string::npos)
        << mermaid.out;
  };

  execute("UPDATE saga_definitions SET graph = 'not json'");
  check_journal_only("the stored graph of order version 1 cannot be read");
  execute(
      "UPDATE saga_definitions SET graph = '{\"format\": 1, \"saga\": \"order\", \"version\": 1, "
      "\"states\": [{\"name\": \"Initial\", \"kind\": \"initial\", \"pivot\": false, "
      "\"after_pivot\": false}], \"edges\": []}'");
  check_journal_only(
      "the stored graph of order version 1 has no state 'compensating:inventory.Release'");
  execute("DELETE FROM saga_definitions");
  check_journal_only("no graph of order version 1 in saga_definitions");
  // A database of schema version 5 or older has no saga_definitions table.
  execute("DROP TABLE saga_definitions");
  check_journal_only("the database has no saga_definitions table");
}

TEST_F(SagactlPictureTest, AGuardNameFromTheDatabaseReachesTheTerminalEscaped) {
  sqlite3* handle = nullptr;
  sqlite3_open(db.c_str(), &handle);
  const char* sql =
      "UPDATE saga_definitions SET graph = json_set(graph, '$.edges[2].guarded', json('true'), "
      "'$.edges[2].guard', char(27) || '[31mred')";
  ASSERT_EQ(sqlite3_exec(handle, sql, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(handle);
  for (const char* format : {"--dot", "--mermaid"}) {
    Result picture = ctl({"show", scenario.failed, format});
    ASSERT_EQ(picture.code, 0) << picture.err;
    EXPECT_EQ(picture.err, "") << "the stored definition was used";
    EXPECT_EQ(picture.out.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";
    EXPECT_NE(picture.out.find("[31mred"), std::string::npos) << picture.out;
  }
}

// The orchestrator of a real deployment: an engine loop running on its own thread with the
// system clock, polling operator_requests every 10 ms.
class RunningEngine {
 public:
  explicit RunningEngine(const std::string& path) {
    saga::Options options;
    options.store.path = path;
    options.store.durability = saga::Durability::off;
    options.idle_wait = 5ms;
    options.operator_poll_interval = 10ms;
    options.compensation_retry = {60s, 1.0, 60s, 0.0, 0};
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
    loop = std::thread([this] { engine->run(); });
  }
  ~RunningEngine() {
    engine->stop();
    loop.join();
  }

  // The first command of `type` the engine sends within 10 s.
  std::optional<saga::test::SentCommand> sent(const std::string& type) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& command : take_commands(transport))
        if (command.envelope.event_type == type) return command;
      std::this_thread::sleep_for(5ms);  // waiting for the engine's next send, not a timeout
    }
    return std::nullopt;
  }

  saga::SystemClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::thread loop;
};

using SagactlEndToEndTest = SagactlRequestTest;

TEST_F(SagactlEndToEndTest, RetryIsAppliedByTheRunningOrchestratorAndTheSagaCarriesOn) {
  RunningEngine orchestrator(db);
  Result r = ctl({"retry", scenario.failed, "--note", "inventory service is back", "--wait", "20"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "request 1 applied: saga " + scenario.failed +
                       " retried: inventory.Release sent again\n");
  auto release = orchestrator.sent("inventory.Release");
  ASSERT_TRUE(release.has_value()) << "the retried compensation was not sent";
  EXPECT_EQ(release->envelope.correlation_id, scenario.failed);

  orchestrator.transport.deliver(
      reply_bytes(release->envelope, "inventory.Released", {{"reservation_id", "res-3"}}));
  json shown;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       std::chrono::steady_clock::now() < deadline;) {
    shown = parse(ctl({"show", scenario.failed, "--json"}));
    if (shown["saga"]["status"] == "Compensated") break;
    std::this_thread::sleep_for(10ms);  // waiting for the engine to apply the reply
  }
  EXPECT_EQ(shown["saga"]["status"], "Compensated");
  bool retried = false;
  for (const auto& entry : shown["timeline"])
    retried |= entry["detail"] == "Compensating: retried by an operator";
  EXPECT_TRUE(retried) << shown["timeline"].dump(2);
  ASSERT_EQ(shown["operator_requests"].size(), 1u);
  EXPECT_EQ(shown["operator_requests"][0]["state"], "applied");
  EXPECT_EQ(shown["operator_requests"][0]["note"], "inventory service is back");
  Result dot = ctl({"show", scenario.failed, "--dot"});
  for (const char* expected :
       {"[label=<<font color=\"red3\">(4) parked as Failed</font><br/><font "
        "color=\"purple3\">(5) operator retry<br/>send inventory.Release</font>>, "
        "style=\"dashed\", color=\"purple3\"",
        "[label=\"(6) inventory.Released\", style=\"dashed\", color=\"blue3\"",
        "\"Compensated\" [style=\"rounded,filled\", fillcolor=\"gold\""})
    EXPECT_NE(dot.out.find(expected), std::string::npos) << expected << "\n" << dot.out;
}

TEST_F(SagactlEndToEndTest, ResolveDiscardAndARefusedReplayThroughTheRunningOrchestrator) {
  RunningEngine orchestrator(db);
  Result resolved = ctl({"resolve", scenario.failed.substr(scenario.failed.size() - 8), "--as",
                         "compensated", "--note", "released res-3 by hand"});
  ASSERT_EQ(resolved.code, 0) << resolved.err;
  EXPECT_EQ(resolved.out,
            "request 1 applied: saga " + scenario.failed + " resolved as Compensated\n");
  Result shown = ctl({"show", scenario.failed});
  EXPECT_NE(shown.out.find("Status             Compensated"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("Compensated: resolved by an operator: released res-3 by hand"),
            std::string::npos)
      << shown.out;

  json letters = parse(ctl({"dead-letters", "--json"}));
  std::map<std::string, std::string> by_reason;
  for (const auto& letter : letters["dead_letters"])
    by_reason[letter["reason_code"]] = std::to_string(letter["id"].get<std::int64_t>());
  Result discarded = ctl({"dead-letters", "discard", by_reason["not_json"], "--json"});
  ASSERT_EQ(discarded.code, 0) << discarded.err;
  EXPECT_EQ(parse(discarded)["result"], "dead letter " + by_reason["not_json"] + " discarded");
  EXPECT_EQ(parse(ctl({"dead-letters", "--json"}))["total"], 2);
  Result all = ctl({"dead-letters", "--all"});
  EXPECT_NE(all.out.find("discarded"), std::string::npos) << all.out;

  // The late reply to a compensated saga is still unexpected: the engine refuses the replay.
  Result replay = ctl({"dead-letters", "retry", by_reason["unexpected"]});
  EXPECT_EQ(replay.code, 1);
  EXPECT_NE(replay.err.find("sagactl: request 3 refused: dead letter " + by_reason["unexpected"] +
                            " was refused again"),
            std::string::npos)
      << replay.err;
  Result again = ctl({"dead-letters", "discard", by_reason["not_json"]});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("was already discarded"), std::string::npos) << again.err;

  json requests = parse(ctl({"requests", "--json"}));
  std::vector<std::string> states;
  for (const auto& request : requests["operator_requests"]) states.push_back(request["state"]);
  EXPECT_EQ(states, (std::vector<std::string>{"refused", "applied", "applied"}));
  EXPECT_EQ(parse(ctl({"stats", "--json"}))["operator_requests"]["queued"], 0);
}

TEST(SagactlTrace, FollowsOneCorrelationAcrossSagas) {
  auto directory =
      std::filesystem::temp_directory_path() / ("sagactl-trace-" + std::to_string(::getpid()));
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  std::string db = (directory / "orchestrator.db").string();
  std::string first, second;
  {
    Orchestrator o(db);
    first =
        o.drive("order-a", {{"inventory.Reserved", {{"reservation_id", "res-a"}}}}, "request-42");
    second =
        o.drive("order-b", {{"inventory.OutOfStock", {{"sku", "sku-lamp"}, {"reason", "0 left"}}}},
                "request-42");
    o.drive("order-c", {});
  }
  Result r = run_sagactl({"--db", db, "trace", "request-42", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json trace = parse(r);
  EXPECT_EQ(ids(trace["sagas"]), (std::vector<std::string>{first, second}));
  std::vector<std::string> flow;
  for (const auto& message : trace["messages"])
    flow.push_back((message["saga_id"] == first ? "a " : "b ") +
                   message["message_type"].get<std::string>());
  EXPECT_EQ(flow, (std::vector<std::string>{"a inventory.Reserve", "a inventory.Reserved",
                                            "a payment.Charge", "b inventory.Reserve",
                                            "b inventory.OutOfStock"}));
  Result table = run_sagactl({"--db", db, "trace", "request-42"});
  EXPECT_NE(table.out.find("5 messages across 2 sagas"), std::string::npos) << table.out;
  json listed = parse(run_sagactl({"--db", db, "list", "--json"}));
  EXPECT_EQ(listed["sagas"][2]["correlation_id"], "request-42");
  std::filesystem::remove_all(directory);
}

// sagactl reads while an engine commits on another thread, as it would beside a running
// orchestrator: every read succeeds and sees a consistent snapshot.
TEST(SagactlConcurrency, ReadsSucceedWhileTheEngineCommits) {
  auto directory =
      std::filesystem::temp_directory_path() / ("sagactl-concurrent-" + std::to_string(::getpid()));
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  std::string db = (directory / "orchestrator.db").string();
  {
    saga::Options options;
    options.store.path = db;
    options.store.durability = saga::Durability::off;
    options.idle_wait = 1ms;
    auto store = std::move(saga::SqliteStore::open(options.store).value());
    saga::MemoryTransport transport;
    saga::SystemClock clock;
    saga::Engine engine(options, *store, transport, clock);
    engine.register_saga<order::OrderSaga>();
    std::thread loop([&] { engine.run(); });
    std::atomic<bool> done{false};
    std::thread starter([&] {
      for (int i = 0; i < 300 && !done; ++i)
        engine.start<order::OrderSaga>({"o-" + std::to_string(i), "c", "a", {{"s", 1, 1}}});
    });
    std::int64_t last_total = 0;
    for (int i = 0; i < 8; ++i) {
      Result r = run_sagactl({"--db", db, "stats", "--json"});
      ASSERT_EQ(r.code, 0) << r.err;
      json stats = parse(r);
      std::int64_t total = stats["sagas"]["total"];
      std::int64_t by_status = 0;
      for (const auto& [status, n] : stats["sagas"]["by_status"].items())
        by_status += n.get<std::int64_t>();
      EXPECT_EQ(total, by_status);
      EXPECT_GE(total, last_total);
      last_total = total;
      EXPECT_EQ(run_sagactl({"--db", db, "list", "--limit", "5"}).code, 0);
    }
    done = true;
    starter.join();
    engine.stop();
    loop.join();
  }
  std::filesystem::remove_all(directory);
}

}  // namespace
