// The order saga across processes' worth of pieces over tcp://127.0.0.1: the engine on the
// ZeroMQ transport, and inventory / payment / shipping participants on the participant SDK, each
// with its own SQLite ledger. Participants run on threads of this test process; every byte goes
// through real sockets.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>
#include <zmq.h>

#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/participant.hpp"
#include "saga/sqlite_participant_ledger.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/zmq_participant.hpp"
#include "saga/zmq_transport.hpp"

namespace {

using namespace std::chrono_literals;

// Counts rows in a participant's effects table: one row per effect applied.
int count_effects(sqlite3* db, const std::string& kind, const std::string& order_id) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM effects WHERE kind = ?1 AND order_id = ?2", -1,
                     &statement, nullptr);
  sqlite3_bind_text(statement, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(statement, 2, order_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(statement);
  int count = sqlite3_column_int(statement, 0);
  sqlite3_finalize(statement);
  return count;
}

void record_effect(saga::ParticipantLedger::Unit& unit, const std::string& kind,
                   const std::string& order_id) {
  sqlite3* db = saga::sqlite_connection(unit);
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO effects (kind, order_id) VALUES (?1, ?2)", -1, &statement,
                     nullptr);
  sqlite3_bind_text(statement, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(statement, 2, order_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(statement);
  sqlite3_finalize(statement);
}

std::unique_ptr<saga::SqliteParticipantLedger> open_ledger(const std::string& path) {
  saga::StoreOptions options;
  options.path = path;
  options.durability = saga::Durability::normal;
  auto ledger = std::move(saga::SqliteParticipantLedger::open(options).value());
  sqlite3_exec(ledger->connection(),
               "CREATE TABLE IF NOT EXISTS effects (kind TEXT NOT NULL, order_id TEXT NOT NULL)",
               nullptr, nullptr, nullptr);
  return ledger;
}

void add_handlers(const std::string& service, saga::Participant& participant) {
  using saga::ParticipantLedger;
  if (service == "inventory") {
    participant.on<inventory::Reserve>(
        [](const inventory::Reserve& command, ParticipantLedger::Unit& unit) -> saga::Reply {
          for (const auto& item : command.items)
            if (item.sku == "sku-none") return inventory::OutOfStock{item.sku, "none left"};
          record_effect(unit, "reserve", command.order_id);
          return inventory::Reserved{"res-" + command.order_id};
        });
    participant.on<inventory::Release>(
        [](const inventory::Release& command, ParticipantLedger::Unit& unit) -> saga::Reply {
          record_effect(unit, "release", command.order_id);
          return inventory::Released{command.reservation_id};
        });
  } else if (service == "payment") {
    participant.on<payment::Charge>(
        [](const payment::Charge& command, ParticipantLedger::Unit& unit) -> saga::Reply {
          if (command.amount_cents > 100000) return payment::Declined{"over the limit"};
          record_effect(unit, "charge", command.order_id);
          return payment::Charged{"pay-" + command.order_id};
        });
    participant.on<payment::Refund>(
        [](const payment::Refund& command, ParticipantLedger::Unit& unit) -> saga::Reply {
          record_effect(unit, "refund", command.order_id);
          return payment::Refunded{command.payment_id};
        });
  } else {
    participant.on<shipping::Ship>(
        [](const shipping::Ship& command, ParticipantLedger::Unit& unit) -> saga::Reply {
          record_effect(unit, "ship", command.order_id);
          return shipping::Shipped{"track-" + command.order_id};
        });
  }
}

// One participant instance on its own thread, with its own ledger (opened on that thread).
class ParticipantThread {
 public:
  ParticipantThread(std::string endpoint, std::string service, std::string instance,
                    std::string ledger_path,
                    std::optional<saga::CurveClientOptions> curve = std::nullopt)
      : ledger_path_(std::move(ledger_path)) {
    thread_ = std::thread([this, endpoint, service, instance, curve] {
      auto ledger = open_ledger(ledger_path_);
      saga::ParticipantOptions options;
      options.connection.orchestrator_endpoint = endpoint;
      options.connection.service = service;
      options.connection.instance = instance;
      options.connection.heartbeat_interval = 50ms;
      options.connection.curve = curve;
      options.on_error = [](const std::string&) {};
      saga::Participant participant(options, *ledger);
      add_handlers(service, participant);
      while (!stopping_.load()) {
        if (participant.poll(20ms)) handled_.fetch_add(1);
      }
    });
  }
  ~ParticipantThread() { stop(); }
  void stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int handled() const { return handled_.load(); }

 private:
  std::string ledger_path_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> handled_{0};
  std::thread thread_;
};

class ZmqOrderFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("saga-zmq-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override {
    if (engine_) engine_->stop();
    if (loop_.joinable()) loop_.join();
    engine_.reset();
    std::filesystem::remove_all(directory_);
  }

  std::string path(const std::string& name) { return (directory_ / name).string(); }

  void start_engine(std::optional<saga::CurveServerOptions> curve = std::nullopt,
                    const std::function<void(saga::Options&)>& adjust = {},
                    std::chrono::milliseconds heartbeat = 50ms) {
    saga::ZmqTransportOptions transport_options;
    transport_options.router_endpoint = "tcp://127.0.0.1:*";
    transport_options.heartbeat_interval = heartbeat;
    transport_options.curve = curve;
    transport_ = saga::ZmqTransport::bind(transport_options);
    endpoint_ = transport_->router_endpoint();
    saga::Options options;
    options.store.path = path("orchestrator.db");
    options.store.durability = saga::Durability::normal;
    options.idle_wait = 5ms;
    options.command_retry = {400ms, 1.0, 400ms, 0.0, 0};
    options.compensation_retry = options.command_retry;
    if (adjust) adjust(options);
    store_ = std::move(saga::SqliteStore::open(options.store).value());
    engine_ = std::make_unique<saga::Engine>(options, *store_, *transport_, clock_);
    engine_->register_saga<order::OrderSaga>();
    engine_->on_outcome([this](const saga::SagaOutcome& outcome) {
      std::lock_guard lock(mutex_);
      outcomes_[outcome.saga_id] = outcome.status;
      ended_.notify_all();
    });
    engine_->on_dead_letter([this](const saga::DeadLetter& letter) {
      std::lock_guard lock(mutex_);
      dead_letters_.push_back(letter.reason_code);
      ended_.notify_all();
    });
    loop_ = std::thread([this] { engine_->run(); });
  }

  bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return ended_.wait_for(lock, timeout, condition);
  }
  bool wait_outcomes(std::size_t count, std::chrono::milliseconds timeout = 15s) {
    return wait_for([&] { return outcomes_.size() >= count; }, timeout);
  }
  std::map<std::string, saga::SagaStatus> outcomes() {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }
  std::vector<std::string> dead_letters() {
    std::lock_guard lock(mutex_);
    return dead_letters_;
  }
  static order::OrderData order(const std::string& id, std::int64_t cents,
                                const std::string& sku = "sku-1") {
    return {id, "customer", "1 Main St", {{sku, 1, cents}}};
  }

  std::filesystem::path directory_;
  saga::SystemClock clock_;
  std::unique_ptr<saga::ZmqTransport> transport_;
  std::string endpoint_;
  std::unique_ptr<saga::SqliteStore> store_;
  std::unique_ptr<saga::Engine> engine_;
  std::thread loop_;
  std::mutex mutex_;
  std::condition_variable ended_;
  std::map<std::string, saga::SagaStatus> outcomes_;
  std::vector<std::string> dead_letters_;
};

