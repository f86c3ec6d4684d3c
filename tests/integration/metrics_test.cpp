// The engine's metrics, scraped over HTTP from saga::MetricsHttpServer with cpp-httplib's client,
// during a run and after it, and checked against what the test sent: one block per family.
#include <httplib.h>

#include <gtest/gtest.h>

#include <unistd.h>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/log.hpp"
#include "saga/memory_transport.hpp"
#include "saga/metrics.hpp"
#include "saga/metrics_http.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using Labels = std::map<std::string, std::string>;

// --- A small parser for the text exposition format -------------------------------------------

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

struct Scrape {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram
  std::map<std::string, std::string> helps;

  std::optional<double> find(std::string_view name, const Labels& labels = {}) const {
    for (const auto& sample : samples)
      if (sample.name == name && sample.labels == labels) return sample.value;
    return std::nullopt;
  }
  // The value of a series that must exist.
  double operator()(std::string_view name, const Labels& labels = {}) const {
    auto found = find(name, labels);
    if (!found) {
      std::string text;
      for (const auto& [key, value] : labels) text += key + "=" + value + " ";
      ADD_FAILURE() << "no series " << name << " {" << text << "}";
      return std::nan("");
    }
    return *found;
  }
  // Sum over every series of `name` whose labels include `subset`.
  double sum(std::string_view name, const Labels& subset = {}) const {
    double total = 0;
    for (const auto& sample : samples) {
      if (sample.name != name) continue;
      bool match = true;
      for (const auto& [key, value] : subset) {
        auto found = sample.labels.find(key);
        match = match && found != sample.labels.end() && found->second == value;
      }
      if (match) total += sample.value;
    }
    return total;
  }
};

Scrape parse_exposition(const std::string& text) {
  Scrape scrape;
  std::size_t position = 0;
  while (position < text.size()) {
    std::size_t end = text.find('\n', position);
    if (end == std::string::npos) {
      ADD_FAILURE() << "the exposition does not end with a newline";
      end = text.size();
    }
    std::string line = text.substr(position, end - position);
    position = end + 1;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::string rest = line.substr(7);
      auto space = rest.find(' ');
      (line[2] == 'H' ? scrape.helps : scrape.types)[rest.substr(0, space)] =
          rest.substr(space + 1);
      continue;
    }
    Sample sample;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') sample.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key, value;
        while (line[i] != '=') key += line[i++];
        i += 2;  // ="
        while (line[i] != '"') {
          if (line[i] == '\\') {
            char escaped = line[++i];
            value += escaped == 'n' ? '\n' : escaped;
          } else {
            value += line[i];
          }
          ++i;
        }
        ++i;  // closing quote
        if (line[i] == ',') ++i;
        sample.labels[key] = value;
      }
      ++i;  // }
    }
    EXPECT_EQ(line[i], ' ') << line;
    std::string value = line.substr(i + 1);
    sample.value = value == "+Inf" ? INFINITY : value == "NaN" ? NAN : std::stod(value);
    scrape.samples.push_back(std::move(sample));
  }
  return scrape;
}

// --- Fixture ----------------------------------------------------------------------------------

class CapturingLogger final : public saga::Logger {
 public:
  bool enabled(saga::LogLevel) const noexcept override { return true; }
  void write(const saga::LogRecord& record) noexcept override {
    std::lock_guard lock(mutex_);
    records_.push_back(record);
  }
  std::vector<saga::LogRecord> records(std::string_view message) const {
    std::lock_guard lock(mutex_);
    std::vector<saga::LogRecord> found;
    for (const auto& record : records_)
      if (record.message == message) found.push_back(record);
    return found;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<saga::LogRecord> records_;
};

std::string text_field(const saga::LogRecord& record, std::string_view key) {
  const auto* value = record.field(key);
  return value && std::holds_alternative<std::string>(*value) ? std::get<std::string>(*value) : "";
}

// Delegates to a real store; fails the next commit(s) on demand.
class FailingStore final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  int fail_commits = 0;

  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    if (fail_commits > 0) {
      --fail_commits;
      return saga::StoreStatus::failure(saga::StoreErrorCode::io_error, "injected: disk I/O error");
    }
    return inner().commit(batch);
  }
};

