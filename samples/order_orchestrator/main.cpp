// The order orchestrator service: the engine with the order saga, on the ZeroMQ transport, with a
// small request socket where clients place orders. The model for embedding the engine in your
// own service (docs/embedding.md walks through it).
//
// Intake protocol (ZeroMQ REQ/REP, one JSON object each way; samples/README.md has the details):
//   {"op": "start", "order": {...OrderData...}, "correlationId": "<request id, optional>"}
//                                                -> {"ok": true, "sagaId": "<uuid>"}
//   {"op": "start_many", "orders": [{...}, ...]}  -> {"ok": true, "sagaIds": ["<uuid>", ...]}
//   {"op": "status", "sagaIds": ["<uuid>", ...]} -> {"ok": true, "statuses": {"<uuid>": "Running"}}
//   {"op": "outcomes", "after": N}               -> {"ok": true, "next": M, "outcomes": [...]}
//   {"op": "stats"}                              -> {"ok": true, "stats": {...EngineStats...}}
//   anything else                                -> {"ok": false, "error": "..."}
// Statuses of sagas in flight come from memory, any other saga's from the database (a read-only
// connection of the intake thread's own), so memory holds only what is in flight. The outcome
// log records the
// sagas that ended since its first "outcomes" request, each with the time its outcome was
// reported; a request acknowledges (and frees) the entries before `after`.
//
// Logs go to stderr through the engine's logger (--log-format json|console, --log-level); the
// engine writes one info line per saga outcome. With --metrics-listen HOST:PORT the engine's
// metrics are served at http://HOST:PORT/metrics (port 0: any free port, printed at start).
#include <sqlite3.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/log.hpp"
#include "saga/metrics.hpp"
#include "saga/metrics_http.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/sqlite_tuning.hpp"
#include "saga/zmq_transport.hpp"

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