TEST_F(ZmqOrderFlowTest, OrdersCompleteAndCompensateAcrossThreeParticipantServices) {
  start_engine();
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));

  std::map<std::string, std::string> expected;  // saga id -> order id
  for (int i = 0; i < 30; ++i) {
    std::string order_id = "order-" + std::to_string(i);
    std::int64_t cents = i % 5 == 0 ? 200000 : 1000;  // every fifth is declined
    std::string sku = i % 7 == 3 ? "sku-none" : "sku-1";
    expected[engine_->start<order::OrderSaga>(order(order_id, cents, sku))] = order_id;
  }
  ASSERT_TRUE(wait_outcomes(30)) << "only " << outcomes().size() << " of 30 sagas ended";
  inventory.stop();
  payment.stop();
  shipping.stop();

  auto inventory_ledger = open_ledger(path("inventory.db"));
  auto payment_ledger = open_ledger(path("payment.db"));
  auto shipping_ledger = open_ledger(path("shipping.db"));
  int completed = 0, compensated = 0;
  for (const auto& [saga_id, status] : outcomes()) {
    const std::string& order_id = expected.at(saga_id);
    int reserved = count_effects(inventory_ledger->connection(), "reserve", order_id);
    int released = count_effects(inventory_ledger->connection(), "release", order_id);
    int charged = count_effects(payment_ledger->connection(), "charge", order_id);
    int shipped = count_effects(shipping_ledger->connection(), "ship", order_id);
    if (status == saga::SagaStatus::Completed) {
      ++completed;
      EXPECT_EQ(reserved, 1) << order_id;
      EXPECT_EQ(charged, 1) << order_id;
      EXPECT_EQ(shipped, 1) << order_id;
      EXPECT_EQ(released, 0) << order_id;
    } else {
      ASSERT_EQ(status, saga::SagaStatus::Compensated) << order_id;
      ++compensated;
      EXPECT_EQ(reserved, released) << order_id << ": reservation not released";
      EXPECT_EQ(charged, 0) << order_id;
      EXPECT_EQ(shipped, 0) << order_id;
    }
  }
  EXPECT_GT(completed, 0);
  EXPECT_GT(compensated, 0);
  EXPECT_TRUE(dead_letters().empty());
}

TEST_F(ZmqOrderFlowTest, RequestCorrelationIdTravelsThroughParticipantsAndBack) {
  start_engine();
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  std::string id = engine_->start<order::OrderSaga>(order("order-c", 1000), "request-7");
  ASSERT_TRUE(wait_outcomes(1));
  // Every reply carried the request's id back (a different one would be dead-lettered as
  // correlation_mismatch), and every command the participants got carried it.
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);
  EXPECT_TRUE(dead_letters().empty());
  engine_->stop();
  loop_.join();
  auto commands = store_->outbox(id).value();
  ASSERT_EQ(commands.size(), 3u);
  for (const auto& command : commands) {
    auto envelope = std::get<saga::Envelope>(saga::decode_envelope(command.payload));
    EXPECT_EQ(envelope.correlation_id, "request-7") << command.message_type;
    EXPECT_TRUE(command.replied_at.has_value()) << command.message_type;
  }
}

TEST_F(ZmqOrderFlowTest, CommandHeldByAKilledInstanceIsFinishedByAnotherInstance) {
  start_engine();
  // The first inventory instance takes the command and dies without answering.
  std::atomic<bool> took_command{false};
  std::thread doomed([&] {
    saga::ZmqParticipantOptions options;
    options.orchestrator_endpoint = endpoint_;
    options.service = "inventory";
    options.instance = "inventory-doomed";
    options.heartbeat_interval = 50ms;
    saga::ZmqParticipantConnection connection(options);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!took_command.load() && std::chrono::steady_clock::now() < deadline)
      if (connection.receive(20ms)) took_command.store(true);
  });
  // Give the doomed instance time to announce before the saga starts, so it gets the command.
  std::this_thread::sleep_for(200ms);
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  doomed.join();
  ASSERT_TRUE(took_command.load());

  ParticipantThread inventory(endpoint_, "inventory", "inventory-2", path("inventory.db"));
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);
  EXPECT_GE(inventory.handled(), 1);
}