order::OrderData an_order(std::string id) {
  return {std::move(id), "customer-1", "1 Main St", {{"sku-1", 1, 100}}};
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory = std::filesystem::temp_directory_path() /
                ("saga-metrics-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory);
    std::filesystem::create_directories(directory);
    options.store.path = (directory / "saga.db").string();
    options.store.durability = saga::Durability::off;
    options.idle_wait = 0ms;
    // No re-sends while the clock is moved by minutes.
    options.command_retry.timeout = 24h;
    options.command_retry.max_timeout = 24h;
    options.compensation_retry = options.command_retry;
    options.lag_alerts = {2, 5, 60s, 600s};
    options.logger = logger;
  }

  void TearDown() override {
    server.reset();
    engine.reset();
    store.reset();
    std::filesystem::remove_all(directory);
  }

  void open(bool with_metrics = true) {
    engine.reset();
    store.reset();
    options.metrics = with_metrics ? std::make_shared<saga::Metrics>() : nullptr;
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
    if (!with_metrics) return;
    server = saga::MetricsHttpServer::start(options.metrics, {"127.0.0.1", 0});
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
  }

  Scrape scrape() {
    auto response = client->Get("/metrics");
    if (!response) {
      ADD_FAILURE() << "GET /metrics failed: " << httplib::to_string(response.error());
      return {};
    }
    EXPECT_EQ(response->status, 200);
    EXPECT_TRUE(response->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"))
        << response->get_header_value("Content-Type");
    Scrape parsed = parse_exposition(response->body);
    for (const auto& sample : parsed.samples) {
      std::string family = sample.name;
      for (std::string_view suffix : {"_bucket", "_sum", "_count"})
        if (!parsed.types.contains(family) && family.ends_with(suffix))
          family.resize(family.size() - suffix.size());
      EXPECT_TRUE(parsed.types.contains(family)) << "no # TYPE for " << sample.name;
      EXPECT_TRUE(parsed.helps.contains(family)) << "no # HELP for " << sample.name;
    }
    return parsed;
  }

  // A participant's reply to `command`, from the service it was sent to.
  std::string reply(const saga::test::SentCommand& command, std::string type,
                    nlohmann::json data = nlohmann::json::object()) {
    saga::Envelope envelope;
    envelope.event_id = saga::new_uuid();
    envelope.event_type = std::move(type);
    envelope.timestamp = clock.now();
    envelope.source = command.destination;
    envelope.correlation_id = command.envelope.correlation_id;
    envelope.causation_id = command.envelope.event_id;
    envelope.kind = saga::MessageKind::reply;
    envelope.data = std::move(data);
    return saga::encode_envelope(envelope);
  }

  // Commands sent since the last call, by saga id (each saga has one command in flight here).
  std::map<std::string, saga::test::SentCommand> commands() {
    std::map<std::string, saga::test::SentCommand> by_saga;
    for (auto& command : saga::test::take_commands(transport))
      by_saga[command.envelope.correlation_id] = command;
    return by_saga;
  }

  std::size_t turn() {
    std::size_t inputs = engine->run_once();
    inputs_committed += inputs;
    return inputs;
  }

  std::filesystem::path directory;
  saga::Options options;
  std::shared_ptr<CapturingLogger> logger = std::make_shared<CapturingLogger>();
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
  std::unique_ptr<saga::MetricsHttpServer> server;
  std::unique_ptr<httplib::Client> client;
  std::size_t inputs_committed = 0;
};

// Three orders: A completes, B is declined and compensates, C waits for ever. Plus a message
// that is not JSON, a reply with the wrong correlation id, one for no saga, and a duplicate reply.
TEST_F(MetricsEndpointTest, ScrapesDuringAndAfterARunMatchWhatWasSent) {
  open();
  std::string a = engine->start<order::OrderSaga>(an_order("A"));
  std::string b = engine->start<order::OrderSaga>(an_order("B"));
  std::string c = engine->start<order::OrderSaga>(an_order("C"));
  turn();
  auto reserves = commands();
  ASSERT_EQ(reserves.size(), 3u);

  Scrape during = scrape();
  {
    SCOPED_TRACE("during: published, sagas, lag");
    EXPECT_EQ(during("saga_messages_published_total",
                     {{"kind", "command"}, {"type", "inventory.Reserve"}}),
              3);
    EXPECT_EQ(
        during("saga_messages_published_total", {{"kind", "event"}, {"type", "saga.Started"}}), 3);
    EXPECT_EQ(during("saga_sagas_started_total", {{"saga_type", "order"}}), 3);
    EXPECT_EQ(during("saga_sagas", {{"saga_type", "order"}, {"status", "Running"}}), 3);
    EXPECT_EQ(during("saga_sagas", {{"saga_type", "order"}, {"status", "Completed"}}), 0);
    EXPECT_EQ(during("saga_commands_awaiting_reply"), 3);
    EXPECT_EQ(during("saga_outbox_pending_messages"), 0);
    EXPECT_EQ(during("saga_oldest_awaiting_reply_age_seconds"), 0);
    EXPECT_EQ(during("saga_lag_alert_level", {{"kind", "pending"}}), 1);  // 3 > 2
    EXPECT_EQ(during("saga_lag_alert_level", {{"kind", "delay"}}), 0);
    EXPECT_EQ(during("saga_commit_batch_size_count"), 1);
    EXPECT_EQ(during("saga_commit_batch_size_sum"), 3);
  }

  clock.advance(2min);
  turn();
  Scrape waiting = scrape();
  {
    SCOPED_TRACE("during: the age of the oldest command awaiting its reply");
    EXPECT_EQ(waiting("saga_oldest_awaiting_reply_age_seconds"), 120);
    EXPECT_EQ(waiting("saga_lag_alert_level", {{"kind", "delay"}}), 1);  // 120 s > 60 s
  }

  // Replies to A and B, a message that is not JSON, a reply to C's command with another
  // correlation id, and a reply naming neither a command nor a saga.
  std::string a_reserved = reply(reserves[a], "inventory.Reserved", {{"reservation_id", "r-a"}});
  transport.deliver(a_reserved);
  transport.deliver(reply(reserves[b], "inventory.Reserved", {{"reservation_id", "r-b"}}));
  transport.deliver("not json at all");
  saga::test::SentCommand stranger = reserves[c];
  stranger.envelope.correlation_id = saga::new_uuid();
  transport.deliver(reply(stranger, "inventory.Reserved", {{"reservation_id", "r-x"}}));
  saga::test::SentCommand orphan = stranger;
  orphan.envelope.event_id = saga::new_uuid();
  transport.deliver(reply(orphan, "inventory.Reserved", {{"reservation_id", "r-y"}}));
  turn();
  auto charges = commands();
  ASSERT_EQ(charges.size(), 2u);

  clock.advance(30s);
  transport.deliver(reply(charges[a], "payment.Charged", {{"payment_id", "p-a"}}));
  transport.deliver(reply(charges[b], "payment.Declined", {{"reason", "card expired"}}));
  transport.deliver(a_reserved);  // again: a duplicate
  turn();
  auto thirds = commands();
  ASSERT_EQ(thirds.size(), 2u);
  EXPECT_EQ(thirds[a].envelope.event_type, "shipping.Ship");
  EXPECT_EQ(thirds[b].envelope.event_type, "inventory.Release");

  clock.advance(30s);
  transport.deliver(reply(thirds[a], "shipping.Shipped", {{"tracking_number", "t-a"}}));
  transport.deliver(reply(thirds[b], "inventory.Released", {{"reservation_id", "r-b"}}));
  turn();
  turn();                // an idle turn
  clock.advance(10min);  // C has now waited 13 minutes
  turn();

  auto stats = engine->stats();
  ASSERT_EQ(stats.sagas_completed, 1u);
  ASSERT_EQ(stats.sagas_compensated, 1u);
  Scrape after = scrape();
  {
    SCOPED_TRACE("saga_messages_published_total");
    auto published = [&](std::string kind, std::string type) {
      return after("saga_messages_published_total", {{"kind", kind}, {"type", type}});
    };
    EXPECT_EQ(published("command", "inventory.Reserve"), 3);
    EXPECT_EQ(published("command", "payment.Charge"), 2);
    EXPECT_EQ(published("command", "shipping.Ship"), 1);
    EXPECT_EQ(published("command", "inventory.Release"), 1);
    EXPECT_EQ(after.sum("saga_messages_published_total", {{"kind", "command"}}),
              stats.commands_sent);
    EXPECT_EQ(published("event", "saga.Started"), 3);
    EXPECT_EQ(published("event", "saga.StepCompleted"), 3);
    EXPECT_EQ(published("event", "saga.Compensating"), 1);
    EXPECT_EQ(published("event", "saga.Completed"), 1);
    EXPECT_EQ(published("event", "saga.Compensated"), 1);
  }
  {
    SCOPED_TRACE("saga_messages_consumed_total");
    auto consumed = [&](std::string type, std::string consumer, std::string result) {
      return after("saga_messages_consumed_total",
                   {{"type", type}, {"consumer", consumer}, {"result", result}});
    };
    EXPECT_EQ(consumed("inventory.Reserved", "inventory", "applied"), 2);
    EXPECT_EQ(consumed("inventory.Reserved", "inventory", "duplicate"), 1);
    EXPECT_EQ(consumed("inventory.Reserved", "inventory", "dead_lettered"), 2);
    EXPECT_EQ(consumed("", "", "dead_lettered"), 1);
    EXPECT_EQ(consumed("payment.Charged", "payment", "applied"), 1);
    EXPECT_EQ(consumed("payment.Declined", "payment", "applied"), 1);
    EXPECT_EQ(consumed("shipping.Shipped", "shipping", "applied"), 1);
    EXPECT_EQ(consumed("inventory.Released", "inventory", "applied"), 1);
    EXPECT_EQ(after.sum("saga_messages_consumed_total"), stats.messages_received);
    EXPECT_EQ(after.sum("saga_messages_consumed_total", {{"result", "dead_lettered"}}),
              stats.dead_letters);
  }
  {
    SCOPED_TRACE("saga_message_processing_seconds");
    EXPECT_EQ(after("saga_message_processing_seconds_count", {{"type", "inventory.Reserved"}}), 5);
    EXPECT_EQ(after("saga_message_processing_seconds_count", {{"type", "payment.Declined"}}), 1);
    EXPECT_EQ(after("saga_message_processing_seconds_count", {{"type", ""}}), 1);
    EXPECT_GT(after("saga_message_processing_seconds_sum", {{"type", "inventory.Reserved"}}), 0);
    EXPECT_EQ(after("saga_message_processing_seconds_bucket",
                    {{"type", "inventory.Reserved"}, {"le", "+Inf"}}),
              5);
  }
  {
    SCOPED_TRACE("saga_command_reply_seconds (by the manual clock)");
    EXPECT_EQ(after("saga_command_reply_seconds_count", {{"type", "inventory.Reserve"}}), 2);
    EXPECT_EQ(after("saga_command_reply_seconds_sum", {{"type", "inventory.Reserve"}}), 240);
    EXPECT_EQ(
        after("saga_command_reply_seconds_bucket", {{"type", "inventory.Reserve"}, {"le", "60"}}),
        0);
    EXPECT_EQ(
        after("saga_command_reply_seconds_bucket", {{"type", "inventory.Reserve"}, {"le", "300"}}),
        2);
    EXPECT_EQ(after("saga_command_reply_seconds_sum", {{"type", "payment.Charge"}}), 60);
    EXPECT_EQ(after("saga_command_reply_seconds_sum", {{"type", "inventory.Release"}}), 30);
  }
  {
    SCOPED_TRACE("saga_dead_letters_total and saga_dead_letter_queue_depth");
    EXPECT_EQ(after("saga_dead_letters_total", {{"reason", "not_json"}}), 1);
    EXPECT_EQ(after("saga_dead_letters_total", {{"reason", "correlation_mismatch"}}), 1);
    EXPECT_EQ(after("saga_dead_letters_total", {{"reason", "unknown_saga"}}), 1);
    EXPECT_EQ(after.sum("saga_dead_letters_total"), stats.dead_letters);
    EXPECT_EQ(after("saga_dead_letter_queue_depth"), 3);
  }
  {
    SCOPED_TRACE("saga_sagas and saga_sagas_started_total");
    auto sagas = [&](std::string status) {
      return after("saga_sagas", {{"saga_type", "order"}, {"status", status}});
    };
    EXPECT_EQ(sagas("Running"), 1);
    EXPECT_EQ(sagas("Compensating"), 0);
    EXPECT_EQ(sagas("Completed"), 1);
    EXPECT_EQ(sagas("Compensated"), 1);
    EXPECT_EQ(sagas("Failed"), 0);
    EXPECT_EQ(after("saga_sagas_started_total", {{"saga_type", "order"}}), 3);
  }
  {
    SCOPED_TRACE("saga_duration_seconds (by the manual clock: 2 min + 30 s + 30 s)");
    Labels completed{{"saga_type", "order"}, {"outcome", "Completed"}};
    Labels compensated{{"saga_type", "order"}, {"outcome", "Compensated"}};
    EXPECT_EQ(after("saga_duration_seconds_count", completed), 1);
    EXPECT_EQ(after("saga_duration_seconds_sum", completed), 180);
    EXPECT_EQ(after("saga_duration_seconds_count", compensated), 1);
    EXPECT_EQ(after("saga_duration_seconds_sum", compensated), 180);
    EXPECT_FALSE(
        after.find("saga_duration_seconds_count", {{"saga_type", "order"}, {"outcome", "Failed"}}));
  }
  {
    SCOPED_TRACE("saga_commits_total, batch size, commit duration, failures");
    EXPECT_EQ(after("saga_commits_total"), stats.commits);
    EXPECT_EQ(after("saga_commit_batch_size_count"), stats.commits);
    EXPECT_EQ(after("saga_commit_batch_size_sum"), inputs_committed);
    EXPECT_EQ(after("saga_commit_duration_seconds_count"), stats.commits);
    EXPECT_EQ(after("saga_commit_durable_seconds_count"), stats.commits);
    EXPECT_EQ(after.sum("saga_commit_failures_total"), 0);
  }
  {
    SCOPED_TRACE("consumer lag and its alerts");
    EXPECT_EQ(after("saga_commands_awaiting_reply"), 1);  // C's inventory.Reserve
    EXPECT_EQ(after("saga_outbox_pending_messages"), 0);
    EXPECT_EQ(after("saga_oldest_awaiting_reply_age_seconds"), 13 * 60);
    EXPECT_EQ(after("saga_oldest_pending_age_seconds"), 0);
    EXPECT_EQ(after("saga_lag_alert_level", {{"kind", "pending"}}), 0);  // 1 <= 2
    EXPECT_EQ(after("saga_lag_alert_level", {{"kind", "delay"}}), 2);    // 780 s > 600 s
    EXPECT_EQ(after("saga_lag_alert_threshold", {{"kind", "pending"}, {"level", "warning"}}), 2);
    EXPECT_EQ(after("saga_lag_alert_threshold", {{"kind", "delay"}, {"level", "critical"}}), 600);
    EXPECT_EQ(after.sum("saga_command_resends_total"), 0);
    EXPECT_EQ(after.sum("saga_command_timeouts_total"), 0);

    auto alerts = logger->records("lag alert");
    ASSERT_EQ(alerts.size(), 3u);  // pending warning, delay warning, delay critical
    EXPECT_EQ(text_field(alerts[0], "kind"), "pending");
    EXPECT_EQ(text_field(alerts[0], "alert"), "warning");
    EXPECT_EQ(alerts[0].level, saga::LogLevel::warn);
    EXPECT_EQ(text_field(alerts[1], "kind"), "delay");
    EXPECT_EQ(text_field(alerts[1], "alert"), "warning");
    EXPECT_EQ(text_field(alerts[2], "kind"), "delay");
    EXPECT_EQ(text_field(alerts[2], "alert"), "critical");
    EXPECT_EQ(std::get<std::int64_t>(*alerts[0].field("value")), 3);
    EXPECT_EQ(std::get<double>(*alerts[2].field("value")), 780.0);
    EXPECT_EQ(std::get<std::int64_t>(*alerts[2].field("criticalAbove")), 600);
    EXPECT_EQ(alerts[2].level, saga::LogLevel::error);
    auto cleared = logger->records("lag alert cleared");
    ASSERT_EQ(cleared.size(), 1u);
    EXPECT_EQ(text_field(cleared[0], "kind"), "pending");
  }

  auto health = client->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto missing = client->Get("/nothing-here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

// eventType and source are the sender's: each new value used to add series (a histogram's
// buckets among them) that were never freed, so any peer could grow the process without bound.
TEST_F(MetricsEndpointTest, LabelsFromInboundEnvelopesAreBounded) {
  open();
  for (int i = 0; i < 300; ++i) {
    saga::Envelope envelope;
    envelope.event_id = saga::new_uuid();
    envelope.event_type = "made.Up" + std::to_string(i);
    envelope.timestamp = clock.now();
    envelope.source = "peer-" + std::to_string(i);
    envelope.correlation_id = saga::new_uuid();
    envelope.kind = saga::MessageKind::reply;
    envelope.data = nlohmann::json::object();
    transport.deliver(saga::encode_envelope(envelope));
  }
  for (int i = 0; i < 5 && engine->stats().messages_received < 300; ++i) turn();
  ASSERT_EQ(engine->stats().dead_letters, 300u);

  Scrape after = scrape();
  std::set<std::string> types, consumers;
  for (const auto& sample : after.samples) {
    if (sample.name != "saga_messages_consumed_total") continue;
    types.insert(sample.labels.at("type"));
    consumers.insert(sample.labels.at("consumer"));
  }
  EXPECT_EQ(types, std::set<std::string>{"other"});
  EXPECT_EQ(consumers.size(), 33u) << "32 sources, then other";
  EXPECT_TRUE(consumers.contains("other"));
  EXPECT_EQ(after("saga_messages_consumed_total",
                  {{"type", "other"}, {"consumer", "other"}, {"result", "dead_lettered"}}),
            300 - 32);
  EXPECT_EQ(after("saga_message_processing_seconds_count", {{"type", "other"}}), 300);
}

TEST_F(MetricsEndpointTest, CommandsTheTransportRefusesAreGaugedAsPendingWithTheirAge) {
  open();
  transport.refuse_sends(saga::SendResult::unroutable);
  for (int i = 0; i < 6; ++i) engine->start<order::OrderSaga>(an_order("o-" + std::to_string(i)));
  turn();
  clock.advance(7min);
  turn();
  Scrape refused = scrape();
  {
    SCOPED_TRACE("pending outbox rows");
    EXPECT_EQ(refused("saga_outbox_pending_messages"), 6);
    EXPECT_EQ(refused("saga_commands_awaiting_reply"), 0);
    EXPECT_EQ(refused("saga_oldest_pending_age_seconds"), 420);
    EXPECT_GE(refused("saga_send_refusals_total", {{"destination", "inventory"}}), 2);
    EXPECT_EQ(refused("saga_lag_alert_level", {{"kind", "pending"}}), 2);  // 6 > 5
    EXPECT_EQ(refused("saga_lag_alert_level", {{"kind", "delay"}}), 1);    // 420 s > 60 s
    EXPECT_FALSE(refused.find("saga_messages_published_total",
                              {{"kind", "command"}, {"type", "inventory.Reserve"}}));
  }
  transport.refuse_sends(std::nullopt);
  turn();
  Scrape sent = scrape();
  {
    SCOPED_TRACE("sent after all");
    EXPECT_EQ(sent("saga_outbox_pending_messages"), 0);
    EXPECT_EQ(sent("saga_commands_awaiting_reply"), 6);
    EXPECT_EQ(sent("saga_oldest_awaiting_reply_age_seconds"), 420);
    EXPECT_EQ(
        sent("saga_messages_published_total", {{"kind", "command"}, {"type", "inventory.Reserve"}}),
        6);
  }
}

TEST_F(MetricsEndpointTest, SagaCountsAndDeadLetterDepthAreReadFromTheStoreAtStart) {
  open(/*with_metrics=*/false);
  std::string done = engine->start<order::OrderSaga>(an_order("done"));
  engine->start<order::OrderSaga>(an_order("waiting"));
  engine->run_once();
  auto first = commands();
  transport.deliver(
      reply(first[done], "inventory.OutOfStock", {{"sku", "sku-1"}, {"reason", "none"}}));
  transport.deliver("{\"broken\": ");
  engine->run_once();

  open(/*with_metrics=*/true);  // a new engine, a new registry, the same database
  engine->run_once();
  Scrape restarted = scrape();
  {
    SCOPED_TRACE("from the store");
    EXPECT_EQ(restarted("saga_sagas", {{"saga_type", "order"}, {"status", "Running"}}), 1);
    EXPECT_EQ(restarted("saga_sagas", {{"saga_type", "order"}, {"status", "Compensated"}}), 1);
    EXPECT_EQ(restarted("saga_sagas", {{"saga_type", "order"}, {"status", "Completed"}}), 0);
    EXPECT_EQ(restarted("saga_dead_letter_queue_depth"), 1);
    EXPECT_EQ(restarted("saga_commands_awaiting_reply"), 1);  // re-armed from the outbox
  }
  // A replay that is refused again: one dead letter replayed, one new.
  auto letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  auto result = engine->replay_dead_letter(letters[0].id);
  engine->run_once();
  EXPECT_FALSE(result.get().ok);
  Scrape replayed = scrape();
  EXPECT_EQ(replayed("saga_dead_letter_queue_depth"), 1);
  EXPECT_EQ(replayed("saga_dead_letters_total", {{"reason", "not_json"}}), 1);
  // Discarding the new one empties the queue.
  letters = store->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 2u);
  auto discarded = engine->discard_dead_letter(letters[1].id);
  engine->run_once();
  EXPECT_TRUE(discarded.get().ok);
  EXPECT_EQ(scrape()("saga_dead_letter_queue_depth"), 0);
}

TEST_F(MetricsEndpointTest, FailedCommitsAreCountedByCodeAndChangeNoOtherFamily) {
  options.commit_backoff = 1ms;
  open();
  FailingStore failing(*store);
  engine = std::make_unique<saga::Engine>(options, failing, transport, clock);
  engine->register_saga<order::OrderSaga>();
  engine->run_once();  // recovery, and the definitions recorded for tools
  failing.fail_commits = 2;
  engine->start<order::OrderSaga>(an_order("o-1"));
  transport.deliver("not json");
  engine->run_once();
  engine->run_once();
  Scrape failed = scrape();
  {
    SCOPED_TRACE("saga_commit_failures_total, and nothing counted of the failed turns");
    EXPECT_EQ(failed("saga_commit_failures_total", {{"code", "io_error"}}), 2);
    EXPECT_EQ(failed("saga_commits_total"), 0);
    EXPECT_EQ(failed("saga_sagas", {{"saga_type", "order"}, {"status", "Running"}}), 0);
    EXPECT_FALSE(failed.find("saga_sagas_started_total", {{"saga_type", "order"}}));
    EXPECT_FALSE(failed.find("saga_dead_letters_total", {{"reason", "not_json"}}));
    EXPECT_EQ(failed("saga_dead_letter_queue_depth"), 0);
    EXPECT_EQ(failed.sum("saga_messages_published_total"), 0);
    auto lines = logger->records("store transaction failed; the turn is retried");
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].level, saga::LogLevel::error);
    EXPECT_EQ(text_field(lines[0], "code"), "io_error");
  }
  engine->run_once();  // the same inputs, committed this time
  Scrape committed = scrape();
  {
    SCOPED_TRACE("after the retry");
    EXPECT_EQ(committed("saga_commits_total"), 1);
    EXPECT_EQ(committed("saga_commit_batch_size_sum"), 2);
    EXPECT_EQ(committed("saga_sagas", {{"saga_type", "order"}, {"status", "Running"}}), 1);
    EXPECT_EQ(committed("saga_dead_letters_total", {{"reason", "not_json"}}), 1);
    EXPECT_EQ(committed("saga_dead_letter_queue_depth"), 1);
    EXPECT_EQ(committed("saga_messages_consumed_total",
                        {{"type", ""}, {"consumer", ""}, {"result", "dead_lettered"}}),
              1);
  }
}