// Serves the intake socket until stopped. Starts go straight to Engine::start (thread-safe); the
// sagas in flight are kept in memory until the engine's outcome callback reports their end, after
// the commit that ended them; statuses of the others are read from the database.
class Intake {
 public:
  Intake(const std::string& endpoint, saga::Engine& engine, std::string db_path)
      : engine_(engine), db_path_(std::move(db_path)), socket_(context_, zmq::socket_type::rep) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::maxmsgsize, int64_t{1024 * 1024});
    socket_.bind(endpoint);
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  std::string endpoint() const { return endpoint_; }

  void record(const saga::SagaOutcome& outcome) {
    const auto ended_at_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    std::lock_guard lock(mutex_);
    // A saga can end in its first turn, before start() below registered it.
    if (in_flight_.erase(outcome.saga_id) == 0) ended_before_registered_.insert(outcome.saga_id);
    if (recording_outcomes_) outcome_log_.push_back({outcome.saga_id, outcome.status, ended_at_us});
  }

  // A blocking receive with a timeout (to see `stopping`) rather than zmq::poll and then a
  // receive: each request then wakes this thread with one system call instead of three or four.
  void serve(const std::atomic<bool>& stopping) {
    socket_.set(zmq::sockopt::rcvtimeo, 100);
    while (!stopping.load()) {
      zmq::message_t request;
      try {
        if (!socket_.recv(request)) continue;  // timed out: look at `stopping` again
      } catch (const zmq::error_t& error) {
        if (error.num() == EINTR) continue;  // a signal (SIGTERM) landed on this thread
        throw;
      }
      nlohmann::json reply = answer(request.to_string_view());
      socket_.send(zmq::buffer(reply.dump()), zmq::send_flags::none);
    }
  }

 private:
  struct LoggedOutcome {
    std::string saga_id;
    saga::SagaStatus status;
    std::int64_t ended_at_us;  // system clock, microseconds since the Unix epoch
  };
  static constexpr std::size_t kMaxOutcomesPerReply = 10000;

  // `data`: an order as it came in, handed to the engine, which converts it to order::OrderData
  // (the saga's own data) and keeps the text as the start's journal entry: the request as the
  // client sent it. Converting a checked OrderData back to JSON would cost a tree per order.
  std::string start(nlohmann::json data, const std::string& correlation_id) {
    std::string id = engine_.start(order::OrderSaga::name, std::move(data), correlation_id);
    std::lock_guard lock(mutex_);
    if (ended_before_registered_.erase(id) == 0) in_flight_.insert(id);
    return id;
  }

  // The status stored for a saga, "Unknown" when there is none. Intake thread only.
  std::string stored_status(const std::string& saga_id) {
    if (!database_) {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(db_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        throw std::runtime_error("cannot read the database " + db_path_);
      }
      sqlite3_busy_timeout(db, 1000);
      database_.reset(db);
      sqlite3_stmt* statement = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT status FROM sagas WHERE id = ?1", -1, &statement,
                             nullptr) != SQLITE_OK) {
        std::string error = sqlite3_errmsg(db);
        database_.reset();
        throw std::runtime_error("cannot read the database " + db_path_ + ": " + error);
      }
      find_status_.reset(statement);
    }
    sqlite3_stmt* statement = find_status_.get();
    sqlite3_bind_text(statement, 1, saga_id.data(), static_cast<int>(saga_id.size()),
                      SQLITE_STATIC);
    const int rc = sqlite3_step(statement);
    std::string status = "Unknown";
    if (rc == SQLITE_ROW) status = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    sqlite3_reset(statement);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      throw std::runtime_error(std::string("reading a saga's status: ") +
                               sqlite3_errmsg(database_.get()));
    return status;
  }

  // Entries before `after` are acknowledged and dropped; the reply holds those from `after` on.
  nlohmann::json outcomes(std::uint64_t after) {
    std::lock_guard lock(mutex_);
    recording_outcomes_ = true;
    while (!outcome_log_.empty() && outcome_log_base_ < after) {
      outcome_log_.pop_front();
      ++outcome_log_base_;
    }
    nlohmann::json list = nlohmann::json::array();
    std::uint64_t next = std::max(after, outcome_log_base_);
    for (std::size_t i = next - outcome_log_base_;
         i < outcome_log_.size() && list.size() < kMaxOutcomesPerReply; ++i, ++next) {
      const LoggedOutcome& entry = outcome_log_[i];
      list.push_back({entry.saga_id, saga::to_string(entry.status), entry.ended_at_us});
    }
    return {{"ok", true}, {"next", next}, {"outcomes", std::move(list)}};
  }

  nlohmann::json stats() const {
    const saga::EngineStats s = engine_.stats();
    return {{"ok", true}, {"stats", {{"sagas_started", s.sagas_started},
                                     {"messages_received", s.messages_received},
                                     {"messages_applied", s.messages_applied},
                                     {"duplicates", s.duplicates},
                                     {"dead_letters", s.dead_letters},
                                     {"commits", s.commits},
                                     {"commit_failures", s.commit_failures},
                                     {"commands_sent", s.commands_sent},
                                     {"send_retries", s.send_retries},
                                     {"command_resends", s.command_resends},
                                     {"command_timeouts", s.command_timeouts},
                                     {"sagas_completed", s.sagas_completed},
                                     {"sagas_compensated", s.sagas_compensated},
                                     {"sagas_failed", s.sagas_failed},
                                     {"callback_errors", s.callback_errors},
                                     {"cached_sagas", s.cached_sagas},
                                     {"sagas_evicted", s.sagas_evicted},
                                     {"sagas_loaded", s.sagas_loaded},
                                     {"queued_commands", s.queued_commands},
                                     {"backlogged_commands", s.backlogged_commands}}}};
  }

  nlohmann::json answer(std::string_view text) {
    auto request = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (!request.is_object()) return {{"ok", false}, {"error", "request is not a JSON object"}};
    std::string op = request.value("op", "");
    try {
      if (op == "start") {
        // Engine::start refuses an order that does not convert (std::invalid_argument).
        return {
            {"ok", true},
            {"sagaId", start(std::move(request.at("order")), request.value("correlationId", ""))}};
      }
      if (op == "start_many") {
        // Every order is checked before any is started: a bad one refuses the whole request.
        nlohmann::json& orders = request.at("orders");
        if (!orders.is_array()) return {{"ok", false}, {"error", "orders must be an array"}};
        for (const auto& one : orders) one.get<order::OrderData>();
        nlohmann::json ids = nlohmann::json::array();
        for (auto& one : orders) ids.push_back(start(std::move(one), ""));
        return {{"ok", true}, {"sagaIds", std::move(ids)}};
      }
      if (op == "outcomes") return outcomes(request.value("after", std::uint64_t{0}));
      if (op == "stats") return stats();
      if (op == "status") {
        nlohmann::json statuses = nlohmann::json::object();
        for (const auto& id_json : request.at("sagaIds")) {
          const std::string id = id_json.get<std::string>();
          bool running = false;
          {
            std::lock_guard lock(mutex_);
            running = in_flight_.contains(id);
          }
          // Not in memory: ended (its final status committed before the outcome callback) or
          // never started by this process.
          statuses[id] = running ? "Running" : stored_status(id);
        }
        return {{"ok", true}, {"statuses", statuses}};
      }
      return {{"ok", false},
              {"error", "unknown op '" + op + "' (start, start_many, status, outcomes, stats)"}};
    } catch (const std::exception& error) {
      return {{"ok", false}, {"error", error.what()}};
    }
  }

  struct CloseDatabase {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
  };
  struct FinalizeStatement {
    void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
  };

  saga::Engine& engine_;
  std::string db_path_;
  std::unique_ptr<sqlite3, CloseDatabase> database_;  // the intake thread's read-only connection
  std::unique_ptr<sqlite3_stmt, FinalizeStatement> find_status_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string endpoint_;
  std::mutex mutex_;
  std::unordered_set<std::string> in_flight_;  // started by this process, not ended yet
  std::unordered_set<std::string> ended_before_registered_;
  bool recording_outcomes_ = false;
  std::deque<LoggedOutcome> outcome_log_;
  std::uint64_t outcome_log_base_ = 0;  // index of outcome_log_.front() since recording began
};

}  // namespace