TEST_F(ZmqOrderFlowTest, ParticipantRestartedAfterItsCommitAnswersTheResentCommandOnce) {
  start_engine();
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  // Incarnation 1 of payment charges (and commits) but crashes before sending its reply.
  std::atomic<bool> charged{false};
  std::thread crashing([&] {
    auto ledger = open_ledger(path("payment.db"));
    saga::ZmqParticipantOptions options;
    options.orchestrator_endpoint = endpoint_;
    options.service = "payment";
    options.instance = "payment-1";
    options.heartbeat_interval = 50ms;
    saga::ZmqParticipantConnection connection(options);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!charged.load() && std::chrono::steady_clock::now() < deadline) {
      auto bytes = connection.receive(20ms);
      if (!bytes) continue;
      auto command = std::get<saga::Envelope>(saga::decode_envelope(*bytes));
      ASSERT_TRUE(ledger
                      ->process_once(command.event_id,
                                     [&](saga::ParticipantLedger::Unit& unit) {
                                       record_effect(unit, "charge", "order-1");
                                       return saga::test::reply_bytes(command, "payment.Charged",
                                                                      {{"payment_id", "pay-1"}});
                                     })
                      .ok());
      charged.store(true);  // ... and the process dies here, reply unsent
    }
  });
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  crashing.join();
  ASSERT_TRUE(charged.load());

  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);
  payment.stop();
  auto ledger = open_ledger(path("payment.db"));
  EXPECT_EQ(count_effects(ledger->connection(), "charge", "order-1"), 1) << "charged twice";
}

TEST_F(ZmqOrderFlowTest, DuplicatedAndLateRepliesHaveNoEffect) {
  start_engine();
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  saga::ZmqParticipantOptions options;
  options.orchestrator_endpoint = endpoint_;
  options.service = "inventory";
  options.heartbeat_interval = 50ms;
  saga::ZmqParticipantConnection inventory(options);
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  std::optional<std::string> bytes;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!bytes && std::chrono::steady_clock::now() < deadline) bytes = inventory.receive(20ms);
  ASSERT_TRUE(bytes);
  auto command = std::get<saga::Envelope>(saga::decode_envelope(*bytes));
  std::string encoded =
      saga::test::reply_bytes(command, "inventory.Reserved", {{"reservation_id", "res-1"}});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(inventory.send(encoded));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);
  ASSERT_TRUE(inventory.send(encoded));  // late, after the saga ended
  // Keep the connection alive (heartbeats) while the engine catches up.
  auto until = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < until) inventory.receive(20ms);
  EXPECT_EQ(engine_->stats().duplicates, 3u);
  EXPECT_TRUE(dead_letters().empty());
}

TEST_F(ZmqOrderFlowTest, BadInputOverARealSocketIsDeadLetteredAndEveryoneElseIsServed) {
  start_engine();
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  // The rogue is the only inventory instance: it gets the saga's command, then misbehaves.
  saga::ZmqParticipantOptions options;
  options.orchestrator_endpoint = endpoint_;
  options.service = "inventory";
  options.instance = "rogue";
  options.heartbeat_interval = 50ms;
  auto rogue = std::make_unique<saga::ZmqParticipantConnection>(options);
  std::this_thread::sleep_for(100ms);  // let the announce arrive first
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  std::optional<std::string> bytes;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!bytes && std::chrono::steady_clock::now() < deadline) bytes = rogue->receive(20ms);
  ASSERT_TRUE(bytes);
  auto command = std::get<saga::Envelope>(saga::decode_envelope(*bytes));

  auto envelope = [&](nlohmann::json changes) {
    nlohmann::json json = {{"eventId", saga::new_uuid()},
                           {"eventType", "inventory.Reserved"},
                           {"timestamp", "2026-11-26T10:00:00Z"},
                           {"kind", "reply"},
                           {"correlationId", id},
                           {"causationId", command.event_id},
                           {"data", {{"reservation_id", "r"}}}};
    for (auto& [key, value] : changes.items()) {
      if (value.is_null())
        json.erase(key);
      else
        json[key] = value;
    }
    return json.dump();
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"MESSAGE", "this is not json"}, "not_json"},
      {{"MESSAGE", "[1,2]"}, "not_object"},
      {{"MESSAGE", envelope({{"eventId", nullptr}})}, "missing_field"},
      {{"MESSAGE", envelope({{"timestamp", 1700000000}})}, "wrong_type"},
      {{"MESSAGE", envelope({{"eventType", "inventory.Teleported"}})}, "unknown_type"},
      {{"MESSAGE", envelope({{"kind", "gossip"}})}, "unknown_kind"},
      {{"MESSAGE", envelope({{"version", "9"}})}, "unsupported_version"},
      {{"MESSAGE",
        envelope({{"correlationId", saga::new_uuid()}, {"causationId", saga::new_uuid()}})},
       "unknown_saga"},
      {{"MESSAGE", envelope({{"correlationId", "another-request"}})}, "correlation_mismatch"},
      {{"MESSAGE", envelope({{"eventType", "payment.Charged"}, {"data", {{"payment_id", "p"}}}})},
       "unexpected"},
      {{"MESSAGE", envelope({{"correlationId", nullptr}})}, "missing_correlation"},
      {{"MESSAGE", "{}", "extra"}, "bad_frames"},
      {{"MESSAGE"}, "bad_frames"},
      {{"TELEPORT", "{}"}, "unknown_frame"},
  };
  for (const auto& [frames, code] : cases) ASSERT_TRUE(rogue->send_frames(frames));
  ASSERT_TRUE(wait_for([&] { return dead_letters_.size() >= cases.size(); }))
      << "only " << dead_letters().size() << " dead letters";
  std::vector<std::string> expected;
  for (const auto& [frames, code] : cases) expected.push_back(code);
  EXPECT_EQ(dead_letters(), expected);
  EXPECT_EQ(engine_->stats().dead_letters, cases.size());
  EXPECT_TRUE(outcomes().empty()) << "bad input changed the saga";

  // The sender is still served: its proper reply moves the saga on, and it completes.
  ASSERT_TRUE(rogue->send(envelope({})));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);

  // A frame over ZMQ_MAXMSGSIZE disconnects the rogue; nothing of it reaches the engine, and
  // everyone else is still served.
  rogue->send_frames({"MESSAGE", std::string(2 * 1024 * 1024, 'x')});
  std::this_thread::sleep_for(100ms);
  rogue.reset();
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  std::string second = engine_->start<order::OrderSaga>(order("order-2", 1000));
  ASSERT_TRUE(wait_outcomes(2));
  EXPECT_EQ(outcomes().at(second), saga::SagaStatus::Completed);
  EXPECT_EQ(dead_letters().size(), cases.size());
}