// The engine loop in its own thread, participants answering in another, and scrapes in between.
TEST_F(MetricsEndpointTest, ScrapesWhileTheLoopRunsInItsOwnThread) {
  options.idle_wait = 20ms;  // the loop waits for messages instead of spinning
  open();
  constexpr int kOrders = 40;
  std::atomic<int> ended{0};
  engine->on_outcome([&](const saga::SagaOutcome&) { ended.fetch_add(1); });
  std::thread loop([&] { engine->run(); });
  std::atomic<bool> stop_participants{false};
  std::thread participants([&] {
    const std::map<std::string, std::pair<std::string, nlohmann::json>> answers = {
        {"inventory.Reserve", {"inventory.Reserved", {{"reservation_id", "r"}}}},
        {"payment.Charge", {"payment.Charged", {{"payment_id", "p"}}}},
        {"shipping.Ship", {"shipping.Shipped", {{"tracking_number", "t"}}}}};
    while (!stop_participants.load()) {
      for (auto& sent : transport.wait_sent(20ms)) {
        saga::test::SentCommand command{sent.destination,
                                        std::get<saga::Envelope>(saga::decode_envelope(sent.bytes)),
                                        sent.bytes};
        const auto& [type, data] = answers.at(command.envelope.event_type);
        transport.deliver(reply(command, type, data));
      }
    }
  });

  double last_published = 0, last_commits = 0;
  int scrapes = 0;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  for (int i = 0; i < kOrders; ++i) {
    engine->start<order::OrderSaga>(an_order("o-" + std::to_string(i)));
    if (i % 4 == 0) {
      Scrape during = scrape();
      ++scrapes;
      double published = during.sum("saga_messages_published_total");
      EXPECT_GE(published, last_published);
      EXPECT_GE(during("saga_commits_total"), last_commits);
      last_published = published;
      last_commits = during("saga_commits_total");
    }
  }
  while (ended.load() < kOrders && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);  // pacing the scrapes, not waiting for anything
    Scrape during = scrape();
    ++scrapes;
    EXPECT_GE(during.sum("saga_messages_published_total"), last_published);
    last_published = during.sum("saga_messages_published_total");
  }
  engine->stop();
  loop.join();
  stop_participants.store(true);
  participants.join();
  ASSERT_EQ(ended.load(), kOrders);
  EXPECT_GE(scrapes, 10);

  Scrape final_scrape = scrape();
  EXPECT_EQ(final_scrape("saga_sagas", {{"saga_type", "order"}, {"status", "Completed"}}), kOrders);
  EXPECT_EQ(final_scrape("saga_sagas", {{"saga_type", "order"}, {"status", "Running"}}), 0);
  for (std::string type : {"inventory.Reserve", "payment.Charge", "shipping.Ship"})
    EXPECT_EQ(final_scrape("saga_messages_published_total", {{"kind", "command"}, {"type", type}}),
              kOrders)
        << type;
  EXPECT_EQ(final_scrape("saga_duration_seconds_count",
                         {{"saga_type", "order"}, {"outcome", "Completed"}}),
            kOrders);
  EXPECT_EQ(final_scrape("saga_commits_total"), engine->stats().commits);
  EXPECT_EQ(final_scrape("saga_commands_awaiting_reply"), 0);
}