int main(int argc, char** argv) {
  saga::disable_sqlite_memory_statistics();  // before anything in the process uses SQLite
  CLI::App app{
      "Order orchestrator: runs the order saga over ZeroMQ and takes orders on a "
      "request socket."};
  app.set_config("--config", "", "Read flags from an INI/TOML file (key = value per flag)");
  std::string router = "tcp://127.0.0.1:5555";
  std::string events = "tcp://127.0.0.1:5556";
  std::string intake_endpoint = "tcp://127.0.0.1:5557";
  std::string db = "order_orchestrator.db";
  std::string durability = "full";
  std::string sync = "background";
  std::string endpoints_file;
  std::size_t batch = saga::Options{}.max_batch_messages;
  int batch_delay_us = 0;
  std::size_t saga_cache = saga::Options{}.max_cached_sagas;
  std::size_t send_queue = saga::Options{}.max_queued_commands;
  int command_timeout_ms = 10000;
  int heartbeat_ms = 1000;
  std::string metrics_listen;
  std::string log_format = "console";
  std::string log_level = "info";
  saga::LagAlerts lag;
  std::int64_t lag_delay_warning_s = lag.delay_warning.count();
  std::int64_t lag_delay_critical_s = lag.delay_critical.count();
  app.add_option("--router", router, "ROUTER endpoint participants connect to ('*' port = any)")
      ->capture_default_str();
  app.add_option("--events", events,
                 "XPUB endpoint for saga lifecycle events, subscribe with SUB ('' = off)")
      ->capture_default_str();
  app.add_option("--intake", intake_endpoint, "REP endpoint where clients place orders")
      ->capture_default_str();
  app.add_option("--db", db, "SQLite database of the orchestrator")->capture_default_str();
  app.add_option("--durability", durability, "full (fsync per commit), normal or off")
      ->check(CLI::IsMember({"full", "normal", "off"}))
      ->capture_default_str();
  app.add_option(
         "--sync", sync,
         "With --durability full: 'background' (a store thread fsyncs while the loop goes "
         "on; commits made meanwhile share the next fsync) or 'commit' (inside each COMMIT)")
      ->check(CLI::IsMember({"background", "commit"}))
      ->capture_default_str();
  app.add_option("--batch", batch, "Max messages per transaction (group commit)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--batch-delay-us", batch_delay_us,
                 "Once a turn has a message, keep draining for up to this long before committing")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--saga-cache", saga_cache,
                 "Sagas kept in memory; past it, those used longest ago are read back when needed")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--send-queue", send_queue,
                 "Unsent commands kept in memory per participant; past it, the rest wait in the "
                 "outbox and are read back in order")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--command-timeout-ms", command_timeout_ms,
                 "Re-send a command after this long without a reply (doubling, max 5 min)")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", heartbeat_ms, "Heartbeat interval; 3 missed = dead")
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();
  app.add_option(
      "--endpoints-file", endpoints_file,
      "Write the bound endpoints here (router=..., events=..., intake=..., metrics=...)");
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 = any free port); "
                 "off when not given")
      ->check([](const std::string& value) -> std::string {
        try {
          saga::parse_listen_address(value);
          return "";
        } catch (const std::exception& error) {
          return error.what();
        }
      });
  app.add_option("--log-format", log_format, "Log lines on stderr: json or console")
      ->check(CLI::IsMember({"json", "console"}))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "Lowest level logged: debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--lag-pending-warning", lag.pending_warning,
                 "Lag alert: warning above this many unanswered commands (pending + awaiting)")
      ->capture_default_str();
  app.add_option("--lag-pending-critical", lag.pending_critical,
                 "Lag alert: critical above this many unanswered commands")
      ->capture_default_str();
  app.add_option("--lag-delay-warning-s", lag_delay_warning_s,
                 "Lag alert: warning when the oldest unanswered command is older (seconds)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--lag-delay-critical-s", lag_delay_critical_s,
                 "Lag alert: critical when the oldest unanswered command is older (seconds)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  lag.delay_warning = std::chrono::seconds{lag_delay_warning_s};
  lag.delay_critical = std::chrono::seconds{lag_delay_critical_s};

  auto logger = saga::make_stream_logger(std::cerr, *saga::log_format_from_string(log_format),
                                         *saga::log_level_from_string(log_level));
  auto log = [&](saga::LogLevel level, std::string message) {
    return saga::LogRecord(level, std::move(message)).with("service", "order_orchestrator");
  };

  saga::Options options;
  options.store.path = db;
  options.store.durability = durability == "full"     ? saga::Durability::full
                             : durability == "normal" ? saga::Durability::normal
                                                      : saga::Durability::off;
  options.store.sync_in_background = sync == "background";
  options.max_batch_messages = batch;
  options.max_batch_delay = std::chrono::microseconds{batch_delay_us};
  options.max_cached_sagas = saga_cache;
  options.max_queued_commands = send_queue;
  options.command_retry.timeout = std::chrono::milliseconds{command_timeout_ms};
  options.compensation_retry.timeout = std::chrono::milliseconds{command_timeout_ms};
  options.idle_wait = std::chrono::milliseconds{20};
  options.logger = logger;
  options.lag_alerts = lag;
  if (!metrics_listen.empty()) options.metrics = std::make_shared<saga::Metrics>();
  auto opened = saga::SqliteStore::open(options.store);
  if (!opened) {
    std::cerr << "order_orchestrator: " << opened.error().message << "\n";
    return 1;
  }
  auto store = std::move(opened).value();

  saga::ZmqTransportOptions transport_options;
  transport_options.router_endpoint = router;
  transport_options.events_endpoint = events;
  transport_options.heartbeat_interval = std::chrono::milliseconds{heartbeat_ms};
  std::unique_ptr<saga::ZmqTransport> transport;
  try {
    transport = saga::ZmqTransport::bind(transport_options);
  } catch (const std::exception& error) {
    std::cerr << "order_orchestrator: " << error.what() << "\n";
    return 1;
  }
  saga::SystemClock clock;
  saga::Engine engine(options, *store, *transport, clock);
  engine.register_saga<order::OrderSaga>();

  std::unique_ptr<Intake> intake;
  try {
    intake = std::make_unique<Intake>(intake_endpoint, engine, db);
  } catch (const std::exception& error) {
    std::cerr << "order_orchestrator: cannot bind intake " << intake_endpoint << ": "
              << error.what() << "\n";
    return 1;
  }
  // The engine logs each outcome ("saga ended") and each dead letter itself.
  engine.on_outcome([&](const saga::SagaOutcome& outcome) { intake->record(outcome); });

  std::unique_ptr<saga::MetricsHttpServer> metrics_server;
  if (options.metrics) {
    auto [host, port] = saga::parse_listen_address(metrics_listen);
    try {
      metrics_server = saga::MetricsHttpServer::start(options.metrics, {host, port});
    } catch (const std::exception& error) {
      std::cerr << "order_orchestrator: " << error.what() << "\n";
      return 1;
    }
  }
  std::string metrics_url = metrics_server
                                ? "http://" + metrics_listen.substr(0, metrics_listen.rfind(':')) +
                                      ":" + std::to_string(metrics_server->port()) + "/metrics"
                                : "";

  if (!endpoints_file.empty()) {
    std::ofstream out(endpoints_file + ".tmp");
    out << "router=" << transport->router_endpoint() << "\n"
        << "events=" << transport->events_endpoint() << "\n"
        << "intake=" << intake->endpoint() << "\n";
    if (metrics_server) out << "metrics=" << metrics_url << "\n";
    out.close();
    std::rename((endpoints_file + ".tmp").c_str(), endpoints_file.c_str());
  }
  auto listening = log(saga::LogLevel::info, "listening");
  listening.with("router", transport->router_endpoint())
      .with("intake", intake->endpoint())
      .with("events", events.empty() ? "" : transport->events_endpoint())
      .with("database", db);
  if (metrics_server) {
    listening.with("metrics", metrics_url);
    std::cout << "metrics on " << metrics_url << std::endl;
  }
  logger->write(listening);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::atomic<bool> intake_stopping{false};
  std::thread loop([&] { engine.run(); });
  std::thread intake_thread([&] { intake->serve(intake_stopping); });
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds{50});

  logger->write(log(saga::LogLevel::info, "stopping: no new orders, finishing the current batch"));
  intake_stopping.store(true);
  intake_thread.join();
  engine.stop();
  loop.join();
  if (metrics_server) metrics_server->stop();
  auto stats = engine.stats();
  logger->write(log(saga::LogLevel::info, "stopped")
                    .with("sagasStarted", stats.sagas_started)
                    .with("completed", stats.sagas_completed)
                    .with("compensated", stats.sagas_compensated)
                    .with("failed", stats.sagas_failed)
                    .with("deadLetters", stats.dead_letters));
  return 0;
}