TEST_F(ZmqOrderFlowTest, ThrowingHandlerIsRetriedThenAnswersWithItsFailureReply) {
  start_engine();
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  std::atomic<int> attempts{0};
  std::atomic<bool> stopping{false};
  std::thread payment([&] {
    auto ledger = open_ledger(path("payment.db"));
    saga::ParticipantOptions options;
    options.connection.orchestrator_endpoint = endpoint_;
    options.connection.service = "payment";
    options.connection.heartbeat_interval = 50ms;
    options.handler_attempts = 3;
    options.on_error = [](const std::string&) {};
    saga::Participant participant(options, *ledger);
    participant.on<payment::Charge>(
        [&](const payment::Charge&, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
          ++attempts;
          record_effect(unit, "charge", "order-1");  // rolled back with the attempt
          throw std::runtime_error("gateway timeout");
        },
        [](const payment::Charge&, const std::string& error) -> saga::Reply {
          return payment::Declined{error};
        });
    participant.on<payment::Refund>(
        [](const payment::Refund& command, saga::ParticipantLedger::Unit&) -> saga::Reply {
          return payment::Refunded{command.payment_id};
        });
    while (!stopping.load()) participant.poll(20ms);
  });
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  bool ended = wait_outcomes(1);
  stopping.store(true);
  payment.join();
  ASSERT_TRUE(ended);
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Compensated);
  EXPECT_EQ(attempts.load(), 3);
  auto ledger = open_ledger(path("payment.db"));
  EXPECT_EQ(count_effects(ledger->connection(), "charge", "order-1"), 0);
}

// The orchestrator's side of the wire, played by the test on a raw ROUTER: a participant
// connects to endpoint, handshake() answers its ANNOUNCE, and commands go out as MESSAGE frames.
class RawOrchestrator {
 public:
  RawOrchestrator() {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint = router_.get(zmq::sockopt::last_endpoint);
  }

  void handshake() {
    auto announce = receive(5000ms);
    ASSERT_EQ(announce.size(), 3u);
    ASSERT_EQ(announce[1].to_string(), "ANNOUNCE");
    identity_ = announce[0].to_string();
    send("WELCOME", R"({"protocol":1,"heartbeatMs":1000,"liveness":3})");
  }

  void send(std::string_view type, const std::string& body) {
    std::array<zmq::const_buffer, 3> frames{zmq::buffer(identity_), zmq::buffer(type),
                                            zmq::buffer(body)};
    ASSERT_TRUE(zmq::send_multipart(router_, frames));
  }

  // The next MESSAGE body (heartbeats skipped), or nullopt when none came within `wait`.
  std::optional<std::string> next_message(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto frames = receive(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (frames.size() == 3 && frames[1].to_string() == "MESSAGE") return frames[2].to_string();
    }
    return std::nullopt;
  }

  std::string endpoint;

 private:
  std::vector<zmq::message_t> receive(std::chrono::milliseconds wait) {
    std::vector<zmq::message_t> frames;
    zmq_pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, wait) == 1)
      (void)zmq::recv_multipart(router_, std::back_inserter(frames));
    return frames;
  }

  zmq::context_t context_;
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::string identity_;
};

// A participant's options for the raw orchestrator, its errors ignored.
saga::ParticipantOptions raw_participant_options(const RawOrchestrator& orchestrator,
                                                 std::string service) {
  saga::ParticipantOptions options;
  options.connection.orchestrator_endpoint = orchestrator.endpoint;
  options.connection.service = std::move(service);
  options.on_error = [](const std::string&) {};
  return options;
}

// A payment participant's options for the raw orchestrator, its errors collected in `errors`.
saga::ParticipantOptions payment_options(const RawOrchestrator& orchestrator,
                                         std::vector<std::string>& errors) {
  saga::ParticipantOptions options = raw_participant_options(orchestrator, "payment");
  options.on_error = [&errors](const std::string& error) { errors.push_back(error); };
  return options;
}

saga::Envelope command_envelope(std::string type, nlohmann::json data) {
  saga::Envelope command;
  command.event_id = saga::new_uuid();
  command.event_type = std::move(type);
  command.timestamp = std::chrono::system_clock::now();
  command.source = "orchestrator";
  command.correlation_id = saga::new_uuid();
  command.kind = saga::MessageKind::command;
  command.data = std::move(data);
  return command;
}

// A payment.Charge command for `order_id` as the orchestrator puts it on the wire.
std::string encoded_charge(const std::string& order_id) {
  return saga::encode_envelope(
      command_envelope(std::string(payment::Charge::type), payment::Charge{order_id, "c", 100}));
}

// The participant SDK's group commit, with this test playing the orchestrator on a raw ROUTER:
// commands that arrive together are handled in one ledger transaction and answered after it; a
// command whose handler throws has only its own writes undone and is retried alone.
int ledger_commits = 0;
int count_ledger_commit(void*) {
  ++ledger_commits;
  return 0;
}