TEST(MetricsHttpServer, RefusesAnAddressItCannotListenOn) {
  auto metrics = std::make_shared<saga::Metrics>();
  auto first = saga::MetricsHttpServer::start(metrics, {"127.0.0.1", 0});
  EXPECT_THROW(saga::MetricsHttpServer::start(metrics, {"127.0.0.1", first->port()}),
               std::runtime_error);
}

TEST(MetricsHttpServer, HealthCheckReportsAProblemWith503) {
  auto metrics = std::make_shared<saga::Metrics>();
  auto server = saga::MetricsHttpServer::start(
      metrics, {"127.0.0.1", 0, [] { return std::string("engine stopped"); }});
  httplib::Client client("127.0.0.1", server->port());
  auto response = client.Get("/healthz");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(response->body, "engine stopped\n");
}

// httplib reads a request's body before routing it, by default without a limit: one endless
// POST used to grow the orchestrator's memory until the OOM killer took it.
TEST(MetricsHttpServer, RequestBodiesPastAFewKibAreRefusedAndScrapesGoOn) {
  auto metrics = std::make_shared<saga::Metrics>();
  auto server = saga::MetricsHttpServer::start(metrics, {"127.0.0.1", 0});
  httplib::Client client("127.0.0.1", server->port());
  auto declared = client.Post("/metrics", std::string(1024 * 1024, 'x'), "text/plain");
  if (declared) {
    EXPECT_TRUE(declared->status == 413 || declared->status == 405) << declared->status;
  }

  std::size_t offered = 0;
  auto chunked = client.Post(
      "/metrics",
      [&](std::size_t, httplib::DataSink& sink) {
        static const std::string chunk(64 * 1024, 'y');
        if (offered >= 64 * 1024 * 1024) return false;
        offered += chunk.size();
        return sink.write(chunk.data(), chunk.size());
      },
      "text/plain");
  if (chunked) {
    EXPECT_EQ(chunked->status, 405);
  }
  EXPECT_LT(offered, 64u * 1024 * 1024) << "the server kept reading";

  auto scrape = client.Get("/metrics");
  ASSERT_TRUE(scrape);
  EXPECT_EQ(scrape->status, 200);
}

TEST(ListenAddress, ParsesHostAndPortAndRefusesTheRest) {
  EXPECT_EQ(saga::parse_listen_address("127.0.0.1:9464"),
            std::make_pair(std::string("127.0.0.1"), 9464));
  EXPECT_EQ(saga::parse_listen_address("[::1]:0"), std::make_pair(std::string("::1"), 0));
  EXPECT_THROW(saga::parse_listen_address("127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(saga::parse_listen_address(":9464"), std::invalid_argument);
  EXPECT_THROW(saga::parse_listen_address("host:99999"), std::invalid_argument);
  EXPECT_THROW(saga::parse_listen_address("host:12ab"), std::invalid_argument);
}

}  // namespace
