// The engine's structured log lines: JSON that parses, and the ids of the message or saga each
// line is about (saga/log.hpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/log.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::take_commands;

order::OrderData an_order() {
  return {"order-1", "customer-1", "1 Main St", {{"sku-1", 1, 100}}};
}

class EngineLogsTest : public ::testing::Test {
 protected:
  void open() {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    options.logger = saga::make_stream_logger(out, saga::LogFormat::json, saga::LogLevel::debug);
    store = std::move(saga::SqliteStore::open(options.store).value());
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  }

  // Every line written so far; each must be one JSON object.
  std::vector<nlohmann::json> lines() {
    std::vector<nlohmann::json> parsed;
    std::istringstream text(out.str());
    std::string line;
    while (std::getline(text, line)) {
      auto json = nlohmann::json::parse(line, nullptr, false);
      EXPECT_TRUE(json.is_object()) << line;
      if (json.is_object()) parsed.push_back(std::move(json));
    }
    return parsed;
  }

  std::vector<nlohmann::json> lines(std::string_view message) {
    std::vector<nlohmann::json> found;
    for (auto& line : lines())
      if (line["msg"] == message) found.push_back(line);
    return found;
  }

  // The one line with this message whose `key` is `value`.
  nlohmann::json line(std::string_view message, std::string_view key, std::string_view value) {
    std::vector<nlohmann::json> found;
    for (auto& candidate : lines(message))
      if (candidate.value(std::string(key), "") == value) found.push_back(candidate);
    EXPECT_EQ(found.size(), 1u) << message << " with " << key << "=" << value << "\n" << out.str();
    return found.empty() ? nlohmann::json::object() : found.front();
  }

  saga::Options options;
  std::ostringstream out;
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

TEST_F(EngineLogsTest, EveryLineAboutAMessageOrASagaCarriesItsIds) {
  open();
  std::string id = engine->start<order::OrderSaga>(an_order(), "request-42");
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  const std::string correlation = reserve.envelope.correlation_id;
  EXPECT_EQ(correlation, "request-42");
  std::string reserved =
      reply_bytes(reserve.envelope, "inventory.Reserved", {{"reservation_id", "r"}});
  auto reserved_envelope = std::get<saga::Envelope>(saga::decode_envelope(reserved));
  transport.deliver(reserved);
  engine->run_once();
  auto charge = take_commands(transport).at(0);
  transport.deliver(reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p"}}));
  engine->run_once();
  auto ship = take_commands(transport).at(0);
  std::string shipped = reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "t"}});
  auto shipped_envelope = std::get<saga::Envelope>(saga::decode_envelope(shipped));
  transport.deliver(shipped);
  // A reply to a saga that does not exist.
  saga::Envelope stray = reserve.envelope;
  stray.correlation_id = saga::new_uuid();
  stray.event_id = saga::new_uuid();
  std::string stray_reply = reply_bytes(stray, "inventory.Reserved", {{"reservation_id", "x"}});
  auto stray_envelope = std::get<saga::Envelope>(saga::decode_envelope(stray_reply));
  transport.deliver(stray_reply);
  engine->run_once();

  for (const auto& line : lines()) {
    if (!line.contains("sagaId") && !line.contains("messageId")) continue;
    EXPECT_TRUE(line.contains("sagaId")) << line;
    EXPECT_TRUE(line.contains("correlationId")) << line;
    EXPECT_TRUE(line.contains("causationId")) << line;
  }

  auto started = line("saga started", "sagaId", id);
  EXPECT_EQ(started["correlationId"], correlation);
  EXPECT_EQ(started["causationId"], "");
  EXPECT_EQ(started["sagaType"], "order");

  auto applied = line("message applied", "messageId", reserved_envelope.event_id);
  EXPECT_EQ(applied["messageType"], "inventory.Reserved");
  EXPECT_EQ(applied["sagaId"], id);
  EXPECT_EQ(applied["correlationId"], reserved_envelope.correlation_id);
  EXPECT_EQ(applied["causationId"], reserve.envelope.event_id);

  auto queued = line("command queued", "messageId", charge.envelope.event_id);
  EXPECT_EQ(queued["messageType"], "payment.Charge");
  EXPECT_EQ(queued["destination"], "payment");
  EXPECT_EQ(queued["correlationId"], charge.envelope.correlation_id);
  EXPECT_EQ(queued["causationId"], charge.envelope.causation_id);
  EXPECT_EQ(queued["causationId"], reserved_envelope.event_id);

  bool transition_found = false;
  for (const auto& transition : lines("saga transition"))
    if (transition["causationId"] == reserved_envelope.event_id) {
      transition_found = true;
      EXPECT_EQ(transition["from"], "awaiting:inventory.Reserve");
      EXPECT_EQ(transition["to"], "awaiting:payment.Charge");
      EXPECT_EQ(transition["correlationId"], correlation);
    }
  EXPECT_TRUE(transition_found) << out.str();

  auto ended = line("saga ended", "sagaId", id);
  EXPECT_EQ(ended["level"], "info");
  EXPECT_EQ(ended["status"], "Completed");
  EXPECT_EQ(ended["correlationId"], correlation);
  EXPECT_EQ(ended["causationId"], shipped_envelope.event_id);
  EXPECT_EQ(lines("saga ended").size(), 1u);

  auto dead = line("message dead-lettered", "messageId", stray_envelope.event_id);
  EXPECT_EQ(dead["level"], "warn");
  EXPECT_EQ(dead["reasonCode"], "unknown_saga");
  EXPECT_EQ(dead["correlationId"], stray_envelope.correlation_id);
  EXPECT_EQ(dead["causationId"], stray_envelope.causation_id);
}