TEST_F(ZmqOrderFlowTest, ParticipantHandlesABurstInOneLedgerTransaction) {
  RawOrchestrator orchestrator;
  auto ledger = open_ledger(path("inventory.db"));
  saga::ParticipantOptions options = raw_participant_options(orchestrator, "inventory");
  std::vector<std::pair<std::string, bool>> reported;  // on_answered: command id, duplicate
  options.on_answered = [&](const saga::Envelope& command, bool duplicate) {
    reported.emplace_back(command.event_id, duplicate);
  };
  saga::Participant participant(options, *ledger);
  int flaky_attempts = 0;
  participant.on<inventory::Reserve>(
      [&](const inventory::Reserve& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        record_effect(unit, "reserve", command.order_id);
        if (command.order_id == "order-3" && ++flaky_attempts == 1)
          throw std::runtime_error("flaky warehouse");
        return inventory::Reserved{"res-" + command.order_id};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());

  constexpr int kCommands = 6;
  std::vector<std::string> command_ids;
  for (int i = 1; i <= kCommands; ++i) {
    saga::Envelope command =
        command_envelope(std::string(inventory::Reserve::type),
                         inventory::Reserve{"order-" + std::to_string(i), {{"sku-1", 1, 100}}});
    command_ids.push_back(command.event_id);
    orchestrator.send("MESSAGE", saga::encode_envelope(command));
    if (i == kCommands)
      orchestrator.send("MESSAGE", saga::encode_envelope(command));  // and a duplicate
  }
  std::this_thread::sleep_for(200ms);  // let every frame reach the participant's socket

  ledger_commits = 0;
  sqlite3_commit_hook(ledger->connection(), count_ledger_commit, nullptr);
  EXPECT_EQ(participant.poll(1000ms), static_cast<std::size_t>(kCommands + 1));
  sqlite3_commit_hook(ledger->connection(), nullptr, nullptr);
  EXPECT_EQ(ledger_commits, 2) << "one commit for the burst, one for the flaky command's retry";
  EXPECT_EQ(flaky_attempts, 2);

  std::vector<std::string> answered;
  for (int i = 0; i < kCommands + 1; ++i) {
    auto body = orchestrator.next_message(5000ms);
    ASSERT_TRUE(body);
    auto reply = saga::decode_envelope(*body);
    ASSERT_TRUE(std::holds_alternative<saga::Envelope>(reply));
    EXPECT_EQ(std::get<saga::Envelope>(reply).event_type, inventory::Reserved::type);
    answered.push_back(std::get<saga::Envelope>(reply).causation_id);
  }
  std::vector<std::string> expected = command_ids;
  expected.push_back(command_ids.back());
  EXPECT_EQ(answered, expected) << "every command answered once, in arrival order";
  ASSERT_EQ(reported.size(), expected.size()) << "on_answered once per answered command";
  for (std::size_t i = 0; i < reported.size(); ++i) {
    EXPECT_EQ(reported[i].first, expected[i]);
    EXPECT_EQ(reported[i].second, i == reported.size() - 1) << "only the repeat is a duplicate";
  }
  for (int i = 1; i <= kCommands; ++i)
    EXPECT_EQ(count_effects(ledger->connection(), "reserve", "order-" + std::to_string(i)), 1)
        << "order-" << i;
}

// A batch stops taking commands once their bytes reach ParticipantOptions::max_batch_bytes (the
// command that crosses the budget is taken): six equal commands, a budget just over two of them,
// make batches of at most three (two of three once every frame has arrived).
TEST_F(ZmqOrderFlowTest, ParticipantBatchStopsOnceItsCommandsBytesReachMaxBatchBytes) {
  RawOrchestrator orchestrator;
  auto ledger = open_ledger(path("inventory.db"));
  std::vector<std::string> commands;
  for (int i = 1; i <= 6; ++i)
    commands.push_back(saga::encode_envelope(
        command_envelope(std::string(inventory::Reserve::type),
                         inventory::Reserve{"order-" + std::to_string(i), {{"sku-1", 1, 100}}})));
  ASSERT_EQ(commands.front().size(), commands.back().size());
  saga::ParticipantOptions options = raw_participant_options(orchestrator, "inventory");
  options.max_batch_bytes = 2 * commands.front().size() + 1;
  saga::Participant participant(options, *ledger);
  participant.on<inventory::Reserve>(
      [&](const inventory::Reserve& command, saga::ParticipantLedger::Unit&) -> saga::Reply {
        return inventory::Reserved{"res-" + command.order_id};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());
  for (const auto& command : commands) orchestrator.send("MESSAGE", command);
  std::this_thread::sleep_for(200ms);  // let every frame reach the participant's socket

  std::vector<std::size_t> batches;
  std::size_t answered = 0;
  for (int polls = 0; polls < 10 && answered < commands.size(); ++polls) {
    const std::size_t batch = participant.poll(1000ms);
    if (batch > 0) batches.push_back(batch);
    answered += batch;
  }
  EXPECT_EQ(answered, commands.size());
  ASSERT_FALSE(batches.empty());
  EXPECT_EQ(*std::max_element(batches.begin(), batches.end()), 3u)
      << "no batch past the one command that crosses the budget, and a full one";
}

// A ledger whose next `failures` transactions fail as if the database were locked.
class FailingLedger final : public saga::ParticipantLedger {
 public:
  explicit FailingLedger(saga::ParticipantLedger& inner) : inner_(inner) {}
  int failures = 0;

  saga::StoreResult<Result> process_once(const std::string& command_id,
                                         const std::function<std::string(Unit&)>& work) override {
    if (failures > 0 && failures-- > 0)
      return saga::StoreError{saga::StoreErrorCode::busy, "database is locked"};
    return inner_.process_once(command_id, work);
  }
  saga::StoreResult<std::optional<std::string>> recorded_reply(
      const std::string& command_id) override {
    return inner_.recorded_reply(command_id);
  }
  void record_compensated(Unit& unit, const std::string& command_id) override {
    inner_.record_compensated(unit, command_id);
  }

 private:
  saga::ParticipantLedger& inner_;
};

// The orchestrator's re-send of `charge` (after its timeout), once the fault is gone: handled,
// answered with Charged, its effect applied once.
void expect_resent_charge_handled(RawOrchestrator& orchestrator, saga::Participant& participant,
                                  const std::string& charge, sqlite3* ledger) {
  orchestrator.send("MESSAGE", charge);
  EXPECT_EQ(participant.poll(2000ms), 1u);
  auto reply = orchestrator.next_message(5000ms);
  ASSERT_TRUE(reply);
  EXPECT_EQ(std::get<saga::Envelope>(saga::decode_envelope(*reply)).event_type,
            payment::Charged::type);
  EXPECT_EQ(count_effects(ledger, "charge", "order-1"), 1);
}

// A storage failure used to count as a failed handler attempt: once they ran out, the failure
// builder's reply ("declined: database is locked") was recorded for good, and the saga
// compensated for an infrastructure hiccup.
TEST_F(ZmqOrderFlowTest, ParticipantStorageFailureIsNotAnsweredAndTheResentCommandIsHandled) {
  RawOrchestrator orchestrator;
  auto sqlite_ledger = open_ledger(path("payment.db"));
  FailingLedger ledger(*sqlite_ledger);
  std::vector<std::string> errors;
  saga::ParticipantOptions options = payment_options(orchestrator, errors);
  options.handler_attempts = 3;
  saga::Participant participant(options, ledger);
  participant.on<payment::Charge>(
      [](const payment::Charge& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        record_effect(unit, "charge", command.order_id);
        return payment::Charged{"pay-" + command.order_id};
      },
      [](const payment::Charge&, const std::string& error) -> saga::Reply {
        return payment::Declined{error};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());

  const std::string charge = encoded_charge("order-1");
  const std::string charge_id = std::get<saga::Envelope>(saga::decode_envelope(charge)).event_id;
  ledger.failures = 3;
  orchestrator.send("MESSAGE", charge);
  EXPECT_EQ(participant.poll(2000ms), 0u);
  EXPECT_FALSE(orchestrator.next_message(300ms)) << "answered a storage failure";
  EXPECT_FALSE(sqlite_ledger->recorded_reply(charge_id).value()) << "recorded an answer";
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("database is locked"), std::string::npos) << errors[0];

  ledger.failures = 0;  // the lock is gone
  expect_resent_charge_handled(orchestrator, participant, charge, sqlite_ledger->connection());
}

// A handler's own statement failing (a locked table, a full disk) used to be a failed attempt
// like a business error: once the attempts ran out, the failure builder's reply ("declined:
// SQLite step failed: disk I/O error") was recorded for good, and the saga compensated.
TEST_F(ZmqOrderFlowTest, HandlerStorageFailureIsNotAnsweredAndTheResentCommandIsHandled) {
  RawOrchestrator orchestrator;
  auto ledger = open_ledger(path("payment.db"));
  std::vector<std::string> errors;
  saga::ParticipantOptions options = payment_options(orchestrator, errors);
  options.handler_attempts = 3;
  saga::Participant participant(options, *ledger);
  enum class Fault { none, throws, rolled_back } fault = Fault::throws;
  int failure_replies = 0;
  participant.on<payment::Charge>(
      [&](const payment::Charge& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        record_effect(unit, "charge", command.order_id);
        if (fault == Fault::throws)
          throw saga::StorageFailure("disk I/O error", saga::StoreErrorCode::io_error);
        if (fault == Fault::rolled_back)  // as SQLite does itself on SQLITE_FULL, then caught
          sqlite3_exec(saga::sqlite_connection(unit), "ROLLBACK", nullptr, nullptr, nullptr);
        return payment::Charged{"pay-" + command.order_id};
      },
      [&](const payment::Charge&, const std::string& error) -> saga::Reply {
        ++failure_replies;
        return payment::Declined{error};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());

  const std::string charge = encoded_charge("order-1");
  const std::string charge_id = std::get<saga::Envelope>(saga::decode_envelope(charge)).event_id;
  for (Fault failing : {Fault::throws, Fault::rolled_back}) {
    fault = failing;
    orchestrator.send("MESSAGE", charge);
    EXPECT_EQ(participant.poll(2000ms), 0u);
    EXPECT_FALSE(orchestrator.next_message(300ms)) << "answered a storage failure";
    EXPECT_FALSE(ledger->recorded_reply(charge_id).value()) << "recorded an answer";
    EXPECT_EQ(count_effects(ledger->connection(), "charge", "order-1"), 0);
  }
  EXPECT_EQ(failure_replies, 0);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("disk I/O error"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("rolled the transaction back"), std::string::npos) << errors[1];

  fault = Fault::none;  // the disk is back
  expect_resent_charge_handled(orchestrator, participant, charge, ledger->connection());
}

// A batch that found the database locked past the busy timeout used to be handled again one
// command at a time, each waiting the busy timeout again: 64 commands, 5 minutes in one poll(),
// and no heartbeat meanwhile. Now none of it is answered; the orchestrator re-sends.
TEST_F(ZmqOrderFlowTest, BatchThatFindsTheLedgerLockedIsNotRetriedOneCommandAtATime) {
  RawOrchestrator orchestrator;
  auto sqlite_ledger = open_ledger(path("payment.db"));
  FailingLedger ledger(*sqlite_ledger);
  std::vector<std::string> errors;
  saga::ParticipantOptions options = payment_options(orchestrator, errors);
  saga::Participant participant(options, ledger);
  participant.on<payment::Charge>(
      [](const payment::Charge& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        record_effect(unit, "charge", command.order_id);
        return payment::Charged{"pay-" + command.order_id};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());
  for (const char* order : {"order-1", "order-2", "order-3"})
    orchestrator.send("MESSAGE", encoded_charge(order));
  std::this_thread::sleep_for(200ms);  // all three reach the socket: one batch
  ledger.failures = 1;                 // the batch's transaction meets the lock
  EXPECT_EQ(participant.poll(2000ms), 0u);
  EXPECT_EQ(ledger.failures, 0) << "one attempt at the lock, not one per command";
  EXPECT_FALSE(orchestrator.next_message(300ms));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("3 commands"), std::string::npos) << errors[0];
}

// An oversized reply used to be recorded with the effect and then refused by the orchestrator
// (too_large) at every re-send, until the step was given up on with its effect in place.
TEST_F(ZmqOrderFlowTest, ReplyLargerThanTheLimitIsAFailedAttemptAndNeverRecorded) {
  RawOrchestrator orchestrator;
  auto ledger = open_ledger(path("payment.db"));
  std::vector<std::string> errors;
  saga::ParticipantOptions options = payment_options(orchestrator, errors);
  options.handler_attempts = 2;
  options.max_reply_bytes = 4096;
  saga::Participant participant(options, *ledger);
  participant.on<payment::Charge>(
      [](const payment::Charge& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
        record_effect(unit, "charge", command.order_id);
        return payment::Charged{std::string(8192, 'p')};
      },
      [](const payment::Charge&, const std::string& error) -> saga::Reply {
        return payment::Declined{error.substr(0, 200)};
      });
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());

  orchestrator.send("MESSAGE", encoded_charge("order-1"));
  EXPECT_EQ(participant.poll(2000ms), 1u);
  auto reply = orchestrator.next_message(5000ms);
  ASSERT_TRUE(reply);
  auto envelope = std::get<saga::Envelope>(saga::decode_envelope(*reply));
  EXPECT_EQ(envelope.event_type, payment::Declined::type);
  EXPECT_NE(envelope.data.at("reason").get<std::string>().find("max_reply_bytes"),
            std::string::npos);
  EXPECT_EQ(count_effects(ledger->connection(), "charge", "order-1"), 0) << "effect kept";
}

// A command handled before an upgrade that dropped its handler, re-sent because the reply was
// lost, used to be refused ("no handler") although the ledger held its reply: the step timed out
// with the effect in place.
TEST_F(ZmqOrderFlowTest, ResentCommandThisBuildCannotRouteIsAnsweredFromTheLedger) {
  RawOrchestrator orchestrator;
  auto ledger = open_ledger(path("payment.db"));
  const std::string handled = encoded_charge("order-1");
  const std::string handled_id = std::get<saga::Envelope>(saga::decode_envelope(handled)).event_id;
  const std::string recorded = "the reply sent before the upgrade";
  ASSERT_TRUE(ledger->process_once(handled_id, [&](auto&) { return recorded; }));

  std::vector<std::string> errors;
  saga::ParticipantOptions options = payment_options(orchestrator, errors);
  saga::Participant participant(options, *ledger);  // no handler for payment.Charge any more
  ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());

  orchestrator.send("MESSAGE", handled);
  EXPECT_EQ(participant.poll(2000ms), 1u);
  EXPECT_EQ(orchestrator.next_message(5000ms), recorded);
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(participant.stats().duplicates, 1u);

  orchestrator.send("MESSAGE", encoded_charge("order-2"));
  EXPECT_EQ(participant.poll(2000ms), 0u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("no handler"), std::string::npos) << errors[0];
}

// The orchestrator gave up on a Charge (no reply after its retries) and sent the Refund naming it
// in `compensates`. Should the Charge itself arrive after the Refund (a stalled queue, a slow
// instance), charging then would leave a charge nothing refunds: it must not be handled.
class CompensatedFirstTest : public ZmqOrderFlowTest {
 protected:
  void SetUp() override {
    ZmqOrderFlowTest::SetUp();
    ledger = open_ledger(path("payment.db"));
    options.connection.orchestrator_endpoint = orchestrator.endpoint;
    options.connection.service = "payment";
    options.on_error = [&](const std::string& error) { errors.push_back(error); };
    options.on_answered = [&](const saga::Envelope& command, bool) {
      answered.push_back(command.event_type);
    };
    participant = std::make_unique<saga::Participant>(options, *ledger);
    participant->on<payment::Charge>(
        [](const payment::Charge& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
          record_effect(unit, "charge", command.order_id);
          return payment::Charged{"pay-" + command.order_id};
        });
    participant->on<payment::Refund>(
        [](const payment::Refund& command, saga::ParticipantLedger::Unit& unit) -> saga::Reply {
          record_effect(unit, "refund", command.order_id);
          return payment::Refunded{command.payment_id};
        });
    ASSERT_NO_FATAL_FAILURE(orchestrator.handshake());
    charge =
        command_envelope(std::string(payment::Charge::type), payment::Charge{"order-1", "c", 100});
    saga::Envelope refund_envelope =
        command_envelope(std::string(payment::Refund::type), payment::Refund{"order-1", "", 100});
    refund_envelope.compensates = charge.event_id;
    refund = saga::encode_envelope(refund_envelope);
  }

  int effects(const std::string& kind) {
    return count_effects(ledger->connection(), kind, "order-1");
  }

  RawOrchestrator orchestrator;
  std::unique_ptr<saga::SqliteParticipantLedger> ledger;
  saga::ParticipantOptions options;
  std::unique_ptr<saga::Participant> participant;
  std::vector<std::string> errors, answered;
  saga::Envelope charge;
  std::string refund;
};

TEST_F(CompensatedFirstTest, StepCommandArrivingAfterItsCompensationIsNeitherHandledNorAnswered) {
  orchestrator.send("MESSAGE", refund);
  EXPECT_EQ(participant->poll(2000ms), 1u);
  ASSERT_TRUE(orchestrator.next_message(5000ms));
  orchestrator.send("MESSAGE", saga::encode_envelope(charge));
  orchestrator.send("MESSAGE", saga::encode_envelope(charge));  // and its re-send
  EXPECT_EQ(participant->poll(2000ms), 0u);
  participant->poll(200ms);
  EXPECT_EQ(effects("charge"), 0) << "charged after the refund";
  EXPECT_EQ(effects("refund"), 1);
  EXPECT_FALSE(orchestrator.next_message(300ms)) << "the late charge was answered";
  EXPECT_EQ(participant->stats().compensated_first, 2u);
  EXPECT_EQ(participant->stats().handled, 1u);
  EXPECT_EQ(answered, std::vector<std::string>{"payment.Refund"});
  EXPECT_TRUE(errors.empty()) << errors.front();
}

TEST_F(CompensatedFirstTest, CompensationAheadOfItsCommandInOneBatchStillWins) {
  orchestrator.send("MESSAGE", refund);
  orchestrator.send("MESSAGE", saga::encode_envelope(charge));
  std::this_thread::sleep_for(200ms);  // both queued: one poll, one ledger transaction
  EXPECT_EQ(participant->poll(2000ms), 1u);
  EXPECT_EQ(effects("charge"), 0);
  EXPECT_EQ(effects("refund"), 1);
  EXPECT_EQ(participant->stats().compensated_first, 1u);
}

TEST_F(CompensatedFirstTest, CompensationAfterItsCommandUndoesItAndTheRepeatIsAnsweredAsBefore) {
  orchestrator.send("MESSAGE", saga::encode_envelope(charge));
  EXPECT_EQ(participant->poll(2000ms), 1u);
  auto charged = orchestrator.next_message(5000ms);
  ASSERT_TRUE(charged);
  orchestrator.send("MESSAGE", refund);
  EXPECT_EQ(participant->poll(2000ms), 1u);
  ASSERT_TRUE(orchestrator.next_message(5000ms));
  EXPECT_EQ(effects("charge"), 1);
  EXPECT_EQ(effects("refund"), 1);
  orchestrator.send("MESSAGE", saga::encode_envelope(charge));
  EXPECT_EQ(participant->poll(2000ms), 1u);
  EXPECT_EQ(orchestrator.next_message(5000ms), charged) << "the recorded reply, byte for byte";
  EXPECT_EQ(participant->stats().compensated_first, 0u);
}

// End to end, over real sockets: an instance of the payment service receives a Charge and stalls
// (it stops polling) before handling it. The engine gives up on the Charge and sends the Refund,
// which another instance sharing the ledger handles first. When the stalled instance wakes up
// and reads the Charge, charging then would leave a charge that nothing refunds.
TEST_F(ZmqOrderFlowTest, ChargeReachingAStalledInstanceAfterItsRefundIsNeverCarriedOut) {
  // The engine hears nothing from the stalled instance for 600 ms (3 x 200 ms): dead, so the
  // Refund waits for another instance. It gives up on the Charge after 1 s.
  start_engine(
      std::nullopt,
      [](saga::Options& options) {
        options.retry_by_command["payment.Charge"] = {1000ms, 1.0, 1000ms, 0.0, 1};
      },
      200ms);
  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"));
  auto stalled_ledger = open_ledger(path("payment.db"));
  saga::ParticipantOptions options;
  options.connection.orchestrator_endpoint = endpoint_;
  options.connection.service = "payment";
  options.connection.instance = "payment-stalled";
  options.connection.heartbeat_interval = 200ms;
  options.on_error = [](const std::string&) {};
  saga::Participant stalled(options, *stalled_ledger);
  add_handlers("payment", stalled);
  stalled.poll(100ms);  // announced and welcomed; from now on it stalls

  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  std::this_thread::sleep_for(1500ms);  // the Charge went to the stalled instance and timed out
  EXPECT_EQ(store_->load_saga(id).value()->state, "compensating:payment.Refund");
  ParticipantThread payment(endpoint_, "payment", "payment-2", path("payment.db"));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes()[id], saga::SagaStatus::Compensated);

  for (int i = 0; i < 20 && stalled.stats().compensated_first == 0; ++i) stalled.poll(50ms);
  EXPECT_EQ(stalled.stats().compensated_first, 1u) << "the Charge never reached the stalled one";
  EXPECT_EQ(stalled.stats().handled, 0u);
  payment.stop();
  EXPECT_EQ(count_effects(stalled_ledger->connection(), "charge", "order-1"), 0)
      << "charged after the refund";
  EXPECT_EQ(count_effects(stalled_ledger->connection(), "refund", "order-1"), 1);
  inventory.stop();
  auto inventory_ledger = open_ledger(path("inventory.db"));
  EXPECT_EQ(count_effects(inventory_ledger->connection(), "release", "order-1"), 1);
}

class ZmqCurveOrderFlowTest : public ZmqOrderFlowTest {
 protected:
  struct KeyPair {
    std::string public_file, secret_file;
  };
  KeyPair make_keys(const std::string& name) {
    char public_key[41], secret_key[41];
    EXPECT_EQ(zmq_curve_keypair(public_key, secret_key), 0);
    KeyPair pair{path(name + ".public"), path(name + ".secret")};
    std::ofstream(pair.public_file) << public_key << "\n";
    std::ofstream(pair.secret_file) << secret_key << "\n";
    return pair;
  }
};

TEST_F(ZmqCurveOrderFlowTest, ListedParticipantsWorkAndOthersCannotReachTheEngine) {
  KeyPair server = make_keys("server");
  KeyPair inventory_keys = make_keys("inventory");
  KeyPair payment_keys = make_keys("payment");
  KeyPair shipping_keys = make_keys("shipping");
  KeyPair stranger = make_keys("stranger");
  start_engine(saga::CurveServerOptions{
      server.secret_file,
      {inventory_keys.public_file, payment_keys.public_file, shipping_keys.public_file}});
  auto client = [&](const KeyPair& keys) {
    return saga::CurveClientOptions{server.public_file, keys.public_file, keys.secret_file};
  };

  // Unlisted key and plain TCP: their replies must never reach the engine.
  saga::ZmqParticipantOptions options;
  options.orchestrator_endpoint = endpoint_;
  options.service = "inventory";
  options.heartbeat_interval = 50ms;
  options.curve = client(stranger);
  saga::ZmqParticipantConnection unlisted(options);
  options.curve.reset();
  saga::ZmqParticipantConnection plain(options);
  for (int i = 0; i < 5; ++i) {
    unlisted.send_frames({"MESSAGE", "not json from an unlisted key"});
    plain.send_frames({"MESSAGE", "not json from a plain socket"});
  }

  ParticipantThread inventory(endpoint_, "inventory", "inventory-1", path("inventory.db"),
                              client(inventory_keys));
  ParticipantThread payment(endpoint_, "payment", "payment-1", path("payment.db"),
                            client(payment_keys));
  ParticipantThread shipping(endpoint_, "shipping", "shipping-1", path("shipping.db"),
                             client(shipping_keys));
  std::string id = engine_->start<order::OrderSaga>(order("order-1", 1000));
  ASSERT_TRUE(wait_outcomes(1));
  EXPECT_EQ(outcomes().at(id), saga::SagaStatus::Completed);
  EXPECT_TRUE(dead_letters().empty()) << "a refused peer's bytes reached the engine";
  EXPECT_FALSE(unlisted.connected());
  EXPECT_FALSE(plain.connected());
}

}  // namespace