TEST_F(EngineLogsTest, ResendsAndTimeoutsNameTheCommandAndItsIds) {
  options.command_retry = {1000ms, 1.0, 1000ms, 0.0, 2};
  open();
  std::string id = engine->start<order::OrderSaga>(an_order());
  engine->run_once();
  auto reserve = take_commands(transport).at(0);
  clock.advance(2s);
  engine->run_once();  // re-sent
  clock.advance(2s);
  engine->run_once();  // given up: the reservation, which may have been made, is released
  engine->run_once();

  auto resent = line("command re-sent", "messageId", reserve.envelope.event_id);
  EXPECT_EQ(resent["level"], "info");
  EXPECT_EQ(resent["attempt"], 2);
  EXPECT_EQ(resent["sagaId"], id);
  EXPECT_EQ(resent["correlationId"], reserve.envelope.correlation_id);
  EXPECT_EQ(resent["causationId"], reserve.envelope.causation_id);

  auto timed_out = line("command timed out", "messageId", reserve.envelope.event_id);
  EXPECT_EQ(timed_out["level"], "warn");
  EXPECT_EQ(timed_out["attempts"], 2);
  EXPECT_EQ(timed_out["correlationId"], reserve.envelope.correlation_id);

  auto commands = take_commands(transport);  // the re-sent Reserve, then the Release
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[1].envelope.event_type, "inventory.Release");
  EXPECT_EQ(commands[1].envelope.causation_id, reserve.envelope.event_id);
}

// The lines of one committed turn reach the logger in one write_all() call (one flush of a stream
// logger), in the order the turn made them, instead of a write (and a flush) each.
TEST_F(EngineLogsTest, ATurnsLinesAreHandedToTheLoggerTogether) {
  struct Counting : saga::Logger {
    std::vector<std::vector<std::string>> batches;  // messages of each write_all, or one write
    bool enabled(saga::LogLevel level) const noexcept override {
      return level >= saga::LogLevel::info;
    }
    void write(const saga::LogRecord& record) noexcept override {
      batches.push_back({record.message});
    }
    void write_all(std::span<const saga::LogRecord> records) noexcept override {
      std::vector<std::string> messages;
      for (const auto& record : records) messages.push_back(record.message);
      batches.push_back(std::move(messages));
    }
  };
  auto counting = std::make_shared<Counting>();
  options.store.path = ":memory:";
  options.idle_wait = 0ms;
  options.logger = counting;
  store = std::move(saga::SqliteStore::open(options.store).value());
  engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
  engine->register_saga<order::OrderSaga>();
  engine->run_once();  // recovery
  for (int i = 0; i < 3; ++i) engine->start<order::OrderSaga>(an_order());
  engine->run_once();
  for (const auto& reserve : take_commands(transport))
    transport.deliver(
        reply_bytes(reserve.envelope, "inventory.OutOfStock", {{"sku", "sku-1"}, {"reason", ""}}));
  counting->batches.clear();
  engine->run_once();  // three sagas end in one turn
  ASSERT_EQ(counting->batches.size(), 1u);
  EXPECT_EQ(counting->batches[0],
            (std::vector<std::string>{"saga ended", "saga ended", "saga ended"}));
}

TEST_F(EngineLogsTest, NoLoggerMeansNoOutputAndNothingBreaks) {
  options.store.path = ":memory:";
  store = std::move(saga::SqliteStore::open(options.store).value());
  engine = std::make_unique<saga::Engine>(options, *store, transport, clock);  // logger null
  engine->register_saga<order::OrderSaga>();
  engine->start<order::OrderSaga>(an_order());
  transport.deliver("not json");
  engine->run_once();
  EXPECT_EQ(engine->stats().dead_letters, 1u);
  EXPECT_TRUE(out.str().empty());
}

}  // namespace
