#include "saga/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cctype>
#include <charconv>
#include <cmath>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <memory_resource>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "engine_metrics.hpp"
#include "saga/detail/crash_point.hpp"
#include "saga/detail/json_text.hpp"
#include "saga/diagram.hpp"
#include "saga/envelope.hpp"
#include "saga/log.hpp"
#include "saga/metrics.hpp"

namespace saga {
namespace {

// Distinct for every turn any engine of the process builds (a mark that names one is never
// mistaken for a later turn's).
std::uint64_t next_turn_serial() noexcept {
  static std::atomic<std::uint64_t> serials{0};
  return serials.fetch_add(1, std::memory_order_relaxed) + 1;
}

// A value whose JSON text reads back as something else: a number that is not finite (written as
// null) or binary data.
bool lost_in_text(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      for (const auto& [key, member] : value.get_ref<const nlohmann::json::object_t&>())
        if (lost_in_text(member)) return true;
      return false;
    case nlohmann::json::value_t::array:
      for (const auto& element : value.get_ref<const nlohmann::json::array_t&>())
        if (lost_in_text(element)) return true;
      return false;
    case nlohmann::json::value_t::number_float:
      return !std::isfinite(value.get<double>());
    case nlohmann::json::value_t::binary:
      return true;
    default:
      return false;
  }
}

// A store read failed mid-turn; the turn is abandoned and retried like a failed commit.
struct TurnAborted {
  StoreError error;
};

// The reads of applying a turn's inputs share one read transaction (Store::begin_reads); the
// scope ends however the applying ends, before anything commits.
class ReadScope {
 public:
  explicit ReadScope(Store& store) noexcept : store_(store) { store_.begin_reads(); }
  ~ReadScope() { store_.end_reads(); }
  ReadScope(const ReadScope&) = delete;
  ReadScope& operator=(const ReadScope&) = delete;

 private:
  Store& store_;
};

struct StartRequest {
  std::string saga_id;
  std::string correlation_id;
  const SagaType* type;
  std::unique_ptr<SagaInstance> instance;  // created by start(); taken by the turn that applies it
  // The data as JSON text, serialized by start() on the caller's thread, which also frees the
  // data's tree: the loop keeps only the text (a retried turn creates its instance from it).
  std::string data_text;
};

struct OperatorRequest {
  enum class Kind { retry, resolve, replay, discard, invalid } kind;
  std::string saga_id;
  SagaStatus status = SagaStatus::Compensated;
  std::string note;
  std::int64_t dead_letter_id = 0;
  std::promise<OperatorResult> promise;
  OperatorResult result;       // decided in the turn, delivered after its commit
  std::int64_t stored_id = 0;  // operator_requests row it came from; 0 = the C++ API
};

std::shared_ptr<OperatorRequest> from_stored(const StoredOperatorRequest& stored) {
  auto request = std::make_shared<OperatorRequest>();
  request->stored_id = stored.id;
  request->note = stored.note;
  request->saga_id = stored.target;
  auto dead_letter_id = [&]() -> std::optional<std::int64_t> {
    std::int64_t id = 0;
    auto [end, error] =
        std::from_chars(stored.target.data(), stored.target.data() + stored.target.size(), id);
    if (error != std::errc{} || end != stored.target.data() + stored.target.size() || id <= 0)
      return std::nullopt;
    return id;
  };
  using Kind = OperatorRequest::Kind;
  request->kind = Kind::invalid;
  if (stored.action == "retry") {
    request->kind = Kind::retry;
  } else if (stored.action == "resolve") {
    auto status = saga_status_from_string(stored.status);
    if (status) {
      request->kind = Kind::resolve;
      request->status = *status;
    } else {
      request->result = {
          false, "resolve needs a status (Completed or Compensated), got '" + stored.status + "'"};
    }
  } else if (stored.action == "replay_dead_letter" || stored.action == "discard_dead_letter") {
    if (auto id = dead_letter_id()) {
      request->kind = stored.action == "replay_dead_letter" ? Kind::replay : Kind::discard;
      request->dead_letter_id = *id;
    } else {
      request->result = {false, "'" + stored.target + "' is not a dead-letter id"};
    }
  } else {
    request->result = {false, "unknown operator action '" + stored.action + "'"};
  }
  return request;
}

// Either a saga start (start set) or an inbound message.
struct Input {
  std::shared_ptr<StartRequest> start;
  InboundMessage message;
  // A command whose retry policy ran out (set instead of start/message). Boxed: it is rare, and
  // a turn's inputs are moved about in vectors.
  std::unique_ptr<OutboxMessage> expired = nullptr;
  // An operator action (set instead of start/message).
  std::shared_ptr<OperatorRequest> operation = nullptr;
  int failed_attempts = 0;  // times its processing threw (poison messages)
  std::chrono::steady_clock::time_point received_at = std::chrono::steady_clock::now();
};

// Processing a message threw for a reason that may pass (user code, an upcaster): it is retried
// per Options::poison_attempts before being dead-lettered with this code.
struct PoisonError : std::runtime_error {
  PoisonError(std::string code_in, const std::string& reason)
      : std::runtime_error(reason), code(std::move(code_in)) {}
  std::string code;
};

struct CachedSaga {
  const SagaType* type = nullptr;
  std::unique_ptr<SagaInstance> instance;
  SagaRecord record;  // as last committed, but for `data`, left empty: it lives in `instance`
  bool committed = false;
  std::uint64_t last_used_turn = 0;  // for evicting the sagas used longest ago
};

constexpr int kMaxDrainTurns = 100;
constexpr int kMaxReadBackRounds = 64;
constexpr std::size_t kMaxConsumerLabels = 32;
constexpr const char* kOtherLabel = "other";

struct Counters {
  std::atomic<std::uint64_t> sagas_started{0}, messages_received{0}, messages_applied{0},
      duplicates{0}, dead_letters{0}, commits{0}, commit_failures{0}, commands_sent{0},
      send_retries{0}, command_resends{0}, command_timeouts{0}, sagas_completed{0},
      sagas_compensated{0}, sagas_failed{0}, callback_errors{0}, cached_sagas{0}, sagas_evicted{0},
      sagas_loaded{0}, queued_commands{0}, backlogged_commands{0};
};

std::string truncated(std::string_view bytes, std::size_t limit) {
  return std::string(bytes.substr(0, std::min(bytes.size(), limit)));
}

double seconds_between(Timestamp from, Timestamp to) {
  return std::max(0.0, std::chrono::duration<double>(to - from).count());
}

double seconds_since(std::chrono::steady_clock::time_point from) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
}

// 0 ok, 1 warning, 2 critical.
int alert_level(double value, double warning, double critical) {
  return value > critical ? 2 : value > warning ? 1 : 0;
}

constexpr std::string_view kAlertLevels[] = {"ok", "warning", "critical"};

}  // namespace

struct Engine::Impl {
  Impl(Options options_in, Store& store_in, Transport& transport_in, const Clock& clock_in)
      : options(std::move(options_in)), store(store_in), transport(transport_in), clock(clock_in) {
    if (options.metrics) {
      metrics = std::make_unique<detail::EngineMetrics>(*options.metrics);
      const LagAlerts& alerts = options.lag_alerts;
      auto& threshold = metrics->lag_alert_threshold;
      threshold.with({"pending", "warning"}).set(static_cast<double>(alerts.pending_warning));
      threshold.with({"pending", "critical"}).set(static_cast<double>(alerts.pending_critical));
      threshold.with({"delay", "warning"}).set(static_cast<double>(alerts.delay_warning.count()));
      threshold.with({"delay", "critical"}).set(static_cast<double>(alerts.delay_critical.count()));
      metrics->lag_alert_level.with({"pending"}).set(0);
      metrics->lag_alert_level.with({"delay"}).set(0);
    }
    logger = options.logger.get();
  }

  Options options;
  Store& store;
  Transport& transport;
  const Clock& clock;
  std::unique_ptr<detail::EngineMetrics> metrics;  // null: no metrics
  Logger* logger = nullptr;                        // null: no logs (owned by options.logger)
  int pending_alert = 0, delay_alert = 0;

  std::map<std::pair<std::string, int>, std::unique_ptr<SagaType>, std::less<>> types;
  std::unordered_map<std::string, const SagaType*> latest;
  std::vector<std::function<void(const SagaOutcome&)>> outcome_callbacks;
  std::vector<std::function<void(const DeadLetter&)>> dead_letter_callbacks;

  std::mutex starts_mutex;
  std::vector<Input> queued_starts;
  std::atomic<bool> stopping{false};
  Counters counters;

  Upcasters upcasters;
  std::unordered_map<std::string, CachedSaga> cache;
  std::uint64_t turn_number = 0;  // stamps CachedSaga::last_used_turn
  // The send queue: commands the transport has not taken yet, each destination's in commit order
  // (see send_unsent), and how many it holds per destination. A new command queues here while
  // its destination holds fewer than Options::max_queued_commands (re-sends included); past
  // that, the destination has a backlog: its newer commands stay in the outbox only and are read
  // back, in commit order, as its queue drains (read_backlogs). Re-sends always queue here.
  // Vectors, not deques: send_unsent refills `unsent` from `unsent_spare` on every send, and a
  // vector keeps its capacity where a deque allocated and freed its blocks each time.
  std::vector<OutboxMessage> unsent;
  std::vector<OutboxMessage> unsent_spare;
  std::unordered_map<std::string, std::size_t> queued;
  struct Backlog {
    std::string first_id;               // the first command left out, until its sequence is read
    std::int64_t after_sequence = 0;    // read back up to this outbox sequence
    std::int64_t restart_boundary = 0;  // rows up to here were committed before this engine ran
    std::size_t count = 0;      // left in the outbox: an estimate (rows closed meanwhile included)
    std::size_t read_back = 0;  // since the backlog began
    bool logged = false;        // its start was logged (so is its end)
    // Commands in the backlog's range that another path queued or tracked already (re-armed by
    // an operator retry or a retriable step, or out of attempts at start): read-back skips them.
    std::unordered_set<std::string> handled_elsewhere;
  };
  std::unordered_map<std::string, Backlog> backlogs;
  std::size_t backlog_size = 0;
  std::unordered_map<std::string, Timestamp> backlog_logged_at;  // by destination: rate limit
  bool read_back_failing = false;  // the last read of a backlog failed
  bool backlog_ready = false;      // a destination took everything and its backlog has more
  // Dispatched commands awaiting a reply, by eventId, with the time they are re-sent. A row here
  // keeps no payload (the encoded command): a re-send reads it back from the outbox, so a saga
  // waiting for a reply costs little memory once the saga cache has let it go.
  // The two time indexes point at in_flight's keys (stable: erased only with their entry), and
  // each entry keeps its positions in them, so tracking never copies or compares ids. Their
  // nodes (and the by-saga index's) come from a pool of the loop's own: a command in flight
  // costs no malloc there. The pool keeps what it once held until the engine goes, so after a
  // peak of commands in flight (a start that tracks a large backlog) that memory stays.
  std::pmr::unsynchronized_pool_resource tracking_nodes;
  using TimeIndex = std::pmr::multimap<Timestamp, const std::string*>;
  struct InFlight {
    OutboxMessage row;
    std::uint64_t answered_in = 0;  // Turn::serial of a turn whose reply closes it
    Timestamp deadline;
    TimeIndex::iterator by_deadline;
    TimeIndex::iterator by_age;
  };
  std::unordered_map<std::string, InFlight> in_flight;
  TimeIndex deadlines{&tracking_nodes};         // of in_flight, soonest first
  TimeIndex in_flight_by_age{&tracking_nodes};  // by created_at, oldest first
  // in_flight's keys by saga: each entry's key views the saga id of the row it points to, so it
  // is erased before that row changes or goes.
  using SagaIndex = std::pmr::unordered_multimap<std::string_view, const std::string*>;
  SagaIndex in_flight_by_saga{&tracking_nodes};

  // The ids of a saga's commands in flight (a few at most), in no particular order.
  template <class Visit>
  void for_each_in_flight(const std::string& saga_id, Visit&& visit) {
    auto [first, last] = in_flight_by_saga.equal_range(saga_id);
    for (auto it = first; it != last; ++it) visit(*it->second);
  }
  // False when the index holds no such entry.
  bool erase_by_saga(const std::string& saga_id, const std::string* message_id) {
    auto [first, last] = in_flight_by_saga.equal_range(saga_id);
    for (auto it = first; it != last; ++it)
      if (it->second == message_id) {
        in_flight_by_saga.erase(it);
        return true;
      }
    return false;
  }
  std::vector<Input> expired;        // commands whose retry policy ran out, for the next turn
  bool resend_read_failing = false;  // the last read of an overdue command's bytes failed
  std::mt19937_64 jitter{options.random_seed != 0 ? options.random_seed : std::random_device{}()};
  std::vector<DispatchMark> dispatched_marks;  // re-sends, for the next commit
  std::vector<Input> retry_inputs;
  std::vector<std::pair<Timestamp, Input>> deferred;  // poison messages waiting for another try
  std::chrono::milliseconds backoff{0};
  // Failure replies in a row per saga, to a retriable step's commands (retry_after_failure).
  std::unordered_map<std::string, int> retriable_failures;
  bool recovered = false;
  // Metric label values taken from inbound envelopes, bounded: a reply type is its own label
  // only when a registered saga consumes it, and at most kMaxConsumerLabels sources get one.
  std::unordered_set<std::string> known_reply_types;
  std::unordered_set<std::string> consumer_labels;
  Timestamp next_operator_poll{};
  std::unordered_set<std::int64_t> stored_requests_queued;

  // State of the turn being built.
  struct Turn {
    const std::uint64_t serial = next_turn_serial();
    WriteBatch batch;
    std::unordered_map<std::string, std::size_t> saga_writes;  // saga id -> index in batch.sagas
    std::unordered_set<std::string> inbox;
    std::vector<SagaOutcome> outcomes;
    std::vector<OutboxMessage> rearm;  // commands of retriable steps to send again
    // Sagas whose failure reply this turn answered with a new command of a retriable step, sent
    // once its wait is over (its row's not_before; see retry_after_failure).
    std::vector<std::string> delayed;
    std::vector<OperatorRequest*> operations;
    std::uint64_t timeouts = 0;
    std::uint64_t started = 0;
    std::uint64_t received = 0;
    std::uint64_t applied = 0;
    std::uint64_t duplicates = 0;
    std::vector<std::string> loaded;   // sagas loaded from the store this turn
    std::vector<std::string> touched;  // sagas a message or start was applied to this turn
    std::vector<std::pair<std::string, std::string>> events;  // (event type, encoded envelope)
    bool publish_events = false;  // Options::publish_events and the transport has observers
    std::string poison_code;
    std::string poison_reason;
    // Metrics and log lines of this turn, applied once it committed (dropped with it otherwise).
    std::vector<std::function<void()>> after_commit;
    std::vector<LogRecord> log_lines;                        // written together (Logger::write_all)
    std::chrono::steady_clock::time_point input_received{};  // of the input being processed
  };

  // A committed turn whose commit is not durable yet (Store::durable_through): what it hands to
  // the outside world (commands, events, outcomes, operator answers, its log lines and metrics)
  // waits here, in commit order. `committed`: the turn wrote something (else it only follows one
  // that did). The engine's counters (stats()) and saga gauges count commits as they are made.
  struct HeldTurn {
    std::uint64_t commit = 0;
    bool committed = false;
    Turn turn;
    std::vector<Input> inputs;
    std::chrono::steady_clock::time_point commit_started{};
  };
  std::deque<HeldTurn> held_turns;
  bool gathered_bytes_full = false;        // this turn's gather stopped at Options::max_batch_bytes
  std::optional<StoreError> sync_failure;  // Store::sync() failed: the store takes no commit more

  bool instrumented() const noexcept { return metrics || logger; }
  bool logs(LogLevel level) const noexcept { return logger && logger->enabled(level); }

  LogRecord saga_line(LogLevel level, std::string message, const std::string& saga_id,
                      const CachedSaga& saga, std::string_view causation_id) const {
    LogRecord record(level, std::move(message), clock.now());
    record.with("sagaId", saga_id)
        .with("sagaType", saga.type->name())
        .with("correlationId", correlation_of(saga_id, saga))
        .with("causationId", causation_id);
    return record;
  }

  LogRecord message_line(LogLevel level, std::string message, const Envelope& envelope,
                         std::string_view saga_id) const {
    LogRecord record(level, std::move(message), clock.now());
    record.with("messageId", envelope.event_id)
        .with("messageType", envelope.event_type)
        .with("source", envelope.source)
        .with("sagaId", saga_id)
        .with("correlationId", envelope.correlation_id)
        .with("causationId", envelope.causation_id);
    return record;
  }

  // A command from the outbox, with the ids its envelope carries (decoded: rare paths only).
  LogRecord command_line(LogLevel level, std::string message, const OutboxMessage& row) const {
    LogRecord record(level, std::move(message), clock.now());
    std::string correlation, causation;
    DecodeResult decoded = decode_envelope(row.payload, std::numeric_limits<std::size_t>::max());
    if (auto* envelope = std::get_if<Envelope>(&decoded)) {
      correlation = envelope->correlation_id;
      causation = envelope->causation_id;
    }
    record.with("messageId", row.message_id)
        .with("messageType", row.message_type)
        .with("destination", row.destination)
        .with("sagaId", row.saga_id)
        .with("correlationId", correlation)
        .with("causationId", causation);
    return record;
  }

  void write_later(Turn& turn, LogRecord record) { turn.log_lines.push_back(std::move(record)); }

  // What a turn leaves for after its commit (or for the end of a turn with nothing to commit).
  void apply_after_commit(const Turn& turn) {
    for (const auto& action : turn.after_commit) action();
    if (!turn.log_lines.empty()) logger->write_all(turn.log_lines);
  }

  // Peers choose eventType and source: labels made of them would let any peer grow the metric
  // families (and this process) without bound.
  std::string type_label(const Envelope* envelope) const {
    if (!envelope) return "";
    return known_reply_types.contains(envelope->event_type) ? envelope->event_type : kOtherLabel;
  }

  std::string consumer_label(const Envelope* envelope) {
    if (!envelope) return "";
    if (consumer_labels.contains(envelope->source)) return envelope->source;
    if (consumer_labels.size() >= kMaxConsumerLabels) return kOtherLabel;
    consumer_labels.insert(envelope->source);
    return envelope->source;
  }

  // A handled inbound message: counted, timed and (debug) logged once its turn commits.
  void consumed(Turn& turn, const Envelope* envelope, std::string_view result,
                std::string_view saga_id) {
    if (metrics) {
      std::string type = type_label(envelope);
      std::string source = consumer_label(envelope);
      turn.after_commit.push_back([this, type, source, result, received = turn.input_received] {
        metrics->consumed.with({type, source, result}).inc();
        metrics->processing.with({type}).observe(seconds_since(received));
      });
    }
    if (envelope && result != "dead_lettered" && logs(LogLevel::debug))
      write_later(turn, message_line(LogLevel::debug,
                                     result == "applied" ? "message applied" : "duplicate ignored",
                                     *envelope, saga_id));
  }

  // Metrics and log lines of a saga's reaction, after record_reaction built it.
  void observe_reaction(Turn& turn, const std::string& saga_id, const CachedSaga& saga,
                        const Reaction& reaction, SagaStatus before, const std::string& cause_id,
                        std::size_t first_command) {
    if (logs(LogLevel::debug)) {
      for (std::size_t i = 1; i < reaction.path.size(); ++i)
        write_later(turn, saga_line(LogLevel::debug, "saga transition", saga_id, saga, cause_id)
                              .with("from", reaction.path[i - 1])
                              .with("to", reaction.path[i]));
      for (std::size_t i = first_command; i < turn.batch.outbox.size(); ++i) {
        const OutboxMessage& row = turn.batch.outbox[i];
        write_later(turn, saga_line(LogLevel::debug, "command queued", saga_id, saga, cause_id)
                              .with("messageId", row.message_id)
                              .with("messageType", row.message_type)
                              .with("destination", row.destination)
                              .with("compensation", row.compensation));
      }
    }
    if (!reaction.user_errors.empty()) {
      if (metrics) {
        std::string type(saga.type->name());
        auto errors = reaction.user_errors.size();
        turn.after_commit.push_back([this, type, errors] {
          metrics->user_errors.with({type}).inc(static_cast<double>(errors));
        });
      }
      if (logs(LogLevel::warn))
        for (const auto& error : reaction.user_errors)
          write_later(turn, saga_line(LogLevel::warn, "user code failed", saga_id, saga, cause_id)
                                .with("state", saga.instance->state())
                                .with("error", error));
    }
    SagaStatus after = saga.instance->status();
    if (after == before) return;
    if (is_terminal(after) && !is_terminal(before)) {
      observe_end(turn, saga_id, saga, after, cause_id,
                  reaction.user_errors.empty() ? "" : reaction.user_errors.back());
    } else if (logs(LogLevel::debug)) {
      write_later(turn, saga_line(LogLevel::debug, "saga status changed", saga_id, saga, cause_id)
                            .with("status", to_string(after))
                            .with("state", saga.instance->state()));
    }
  }

  // A saga reached a terminal status: its duration, and the one info line per outcome.
  void observe_end(Turn& turn, const std::string& saga_id, const CachedSaga& saga,
                   SagaStatus status, std::string_view cause_id, std::string reason) {
    double duration = seconds_between(saga.record.created_at, clock.now());
    if (metrics) {
      std::string type(saga.type->name());
      turn.after_commit.push_back([this, type, status, duration] {
        metrics->saga_duration.with({type, to_string(status)}).observe(duration);
      });
    }
    LogLevel level = status == SagaStatus::Failed ? LogLevel::warn : LogLevel::info;
    if (logs(level)) {
      LogRecord line = saga_line(level, "saga ended", saga_id, saga, cause_id);
      line.with("status", to_string(status))
          .with("state", saga.instance->state())
          .with("durationSeconds", duration);
      if (!reason.empty()) line.with("reason", reason);
      write_later(turn, std::move(line));
    }
  }

  // The gauges of consumer lag, from what the loop holds in memory, and the lag alerts.
  void observe_lag() {
    if (!instrumented()) return;
    Timestamp now = clock.now();
    // The send queue is walked by every send_unsent() anyway; commands in flight are indexed.
    Timestamp oldest_pending = now;
    for (const auto& row : unsent) oldest_pending = std::min(oldest_pending, row.created_at);
    const std::size_t pending = unsent.size() + backlog_size;
    Timestamp oldest_awaiting =
        in_flight_by_age.empty() ? now : std::min(now, in_flight_by_age.begin()->first);
    double pending_age = seconds_between(oldest_pending, now);
    double awaiting_age = seconds_between(oldest_awaiting, now);
    std::size_t lag = pending + in_flight.size();
    double delay = std::max(pending_age, awaiting_age);
    const LagAlerts& alerts = options.lag_alerts;
    int pending_level =
        alert_level(static_cast<double>(lag), static_cast<double>(alerts.pending_warning),
                    static_cast<double>(alerts.pending_critical));
    int delay_level = alert_level(delay, static_cast<double>(alerts.delay_warning.count()),
                                  static_cast<double>(alerts.delay_critical.count()));
    if (metrics) {
      metrics->outbox_pending.set(static_cast<double>(pending));
      metrics->backlogged_commands.set(static_cast<double>(backlog_size));
      metrics->awaiting_reply.set(static_cast<double>(in_flight.size()));
      metrics->oldest_pending_age.set(pending_age);
      metrics->oldest_awaiting_age.set(awaiting_age);
      metrics->lag_alert_level.with({"pending"}).set(pending_level);
      metrics->lag_alert_level.with({"delay"}).set(delay_level);
    }
    auto report = [&](int& current, int level, std::string_view kind, LogValue value,
                      std::int64_t warning, std::int64_t critical) {
      if (level == current) return;
      LogLevel severity = level == 2   ? LogLevel::error
                          : level == 1 ? LogLevel::warn
                                       : LogLevel::info;
      if (logs(severity)) {
        LogRecord line(severity, level == 0 ? "lag alert cleared" : "lag alert", now);
        line.with("kind", kind)
            .with("alert", kAlertLevels[level])
            .with("previousAlert", kAlertLevels[current]);
        line.fields.push_back({"value", std::move(value)});
        line.with("warningAbove", warning).with("criticalAbove", critical);
        logger->write(line);
      }
      current = level;
    };
    report(pending_alert, pending_level, "pending", static_cast<std::int64_t>(lag),
           static_cast<std::int64_t>(alerts.pending_warning),
           static_cast<std::int64_t>(alerts.pending_critical));
    report(delay_alert, delay_level, "delay", delay, alerts.delay_warning.count(),
           alerts.delay_critical.count());
  }

  // The store's counts, once, when an engine with metrics starts.
  void count_from_store() {
    auto sagas = store.count_sagas();
    if (!sagas) throw TurnAborted{sagas.error()};
    auto letters = store.count_open_dead_letters();
    if (!letters) throw TurnAborted{letters.error()};
    for (const auto& [name, type] : latest)
      for (auto status : {SagaStatus::Running, SagaStatus::Compensating, SagaStatus::Completed,
                          SagaStatus::Compensated, SagaStatus::Failed})
        metrics->sagas.with({name, to_string(status)}).set(0);
    for (const auto& count : sagas.value())
      metrics->sagas.with({count.type, to_string(count.status)})
          .set(static_cast<double>(count.count));
    metrics->dead_letter_depth.set(static_cast<double>(letters.value()));
  }

  // Operator actions are answered (and logged) once their turn is over (`committed`: by a commit).
  void finish_operations(const Turn& turn, bool committed) {
    static constexpr std::string_view kActions[] = {"retry", "resolve", "replay_dead_letter",
                                                    "discard_dead_letter", "invalid"};
    for (auto* operation : turn.operations) {
      if (committed) stored_requests_queued.erase(operation->stored_id);
      if (logs(LogLevel::info)) {
        LogRecord line(LogLevel::info, "operator action", clock.now());
        line.with("action", kActions[static_cast<int>(operation->kind)]);
        if (operation->kind == OperatorRequest::Kind::replay ||
            operation->kind == OperatorRequest::Kind::discard)
          line.with("deadLetterId", operation->dead_letter_id);
        else
          line.with("sagaId", operation->saga_id);
        line.with("ok", operation->result.ok).with("result", operation->result.message);
        logger->write(line);
      }
      operation->promise.set_value(operation->result);
    }
  }

  std::string next_id() {
    if (!options.id_generator) return new_uuid();
    std::string id;
    {
      std::lock_guard lock(id_mutex);  // start() may run on any thread
      id = options.id_generator();
    }
    // Envelopes carry ids in lower case (a participant's reply names its command so): an id kept
    // in upper case would match no reply.
    for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!is_uuid(id))
      throw std::invalid_argument("Options::id_generator returned '" + id + "', not a UUID");
    return id;
  }
  std::mutex id_mutex;

  const SagaType* find_type(std::string_view name, int version) const {
    auto found = types.find(std::pair<std::string, int>(std::string(name), version));
    return found == types.end() ? nullptr : found->second.get();
  }

  // `message` false: not an inbound message (a saga start that could not be started).
  void dead_letter(Turn& turn, std::string_view raw, std::string reason_code, std::string reason,
                   const Envelope* envelope, std::string_view saga_id = {}, bool message = true) {
    if (instrumented()) observe_dead_letter(turn, reason_code, reason, envelope, saga_id, message);
    DeadLetter letter;
    letter.at = clock.now();
    letter.reason_code = std::move(reason_code);
    letter.reason = std::move(reason);
    if (envelope) {
      letter.message_id = envelope->event_id;
      letter.message_type = envelope->event_type;
      letter.saga_id = envelope->correlation_id;
    }
    if (!saga_id.empty()) letter.saga_id = std::string(saga_id);
    letter.raw = truncated(raw, options.dead_letter_max_bytes);
    letter.raw_size = raw.size();
    turn.batch.dead_letters.push_back(std::move(letter));
  }

  void observe_dead_letter(Turn& turn, const std::string& code, const std::string& reason,
                           const Envelope* envelope, std::string_view saga_id, bool message) {
    if (message) consumed(turn, envelope, "dead_lettered", "");
    if (metrics)
      turn.after_commit.push_back([this, code] {
        metrics->dead_letters.with({code}).inc();
        metrics->dead_letter_depth.inc();
      });
    if (!logs(LogLevel::warn)) return;
    LogRecord line = envelope ? message_line(LogLevel::warn, "message dead-lettered", *envelope,
                                             saga_id.empty() ? envelope->correlation_id : saga_id)
                              : LogRecord(LogLevel::warn, "message dead-lettered", clock.now());
    line.with("reasonCode", code).with("reason", reason);
    write_later(turn, std::move(line));
  }

  // Appends to the turn's journal; returns the entry's index there.
  // The entry comes from spare_journal_entries when it has one: assigning into its strings reuses
  // their capacity, so a busy loop allocates no journal strings but the details. (The views may
  // point into the turn's journal: they are read before it grows.)
  std::size_t journal(Turn& turn, std::string_view saga_id, JournalKind kind,
                      std::string_view message_id, std::string_view message_type,
                      std::string_view from, std::string_view to, std::string detail) {
    JournalEntry entry;
    if (!spare_journal_entries.empty()) {
      entry = std::move(spare_journal_entries.back());
      spare_journal_entries.pop_back();
    }
    entry.sequence = 0;
    entry.saga_id = saga_id;
    entry.at = clock.now();
    entry.kind = kind;
    entry.message_id = message_id;
    entry.message_type = message_type;
    entry.from_state = from;
    entry.to_state = to;
    entry.detail = std::move(detail);
    turn.batch.journal.push_back(std::move(entry));
    return turn.batch.journal.size() - 1;
  }

  // Finds a saga in the cache or loads it from the store. Returns nullptr with a reason code and
  // message when it cannot be used.
  CachedSaga* load(Turn& turn, const std::string& saga_id, std::string& code, std::string& reason) {
    if (auto found = cache.find(saga_id); found != cache.end()) {
      found->second.last_used_turn = turn_number;
      return &found->second;
    }
    auto loaded = store.load_saga(saga_id);
    if (!loaded && loaded.error().code == StoreErrorCode::corrupt) {
      // One row this build cannot read (a status it does not know, a damaged page) refuses its
      // own saga's inputs; failing the turn would stall every other saga with it.
      code = "unreadable_saga";
      reason = "saga '" + saga_id + "' cannot be read: " + loaded.error().message;
      return nullptr;
    }
    if (!loaded) throw TurnAborted{loaded.error()};
    if (!loaded.value()) {
      code = "unknown_saga";
      reason = "no saga with id '" + saga_id + "'";
      return nullptr;
    }
    SagaRecord record = std::move(*loaded.value());
    const SagaType* type = find_type(record.type, record.definition_version);
    if (!type) {
      code = "unknown_saga_type";
      reason = "saga '" + saga_id + "' is of type '" + record.type + "' version " +
               std::to_string(record.definition_version) + ", which is not registered";
      return nullptr;
    }
    nlohmann::json data = nlohmann::json::parse(record.data, nullptr, false);
    RestoreResult restored = type->restore(record.state, record.status, data);
    if (auto* error = std::get_if<std::string>(&restored)) {
      code = "unknown_state";
      reason = "saga '" + saga_id + "' cannot be restored: " + *error;
      return nullptr;
    }
    turn.loaded.push_back(saga_id);
    CachedSaga& entry = cache[saga_id];
    entry.type = type;
    entry.instance = std::move(std::get<0>(restored));
    entry.record = std::move(record);
    std::string().swap(entry.record.data);  // the instance holds the data
    entry.committed = true;
    entry.last_used_turn = turn_number;
    return &entry;
  }

  static const std::string& correlation_of(const std::string& saga_id, const CachedSaga& saga) {
    return saga.record.correlation_id.empty() ? saga_id : saga.record.correlation_id;
  }

  // The saga a reply belongs to: the one that sent the command named by its causationId; for a
  // reply without one (or naming no command), the saga whose id is its correlationId. With the
  // command found, also the service it was sent to.
  struct Route {
    std::string saga_id;
    std::string destination;  // empty: no command named
  };
  Route route(const Envelope& envelope) {
    if (envelope.causation_id.empty()) return {envelope.correlation_id, {}};
    if (auto flight = in_flight.find(envelope.causation_id); flight != in_flight.end())
      return {flight->second.row.saga_id, flight->second.row.destination};
    auto row = store.outbox_message(envelope.causation_id);
    if (!row) throw TurnAborted{row.error()};
    if (!row.value()) return {envelope.correlation_id, {}};
    return {row.value()->saga_id, row.value()->destination};
  }

  // Returns the saga's data as written, for a caller that also needs it as JSON.
  // A new write comes from spare_saga_writes when it has one, as journal entries do.
  nlohmann::json write_saga(Turn& turn, const std::string& saga_id, CachedSaga& saga) {
    nlohmann::json data = saga.instance->data();
    auto [slot, inserted] = turn.saga_writes.emplace(saga_id, turn.batch.sagas.size());
    SagaWrite& write = inserted ? turn.batch.sagas.emplace_back() : turn.batch.sagas[slot->second];
    if (inserted) {
      if (!spare_saga_writes.empty()) {
        write = std::move(spare_saga_writes.back());
        spare_saga_writes.pop_back();
      }
      write.expected_row_version.reset();
      write.stored_status.reset();
      if (saga.committed) {
        write.expected_row_version = saga.record.row_version;
        write.stored_status = saga.record.status;
      }
    }
    SagaRecord& record = write.record;
    record = saga.record;  // no data text to copy: the cache keeps none
    record.state = saga.instance->state();
    record.status = saga.instance->status();
    record.data = detail::json_text(data);  // one allocation of the exact size
    record.updated_at = clock.now();
    return data;
  }

  // `cause_entry`: the index in the turn's journal of the input's own entry (started,
  // message_in, timed_out), which records the reaction's first transition in its from_state and
  // to_state; any further transitions get entries of their own (docs/architecture.md, "The
  // journal"). `closed_command`: the command this input has already marked replied (the one it
  // answers, or the one that expired), empty when none.
  void record_reaction(Turn& turn, const std::string& saga_id, CachedSaga& saga,
                       const Reaction& reaction, SagaStatus before, const std::string& cause_id,
                       std::size_t cause_entry, std::string_view closed_command = {}) {
    std::size_t first_command = turn.batch.outbox.size();
    if (reaction.path.size() > 1) {
      JournalEntry& input = turn.batch.journal[cause_entry];
      input.from_state = reaction.path[0];
      input.to_state = reaction.path[1];
    }
    for (std::size_t i = 2; i < reaction.path.size(); ++i)
      journal(turn, saga_id, JournalKind::transition, cause_id, "", reaction.path[i - 1],
              reaction.path[i], "");
    for (const auto& error : reaction.user_errors)
      journal(turn, saga_id, JournalKind::user_error, cause_id, "", "", "", error);
    const std::string_view retried_type = retry_after_failure(saga_id, saga, reaction);
    for (const auto& command : reaction.commands) {
      Envelope envelope;
      envelope.event_id = next_id();
      envelope.event_type = std::string(command.type);
      envelope.timestamp = clock.now();
      envelope.version = command.version;
      envelope.source = options.source;
      envelope.correlation_id = correlation_of(saga_id, saga);
      envelope.causation_id = cause_id;
      envelope.kind = MessageKind::command;
      if (!command.undoes.empty()) envelope.compensates = last_sent(turn, saga_id, command.undoes);
      std::string payload = detail::json_text(command.payload);
      OutboxMessage row;
      row.payload = encode_envelope(envelope, payload);
      row.message_id = std::move(envelope.event_id);  // the envelope is not read after encoding
      row.saga_id = saga_id;
      row.destination = std::string(command.destination);
      row.message_type = std::move(envelope.event_type);
      row.created_at = envelope.timestamp;
      row.compensation = command.role == CommandRole::compensation;
      journal(turn, saga_id, JournalKind::message_out, row.message_id, row.message_type, "", "",
              row.compensation ? "compensation " + payload : std::move(payload));
      if (!retried_type.empty() && row.message_type == retried_type) {
        row.retry_failures = retriable_failures.at(saga_id);
        row.not_before = clock.now() + timeout_after(policy_for(row), row.retry_failures);
        turn.delayed.push_back(saga_id);
      }
      turn.batch.outbox.push_back(std::move(row));
    }
    SagaStatus after = saga.instance->status();
    if (after != before) {
      std::string detail(to_string(after));
      if (after == SagaStatus::Failed && !reaction.user_errors.empty())
        detail += ": " + reaction.user_errors.back();
      journal(turn, saga_id, JournalKind::status_changed, cause_id, "", "", "", detail);
    }
    nlohmann::json data = write_saga(turn, saga_id, saga);
    if (instrumented())
      observe_reaction(turn, saga_id, saga, reaction, before, cause_id, first_command);
    if (turn.publish_events) lifecycle_events(turn, saga_id, saga, reaction, before, cause_id);
    if (is_terminal(after) && !is_terminal(before)) {
      // A saga that ended awaits nothing more: what it still had in flight is closed with it.
      for_each_in_flight(saga_id, [&](const std::string& id) {
        if (id != closed_command) turn.batch.replied.push_back(id);
      });
      turn.outcomes.push_back({saga_id, std::string(saga.type->name()), after,
                               std::string(saga.instance->state()), std::move(data),
                               reaction.user_errors.empty() ? "" : reaction.user_errors.back()});
    }
  }

  // A failure reply to a retriable step's command sends the command again (a new one: the
  // participant recorded its answer to the old), staying in the state that awaits it. That is an
  // attempt that failed, so the new command waits before it leaves as long as the command's retry
  // policy waits before the n-th re-send, n the failure replies in a row (RetryPolicy: timeout x
  // backoff^(n-1), capped, jittered); it is committed at once. Returns the command type so
  // retried, else empty (and the saga's count of failures in a row ends).
  std::string_view retry_after_failure(const std::string& saga_id, const CachedSaga& saga,
                                       const Reaction& reaction) {
    std::string_view retried;
    if (reaction.path.size() == 2 && reaction.path[0] == reaction.path[1] &&
        !is_terminal(saga.instance->status()))
      for (const auto& command : reaction.commands)
        if (saga.type->is_retriable(command.type)) retried = command.type;
    if (retried.empty()) {
      if (!retriable_failures.empty()) retriable_failures.erase(saga_id);
    } else {
      ++retriable_failures[saga_id];
    }
    return retried;
  }

  void lifecycle_events(Turn& turn, const std::string& saga_id, const CachedSaga& saga,
                        const Reaction& reaction, SagaStatus before, const std::string& cause_id) {
    SagaStatus after = saga.instance->status();
    auto event = [&](std::string type) {
      Envelope envelope;
      envelope.event_id = next_id();
      envelope.event_type = std::move(type);
      envelope.timestamp = clock.now();
      envelope.source = options.source;
      envelope.correlation_id = correlation_of(saga_id, saga);
      envelope.causation_id = cause_id;
      envelope.kind = MessageKind::event;
      envelope.data = {{"sagaId", saga_id},
                       {"sagaType", saga.type->name()},
                       {"state", saga.instance->state()},
                       {"status", to_string(after)}};
      if (!reaction.path.empty()) envelope.data["previousState"] = reaction.path.front();
      turn.events.emplace_back(envelope.event_type, encode_envelope(envelope));
    };
    if (cause_id.empty() && reaction.path.size() >= 1 && reaction.path.front() == "Initial")
      event("saga.Started");
    else if (after == SagaStatus::Running && before == SagaStatus::Running)
      event("saga.StepCompleted");
    if (after != before) {
      if (after == SagaStatus::Compensating) event("saga.Compensating");
      if (after == SagaStatus::Completed) event("saga.Completed");
      if (after == SagaStatus::Compensated) event("saga.Compensated");
      if (after == SagaStatus::Failed) event("saga.Failed");
    }
  }

  void process_start(Turn& turn, StartRequest& request) {
    turn.touched.push_back(request.saga_id);
    CachedSaga& saga = cache[request.saga_id];
    saga.type = request.type;
    // A retried turn (after a failed commit) starts again from a fresh instance.
    saga.instance = request.instance
                        ? std::move(request.instance)
                        : request.type->create(nlohmann::json::parse(request.data_text));
    saga.committed = false;
    saga.last_used_turn = turn_number;
    saga.record = SagaRecord{};
    saga.record.id = request.saga_id;
    saga.record.correlation_id = request.correlation_id;
    saga.record.type = std::string(request.type->name());
    saga.record.definition_version = request.type->version();
    saga.record.created_at = clock.now();
    const std::size_t started_entry =
        journal(turn, request.saga_id, JournalKind::started, "", "", "", "", request.data_text);
    if (logs(LogLevel::debug))
      write_later(turn, saga_line(LogLevel::debug, "saga started", request.saga_id, saga, ""));
    SagaStatus before = saga.instance->status();
    Reaction reaction = saga.instance->begin();
    record_reaction(turn, request.saga_id, saga, reaction, before, "", started_entry);
    ++turn.started;
  }

  void process_message(Turn& turn, const InboundMessage& message) {
    ++turn.received;
    if (!message.defect_code.empty()) {
      dead_letter(turn, message.bytes, message.defect_code,
                  message.defect + " (from " + message.peer + ")", nullptr);
      return;
    }
    DecodeResult decoded = decode_envelope(message.bytes, options.max_message_bytes);
    if (auto* error = std::get_if<EnvelopeError>(&decoded)) {
      dead_letter(turn, message.bytes, std::string(to_string(error->code)), error->message,
                  nullptr);
      return;
    }
    const Envelope& envelope = std::get<Envelope>(decoded);
    if (envelope.kind != MessageKind::reply && envelope.kind != MessageKind::unspecified) {
      dead_letter(turn, message.bytes, "unexpected_kind",
                  "the orchestrator consumes replies; got a message of kind '" +
                      std::string(to_string(envelope.kind)) + "'",
                  &envelope);
      return;
    }
    if (envelope.correlation_id.empty()) {
      dead_letter(turn, message.bytes, "missing_correlation",
                  "a reply needs a correlationId naming its saga", &envelope);
      return;
    }
    bool duplicate = turn.inbox.contains(envelope.event_id);
    if (!duplicate) {
      auto seen = store.inbox_contains(envelope.event_id);
      if (!seen) throw TurnAborted{seen.error()};
      duplicate = seen.value();
    }
    const Route routed = route(envelope);
    const std::string& saga_id = routed.saga_id;
    std::string code, reason;
    CachedSaga* saga = load(turn, saga_id, code, reason);
    if (duplicate) {
      ++turn.duplicates;
      if (instrumented()) consumed(turn, &envelope, "duplicate", saga ? saga_id : "");
      if (saga)
        journal(turn, saga_id, JournalKind::duplicate, envelope.event_id, envelope.event_type, "",
                "", "already processed; no effect");
      return;
    }
    if (!saga) {
      dead_letter(turn, message.bytes, code, reason, &envelope);
      return;
    }
    if (envelope.correlation_id != correlation_of(saga_id, *saga)) {
      dead_letter(turn, message.bytes, "correlation_mismatch",
                  "the reply's correlationId '" + envelope.correlation_id + "' is not saga " +
                      saga_id + "'s ('" + correlation_of(saga_id, *saga) + "')",
                  &envelope, saga_id);
      return;
    }
    if (auto why = wrong_sender(message, envelope, routed, *saga)) {
      journal(turn, saga_id, JournalKind::unexpected, envelope.event_id, envelope.event_type,
              std::string(saga->instance->state()), "", *why);
      dead_letter(turn, message.bytes, "wrong_sender", *why, &envelope, saga_id);
      return;
    }
    if (!is_terminal(saga->instance->status()) &&
        answered_before(turn, saga_id, envelope.causation_id)) {
      const std::string why = "it names command " + envelope.causation_id +
                              ", which a reply answered already (a participant answers each "
                              "command once): not applied";
      journal(turn, saga_id, JournalKind::unexpected, envelope.event_id, envelope.event_type,
              std::string(saga->instance->state()), "", why);
      dead_letter(turn, message.bytes, "unexpected", why, &envelope, saga_id);
      return;
    }
    const nlohmann::json* payload = &envelope.data;
    nlohmann::json upcast;
    int known_version = saga->type->message_version(envelope.event_type);
    if (known_version != 0 && envelope.version != known_version) {
      auto upgraded =
          upcasters.upgrade(envelope.event_type, envelope.version, known_version, envelope.data);
      if (auto* refusal = std::get_if<Upcasters::Refusal>(&upgraded)) {
        if (refusal->code == "upcaster_failed") throw PoisonError(refusal->code, refusal->reason);
        journal(turn, saga_id, JournalKind::unexpected, envelope.event_id, envelope.event_type, "",
                "", refusal->reason);
        dead_letter(turn, message.bytes, refusal->code, refusal->reason, &envelope, saga_id);
        return;
      }
      upcast = std::move(std::get<nlohmann::json>(upgraded));
      payload = &upcast;
    }
    SagaStatus before = saga->instance->status();
    // What the saga waited for, for a reply that does not name its command.
    const std::string state_before(envelope.causation_id.empty() ? saga->instance->state()
                                                                 : std::string_view());
    turn.touched.push_back(saga_id);
    Reaction reaction = saga->instance->handle(envelope.event_type, *payload);
    if (reaction.outcome == Reaction::Outcome::unexpected && before == SagaStatus::Failed)
      if (auto resumed = resume_parked(turn, saga_id, *saga, envelope, *payload)) {
        before = resumed->first;
        reaction = std::move(resumed->second);
      }
    if (!reaction.applied()) {
      static constexpr const char* kCodes[] = {"applied", "unexpected", "undecodable",
                                               "unknown_type"};
      std::string code = kCodes[static_cast<int>(reaction.outcome)];
      std::string reason = reaction.reason;
      if (reaction.outcome == Reaction::Outcome::unexpected &&
          given_up_on(turn, saga_id, envelope.causation_id)) {
        code = "late_reply";
        reason = "the reply came after the engine gave up on " + envelope.causation_id +
                 " (journaled as timed_out) and the saga moved on. In a linear saga a step with "
                 "a compensation is undone by the compensation naming that command, a parked "
                 "pivot waits for an operator to retry it, and a step without a compensation, "
                 "or a compensation given up on, is not redone or undone: check it (" +
                 reaction.reason + ")";
      }
      journal(turn, saga_id, JournalKind::unexpected, envelope.event_id, envelope.event_type,
              std::string(saga->instance->state()), "", reason);
      dead_letter(turn, message.bytes, code, reason, &envelope, saga_id);
      return;
    }
    turn.inbox.insert(envelope.event_id);
    turn.batch.inbox.push_back(envelope.event_id);
    if (instrumented()) {
      consumed(turn, &envelope, "applied", saga_id);
      if (auto command = in_flight.find(envelope.causation_id);
          metrics && command != in_flight.end()) {
        std::string type = command->second.row.message_type;
        double waited = seconds_between(command->second.row.created_at, clock.now());
        turn.after_commit.push_back(
            [this, type, waited] { metrics->reply_wait.with({type}).observe(waited); });
      }
    }
    if (!envelope.causation_id.empty()) {
      turn.batch.replied.push_back(envelope.causation_id);
      if (auto flight = in_flight.find(envelope.causation_id); flight != in_flight.end())
        flight->second.answered_in = turn.serial;
      if (!turn.batch.reopened.empty()) keep_closed(turn, envelope.causation_id);
    } else {
      close_awaited_commands(turn, saga_id, state_before);
    }
    const std::size_t message_entry =
        journal(turn, saga_id, JournalKind::message_in, envelope.event_id, envelope.event_type, "",
                "", detail::json_text(envelope.data));
    record_reaction(turn, saga_id, *saga, reaction, before, envelope.event_id, message_entry,
                    envelope.causation_id);
    ++turn.applied;
  }

  // A saga parked because a command timed out (a pivot, a compensation) still waits in place
  // for that command. A late reply to exactly that command is its answer: it is applied as if
  // an operator had retried the command and the participant had answered from its ledger.
  // Returns the status the saga resumed with and the reaction, or nullopt (still parked).
  std::optional<std::pair<SagaStatus, Reaction>> resume_parked(Turn& turn,
                                                               const std::string& saga_id,
                                                               CachedSaga& saga,
                                                               const Envelope& envelope,
                                                               const nlohmann::json& payload) {
    auto parked_on = last_timed_out(turn, saga_id);
    if (!parked_on || parked_on->message_id != envelope.causation_id ||
        !waits_for(saga.instance->state(), parked_on->message_type) || !saga.instance->unpark())
      return std::nullopt;
    SagaStatus resumed = saga.instance->status();
    Reaction reaction = saga.instance->handle(envelope.event_type, payload);
    if (!reaction.applied()) {
      saga.instance->resolve(SagaStatus::Failed);  // parked again, unchanged
      return std::nullopt;
    }
    return std::pair{resumed, std::move(reaction)};
  }

  // The latest entry of the saga's journal as this turn leaves it (the committed entries, then
  // this turn's) that matches. Reads the store: for the rare paths (compensations, unexpected
  // replies, operator actions), never for an ordinary reply.
  template <class Matches>
  std::optional<JournalEntry> last_in_journal(const Turn& turn, const std::string& saga_id,
                                              Matches matches) {
    for (auto entry = turn.batch.journal.rbegin(); entry != turn.batch.journal.rend(); ++entry)
      if (entry->saga_id == saga_id && matches(*entry)) return *entry;
    auto entries = store.journal(saga_id);
    if (!entries) throw TurnAborted{entries.error()};
    auto found = std::find_if(entries.value().rbegin(), entries.value().rend(), matches);
    if (found == entries.value().rend()) return std::nullopt;
    return std::move(*found);
  }

  // The command whose retry policy ran out last.
  std::optional<JournalEntry> last_timed_out(const Turn& turn, const std::string& saga_id) {
    return last_in_journal(turn, saga_id, [](const JournalEntry& entry) {
      return entry.kind == JournalKind::timed_out;
    });
  }

  // The eventId of the saga's latest command of this type (empty if it sent none): the step
  // command a compensation undoes.
  std::string last_sent(const Turn& turn, const std::string& saga_id, std::string_view type) {
    auto sent = last_in_journal(turn, saga_id, [&](const JournalEntry& entry) {
      return entry.kind == JournalKind::message_out && entry.message_type == type;
    });
    return sent ? sent->message_id : std::string();
  }

  // Whether `command_id` is a command of this saga that a reply closed: a second, different
  // reply to it is stale or forged, and applying it would move the saga past the step it waits
  // for. A command the engine gave up on (timed out) is not: its late reply is the late_reply or
  // resume path's.
  bool answered_before(const Turn& turn, const std::string& saga_id,
                       const std::string& command_id) {
    if (command_id.empty()) return false;
    if (auto flight = in_flight.find(command_id); flight != in_flight.end())
      return flight->second.answered_in == turn.serial;  // open, unless a reply of this turn
    bool closed = std::find(turn.batch.replied.begin(), turn.batch.replied.end(), command_id) !=
                  turn.batch.replied.end();
    if (!closed) {
      auto row = store.outbox_message(command_id);
      if (!row) throw TurnAborted{row.error()};
      closed = row.value() && row.value()->saga_id == saga_id && row.value()->replied_at;
    }
    return closed && !given_up_on(turn, saga_id, command_id);
  }

  // Whether the engine gave up on the command: a timed_out entry names it.
  bool given_up_on(const Turn& turn, const std::string& saga_id, const std::string& command_id) {
    return !command_id.empty() && last_in_journal(turn, saga_id, [&](const JournalEntry& entry) {
                                    return entry.kind == JournalKind::timed_out &&
                                           entry.message_id == command_id;
                                  }).has_value();
  }

  // Each registered definition's graph goes into the store, for tools that draw sagas.
  void record_definitions() {
    WriteBatch batch;
    batch.at = clock.now();
    for (const auto& [key, type] : types)
      batch.definitions.push_back({key.first, key.second, nlohmann::json(type->graph()).dump()});
    if (batch.empty()) return;
    if (auto status = store.commit(batch); !status) throw TurnAborted{*status.error};
  }

  void recover() {
    for (const auto& [key, type] : types)
      for (std::string_view message_type : type->message_types())
        known_reply_types.emplace(message_type);
    record_definitions();
    if (metrics) count_from_store();
    // Every read before anything is used: a failed read makes the next turn recover again. The
    // commands sent at most once start as every destination's backlog, read back (and sent
    // again, see resend_after_restart) in commit order, at most max_queued_commands at a time.
    auto pending = store.outbox_backlog();
    if (!pending) throw TurnAborted{pending.error()};
    auto awaiting = store.awaiting_reply(std::numeric_limits<std::size_t>::max());
    if (!awaiting) throw TurnAborted{awaiting.error()};
    auto retries = store.retries_after_failure();
    if (!retries) throw TurnAborted{retries.error()};
    std::vector<OutboxMessage> exhausted = out_of_attempts_at_start(pending.value());
    backlogs.clear();
    backlog_size = 0;
    for (const auto& entry : pending.value()) {
      Backlog& backlog = backlogs[entry.destination];
      backlog.after_sequence = entry.first_sequence - 1;
      backlog.restart_boundary = entry.last_sequence;
      backlog.count = static_cast<std::size_t>(entry.count);
      backlog_size += backlog.count;
    }
    for (auto& row : exhausted) {  // tracked, not pending: not part of the backlog's count
      Backlog& backlog = backlogs[row.destination];
      backlog.handled_elsewhere.insert(row.message_id);
      uncount(backlog);
      Timestamp sent = row.created_at;
      track(std::move(row), sent);
    }
    // An open retry after a failure reply: its saga's failures in a row go on from those its
    // wait was for. One never re-sent whose wait is not over waits out the rest (its
    // destination's backlog holds it, and leaves it alone), but no longer than its policy's
    // longest wait from now, should the clock have been set back since. One whose wait is over
    // may have left: sent again at once, like any command sent at most once; one re-sent is
    // awaiting its reply (below).
    const Timestamp now = clock.now();
    for (auto& row : retries.value()) {
      int& failures = retriable_failures[row.saga_id];
      failures = std::max(failures, row.retry_failures);
      if (row.dispatched || !row.not_before || *row.not_before <= now) continue;
      if (!in_flight.contains(row.message_id)) {  // else tracked above, out of attempts
        Backlog& backlog = backlogs[row.destination];
        backlog.handled_elsewhere.insert(row.message_id);
        uncount(backlog);
      }
      row.not_before = std::min(
          *row.not_before, now + longest_wait(policy_for(row), std::max(row.retry_failures, 1)));
      track_waiting_retry(std::move(row));
    }
    for (auto& row : awaiting.value()) {
      counted_from_its_wait(row);
      Timestamp sent = row.dispatched_at.value_or(clock.now());
      track(std::move(row), sent);
    }
    recovered = true;
  }

  // The commands sent at most once that have no attempt left (a policy of one attempt): they are
  // not sent again but wait out their first deadline, which must run even while their
  // destination takes nothing, so they are found at start, a queue's worth of rows at a time
  // (without their bytes), and tracked at once; the read-back skips them. None without such a
  // policy.
  std::vector<OutboxMessage> out_of_attempts_at_start(const std::vector<OutboxBacklog>& pending) {
    std::vector<OutboxMessage> exhausted;
    auto one_attempt = [](const RetryPolicy& policy) { return policy.max_attempts == 1; };
    if (!one_attempt(options.command_retry) && !one_attempt(options.compensation_retry) &&
        std::none_of(options.retry_by_command.begin(), options.retry_by_command.end(),
                     [&](const auto& entry) { return one_attempt(entry.second); }))
      return exhausted;
    const std::size_t chunk = options.max_queued_commands;
    for (const auto& entry : pending) {
      std::int64_t after = entry.first_sequence - 1;
      for (;;) {
        auto rows = store.pending_outbox_for(entry.destination, after, chunk);
        if (!rows) throw TurnAborted{rows.error()};
        for (auto& row : rows.value()) {
          after = row.sequence;
          counted_from_its_wait(row);
          row.attempts = std::max(row.attempts, 1);
          if (!out_of_attempts(row)) continue;
          std::string().swap(row.payload);
          exhausted.push_back(std::move(row));
        }
        if (rows.value().size() < chunk) break;
      }
    }
    return exhausted;
  }

  // An open command the store holds as sent at most once: its first send (not recorded) may have
  // died with the process, so it is sent again at once, as a re-send (recorded). The unrecorded
  // send counts as an attempt made at commit time, so restarts use up the retry budget and
  // cannot postpone the timeout for ever; a command with no attempt left waits out its first
  // deadline and is given up on.
  void resend_after_restart(OutboxMessage row) {
    row.attempts = std::max(row.attempts, 1);
    if (out_of_attempts(row)) {
      Timestamp sent = row.created_at;
      track(std::move(row), sent);
      return;
    }
    queue_resend(std::move(row));
  }

  bool out_of_attempts(const OutboxMessage& row) const {
    const RetryPolicy& policy = policy_for(row);
    return policy.max_attempts > 0 && row.attempts >= policy.max_attempts;
  }

  void queue_resend(OutboxMessage row) {
    if (metrics) metrics->resends.with({row.message_type}).inc();
    counters.command_resends.fetch_add(1, std::memory_order_relaxed);
    queue(std::move(row));
  }

  void queue(OutboxMessage row) {
    ++queued[row.destination];
    unsent.push_back(std::move(row));
  }

  // A command sent again by an operator retry or a retriable step: its row may lie in a backlog
  // not read back yet (after a start), which must then not send it: marked when its turn commits
  // (the row is open in the outbox from then on), queued when the turn is handed out.
  void handled_elsewhere(const OutboxMessage& row) {
    if (auto backlog = backlogs.find(row.destination); backlog != backlogs.end())
      backlog->second.handled_elsewhere.insert(row.message_id);
  }

  void dequeued(const std::string& destination) {
    if (auto found = queued.find(destination); found != queued.end() && found->second > 0)
      --found->second;
  }

  // A command the turn just committed: queued, unless its destination's queue is full or it has
  // a backlog already; then it stays in the outbox only, read back when its turn comes. Moves
  // from `row` when it queues it.
  void queue_new(OutboxMessage& row) {
    auto backlog = backlogs.empty() ? backlogs.end() : backlogs.find(row.destination);
    if (backlog == backlogs.end()) {
      std::size_t& held = queued[row.destination];
      if (held < options.max_queued_commands) {
        unsent.push_back(std::move(row));
        ++held;
        return;
      }
      backlog = backlogs.try_emplace(row.destination).first;
      backlog->second.first_id = row.message_id;
      // Logged at most once a minute per destination: a consumer about as fast as the producer
      // could otherwise fill and drain its queue over and over.
      Timestamp now = clock.now();
      auto [last, first_time] = backlog_logged_at.try_emplace(row.destination, now);
      backlog->second.logged =
          logs(LogLevel::warn) && (first_time || now - last->second >= std::chrono::minutes{1});
      if (backlog->second.logged) {
        last->second = now;
        logger->write(LogRecord(LogLevel::warn,
                                "send queue full: the destination's next commands wait in the "
                                "outbox and are read back as it takes the queued ones",
                                now)
                          .with("destination", row.destination)
                          .with("queuedCommands", static_cast<std::int64_t>(held)));
      }
    }
    ++backlog->second.count;
    ++backlog_size;
  }

  // One command fewer left in the backlog's outbox range (the count is an estimate: never below 0).
  void uncount(Backlog& backlog) {
    if (backlog.count == 0) return;
    --backlog.count;
    --backlog_size;
  }

  std::unordered_map<std::string, Backlog>::iterator erase_backlog(
      std::unordered_map<std::string, Backlog>::iterator it) {
    backlog_size -= std::min(backlog_size, it->second.count);
    return backlogs.erase(it);
  }

  struct ReadBack {
    bool read_any = false;    // rows were read (the backlogs moved on)
    bool queued_any = false;  // some of them were queued
  };

  // Reads back, in commit order, the commands of every destination with a backlog whose queue
  // has drained to half of max_queued_commands, enough to fill it. A destination is caught up
  // once a read returns less than that: its next commands queue in memory again (commits and
  // reads are both this thread's, so none can fall in between). A failed read is tried again at
  // the next send.
  ReadBack read_backlogs() {
    const std::size_t limit = options.max_queued_commands;
    ReadBack result;
    bool failed = false;
    // The outbox already holds the commands of held turns; a read-back stops at the first of
    // them (the rest of its destination's rows are newer), to read them once they are durable.
    std::unordered_set<std::string_view> not_durable;
    for (const auto& waiting : held_turns)
      for (const auto& row : waiting.turn.batch.outbox) not_durable.insert(row.message_id);
    for (auto it = backlogs.begin(); it != backlogs.end();) {
      const std::string& destination = it->first;
      Backlog& backlog = it->second;
      const std::size_t in_queue = queued[destination];
      if (in_queue > limit / 2) {
        ++it;
        continue;
      }
      if (!backlog.first_id.empty()) {
        auto first = store.outbox_message(backlog.first_id);
        if (!first) {
          read_back_failed(destination, first.error());
          failed = true;
          ++it;
          continue;
        }
        if (!first.value()) {  // a Store that deleted an open row: the rest waits for a restart
          if (logs(LogLevel::error))
            logger->write(LogRecord(LogLevel::error,
                                    "a command left in the outbox is missing from it; the "
                                    "destination's later commands are sent after a restart",
                                    clock.now())
                              .with("destination", destination)
                              .with("messageId", backlog.first_id));
          it = erase_backlog(it);
          continue;
        }
        backlog.after_sequence = first.value()->sequence - 1;
        backlog.first_id.clear();
      }
      const std::size_t room = limit - in_queue;
      auto rows = store.pending_outbox_for(destination, backlog.after_sequence, room);
      if (!rows) {
        read_back_failed(destination, rows.error());
        failed = true;
        ++it;
        continue;
      }
      std::size_t taken = 0;
      bool reached_held = false;
      for (auto& row : rows.value()) {
        if (not_durable.contains(row.message_id)) {
          reached_held = true;
          break;
        }
        ++taken;
        backlog.after_sequence = row.sequence;
        if (backlog.handled_elsewhere.erase(row.message_id) > 0) continue;
        uncount(backlog);
        counted_from_its_wait(row);
        result.queued_any = true;
        if (row.sequence <= backlog.restart_boundary)
          resend_after_restart(std::move(row));
        else
          queue(std::move(row));
      }
      result.read_any = result.read_any || taken > 0;
      backlog.read_back += taken;
      if (!reached_held && rows.value().size() < room) {
        if (backlog.logged && logs(LogLevel::info))
          logger->write(LogRecord(LogLevel::info,
                                  "send queue caught up: the destination's commands queue in "
                                  "memory again",
                                  clock.now())
                            .with("destination", destination)
                            .with("readBack", static_cast<std::int64_t>(backlog.read_back)));
        it = erase_backlog(it);
      } else {
        ++it;
      }
    }
    if (!failed) read_back_failing = false;
    return result;
  }

  void read_back_failed(const std::string& destination, const StoreError& error) {
    if (!read_back_failing && logs(LogLevel::warn))
      logger->write(LogRecord(LogLevel::warn,
                              "cannot read commands back from the outbox; trying again at the "
                              "next turn",
                              clock.now())
                        .with("destination", destination)
                        .with("error", error.message));
    read_back_failing = true;
  }

  // Sends what is queued, then what the backlogs give back as their queues drain: a few rounds,
  // until a destination refuses or the backlogs are caught up, so a loop catching up after an
  // outage sends many queues' worth per turn without holding more than one in memory.
  std::size_t send_queued() {
    std::size_t sent = send_unsent();
    backlog_ready = false;
    for (int round = 0; !backlogs.empty(); ++round) {
      const ReadBack read = read_backlogs();
      if (!read.read_any) break;
      if (read.queued_any) {
        const std::size_t more = send_unsent();
        sent += more;
        if (more == 0) break;
      }
      if (round + 1 == kMaxReadBackRounds) {  // the next turn goes on without waiting for input
        backlog_ready = true;
        break;
      }
    }
    counters.queued_commands.store(unsent.size(), std::memory_order_relaxed);
    counters.backlogged_commands.store(backlog_size, std::memory_order_relaxed);
    return sent;
  }

  // Sends pending rows in order. Once a destination refuses, its later rows wait too, so the
  // commands for one service leave in the order they were committed. A first send is not
  // recorded (see resend_after_restart); a re-send is marked for the next commit. Returns how
  // many were handed over.
  std::size_t send_unsent() {
    std::vector<OutboxMessage>& still_pending = unsent_spare;
    still_pending.clear();
    std::unordered_set<std::string> refusing;
    std::size_t refused = 0, sent = 0;
    for (auto& row : unsent) {
      if (refusing.contains(row.destination)) {
        still_pending.push_back(std::move(row));
        continue;
      }
      if (transport.send(row.destination, row.payload) == SendResult::sent) {
        if (sent++ > 0) detail::crash_point("engine.mid_send");
        dequeued(row.destination);
        if (metrics) metrics->published.with({"command", row.message_type}).inc();
        counters.commands_sent.fetch_add(1, std::memory_order_relaxed);
        if (++row.attempts > 1) dispatched_marks.push_back({row.message_id, row.attempts});
        track(std::move(row), clock.now());
      } else {
        ++refused;
        if (metrics) metrics->send_refusals.with({row.destination}).inc();
        refusing.insert(row.destination);
        still_pending.push_back(std::move(row));
      }
    }
    unsent.clear();
    std::swap(unsent, still_pending);
    counters.send_retries.fetch_add(refused, std::memory_order_relaxed);
    return sent;
  }

  const RetryPolicy& policy_for(const OutboxMessage& row) const {
    if (auto found = options.retry_by_command.find(row.message_type);
        found != options.retry_by_command.end())
      return found->second;
    return row.compensation ? options.compensation_retry : options.command_retry;
  }

  // The policy's wait in milliseconds before the jitter.
  static double unjittered_wait(const RetryPolicy& policy, int attempts) {
    double cap = static_cast<double>(policy.max_timeout.count());
    double wait = static_cast<double>(policy.timeout.count());
    for (int i = 1; i < attempts && wait < cap; ++i) wait *= policy.backoff;
    return std::min(wait, cap);
  }

  std::chrono::milliseconds timeout_after(const RetryPolicy& policy, int attempts) {
    double wait = unjittered_wait(policy, attempts);
    if (policy.jitter > 0)
      wait *= 1.0 + std::uniform_real_distribution<double>(-policy.jitter, policy.jitter)(jitter);
    return std::chrono::milliseconds{static_cast<std::int64_t>(std::max(wait, 1.0))};
  }

  // The longest wait timeout_after can give.
  static std::chrono::milliseconds longest_wait(const RetryPolicy& policy, int attempts) {
    const double wait = unjittered_wait(policy, attempts) * (1.0 + std::max(policy.jitter, 0.0));
    return std::chrono::milliseconds{static_cast<std::int64_t>(std::ceil(std::max(wait, 1.0)))};
  }

  // A command handed to the transport at `sent_at`, awaiting its reply until its policy's
  // deadline.
  void track(OutboxMessage row, Timestamp sent_at) {
    const Timestamp deadline = sent_at + timeout_after(policy_for(row), std::max(row.attempts, 1));
    track_until(std::move(row), deadline);
  }

  // A retry after a failure reply read from the store cannot have left before its wait was over:
  // its deadlines and the age gauges count from then, not from when it was committed.
  static void counted_from_its_wait(OutboxMessage& row) {
    if (row.not_before && *row.not_before > row.created_at) row.created_at = *row.not_before;
  }

  // A retry after a failure reply, tracked until its not_before and sent then as a first send
  // (attempts 0). Its wait is not lag: the age gauges and the reply wait count from when it
  // leaves.
  void track_waiting_retry(OutboxMessage row) {
    const Timestamp due = *row.not_before;
    row.attempts = 0;
    row.created_at = due;
    track_until(std::move(row), due);
  }

  // An open command resend_overdue() looks at again at `deadline`: one sent, awaiting its reply;
  // or one never sent (attempts 0, a delayed retry), which leaves then.
  void track_until(OutboxMessage row, Timestamp deadline) {
    auto [slot, inserted] = in_flight.try_emplace(row.message_id);
    InFlight& flight = slot->second;
    if (!inserted) {
      deadlines.erase(flight.by_deadline);
      in_flight_by_age.erase(flight.by_age);
      erase_by_saga(flight.row.saga_id, &slot->first);
    }
    flight.deadline = deadline;
    flight.row = std::move(row);
    std::string().swap(flight.row.payload);  // frees it; read back from the store to re-send
    try {
      flight.by_deadline = deadlines.emplace(deadline, &slot->first);
      flight.by_age = in_flight_by_age.emplace(flight.row.created_at, &slot->first);
      in_flight_by_saga.emplace(flight.row.saga_id, &slot->first);
    } catch (...) {  // out of memory: drop the entry rather than keep positions it lacks
      for (auto* index : {&deadlines, &in_flight_by_age})
        std::erase_if(*index, [&](const auto& entry) { return entry.second == &slot->first; });
      erase_by_saga(flight.row.saga_id, &slot->first);
      in_flight.erase(slot);
      throw;
    }
  }

  void untrack(const std::string& message_id) {
    auto found = in_flight.find(message_id);
    if (found == in_flight.end()) return;
    [[maybe_unused]] const bool indexed = erase_by_saga(found->second.row.saga_id, &found->first);
    assert(indexed && "a command in flight is indexed by its saga");
    deadlines.erase(found->second.by_deadline);
    in_flight_by_age.erase(found->second.by_age);
    in_flight.erase(found);
  }

  // A command waiting in the send queue for a re-send (refused by the transport) or re-armed
  // this turn or by a held one may have had its reply applied in the same commit: it is closed
  // and is not sent again. This turn's new commands cannot have been answered yet.
  void forget_closed_resends(Turn& turn) {
    if (turn.batch.replied.empty() || (unsent.empty() && turn.rearm.empty() && held_turns.empty()))
      return;
    std::unordered_set<std::string_view> closed(turn.batch.replied.begin(),
                                                turn.batch.replied.end());
    auto is_closed = [&](const OutboxMessage& row) { return closed.contains(row.message_id); };
    std::erase_if(unsent, [&](const OutboxMessage& row) {
      if (!is_closed(row)) return false;
      dequeued(row.destination);
      return true;
    });
    std::erase_if(turn.rearm, is_closed);
    for (auto& waiting : held_turns) std::erase_if(waiting.turn.rearm, is_closed);
  }

  // An operator's retry reopened `command_id` in this turn, and its late reply was applied after
  // it: the reply closes it, before the commit (a reopen would win in the store otherwise), and
  // the operator's answer says it was not sent.
  void keep_closed(Turn& turn, const std::string& command_id) {
    if (std::erase(turn.batch.reopened, command_id) == 0) return;
    auto rearmed = std::find_if(turn.rearm.begin(), turn.rearm.end(),
                                [&](const auto& row) { return row.message_id == command_id; });
    if (rearmed == turn.rearm.end()) return;
    for (OperatorRequest* request : turn.operations) {
      if (request->kind != OperatorRequest::Kind::retry || request->saga_id != rearmed->saga_id ||
          !request->result.ok)
        continue;
      request->result.message = "saga " + rearmed->saga_id + " retried: the reply to " +
                                rearmed->message_type +
                                " arrived meanwhile and was applied; not sent";
      for (auto& answer : turn.batch.answers)
        if (request->stored_id != 0 && answer.request_id == request->stored_id)
          answer.result = request->result.message;
    }
    turn.rearm.erase(rearmed);
  }

  // Why a reply may not come from the service its transport says sent it (nullopt: it may, or the
  // sender is unknown): its command went to another service; or, naming no command, its saga
  // awaits no reply from that service.
  std::optional<std::string> wrong_sender(const InboundMessage& message, const Envelope& envelope,
                                          const Route& routed, const CachedSaga& saga) {
    const std::string& sender = message.sender_service;
    if (sender.empty()) return std::nullopt;
    if (routed.destination.empty()
            ? awaits_reply_from(routed.saga_id, sender, saga.instance->state())
            : sender == routed.destination)
      return std::nullopt;
    const std::string from = "came from service '" + sender + "' (" + message.peer + ")";
    if (routed.destination.empty())
      return "it names no command of saga " + routed.saga_id + ", and it " + from +
             ", to which the saga has no command awaiting a reply: not applied";
    return "it names command " + envelope.causation_id + ", sent to service '" +
           routed.destination + "', but " + from + ": not applied";
  }

  // Whether the saga awaits a reply from `service`, as a reply that names no command must: an
  // open command sent to it, of the type the saga's state awaits when the state names one (such
  // a reply closes those). Commands in flight are in memory; one that is not (in the send queue,
  // or in the backlog after a restart, its first send perhaps made before) is read from the
  // store, on this rare path only.
  bool awaits_reply_from(const std::string& saga_id, const std::string& service,
                         std::string_view state) {
    const std::string_view type = awaited_type(state);
    auto awaited = [&](const OutboxMessage& row) {
      return row.destination == service && (type.empty() || row.message_type == type);
    };
    bool in_memory = false;
    for_each_in_flight(saga_id, [&](const std::string& id) {
      if (auto flight = in_flight.find(id);
          flight != in_flight.end() && awaited(flight->second.row))
        in_memory = true;
    });
    if (in_memory) return true;
    auto rows = store.outbox(saga_id);
    if (!rows) throw TurnAborted{rows.error()};
    return std::any_of(rows.value().begin(), rows.value().end(),
                       [&](const OutboxMessage& row) { return !row.replied_at && awaited(row); });
  }

  // A reply that names no command (causationId is optional) answers what its saga waited for:
  // the DSL names it in the state ("awaiting:<type>", "compensating:<type>"). Closed here, as a
  // reply naming it would close it; left open, it would be re-sent and in the end time out
  // against whatever step the saga is in by then. A state without such a name closes nothing.
  void close_awaited_commands(Turn& turn, const std::string& saga_id, std::string_view state) {
    const std::string_view type = awaited_type(state);
    if (type.empty()) return;
    for_each_in_flight(saga_id, [&](const std::string& id) {
      auto flight = in_flight.find(id);
      if (flight == in_flight.end() || flight->second.row.message_type != type ||
          flight->second.answered_in == turn.serial)
        return;
      turn.batch.replied.push_back(id);
      flight->second.answered_in = turn.serial;
    });
  }

  // Commands whose reply is overdue go back to the send queue, unchanged (same eventId).
  void resend_overdue() {
    Timestamp now = clock.now();
    std::vector<std::string> overdue;
    for (auto it = deadlines.begin(); it != deadlines.end() && it->first <= now; ++it)
      overdue.push_back(*it->second);
    std::sort(overdue.begin(), overdue.end(), [this](const auto& a, const auto& b) {
      const auto& left = in_flight.at(a).row;
      const auto& right = in_flight.at(b).row;
      return std::tie(left.created_at, left.message_id) <
             std::tie(right.created_at, right.message_id);
    });
    for (const auto& id : overdue) {
      // The bytes of a tracked command are read back from its outbox row. A failed read leaves
      // this and the later overdue commands tracked, for the next turn; the turn goes on.
      auto stored = store.outbox_message(id);
      if (!stored) {
        if (!resend_read_failing && logs(LogLevel::warn))
          logger->write(command_line(LogLevel::warn,
                                     "cannot read an overdue command back from the outbox; "
                                     "re-sending it later",
                                     in_flight.at(id).row)
                            .with("error", stored.error().message));
        resend_read_failing = true;
        break;
      }
      resend_read_failing = false;
      if (!stored.value()) {  // a Store that deleted an open row: nothing to re-send
        if (logs(LogLevel::error))
          logger->write(command_line(LogLevel::error,
                                     "open command missing from the outbox; looked for again at "
                                     "its next deadline",
                                     in_flight.at(id).row));
        track(in_flight.at(id).row, now);
        continue;
      }
      OutboxMessage row = in_flight.at(id).row;
      untrack(id);
      row.payload = std::move(stored.value()->payload);
      if (row.attempts == 0) {  // a retry after a failure reply, never sent: its wait is over
        if (logs(LogLevel::info))
          logger->write(command_line(LogLevel::info,
                                     "retriable step's command sent after its failure reply's wait",
                                     row)
                            .with("failuresInARow",
                                  static_cast<std::int64_t>(failures_in_a_row(row.saga_id))));
        queue(std::move(row));
        continue;
      }
      if (out_of_attempts(row)) {
        expired.push_back(Input{nullptr, {}, std::make_unique<OutboxMessage>(std::move(row))});
        continue;
      }
      if (logs(LogLevel::info))
        logger->write(
            command_line(LogLevel::info, "command re-sent", row).with("attempt", row.attempts + 1));
      queue_resend(std::move(row));
    }
  }

  void process_operation(Turn& turn, OperatorRequest& request) {
    turn.operations.push_back(&request);
    if (request.kind != OperatorRequest::Kind::invalid) apply_operation(turn, request);
    if (request.stored_id != 0)
      turn.batch.answers.push_back({request.stored_id, request.result.ok, request.result.message});
  }

  void apply_operation(Turn& turn, OperatorRequest& request) {
    auto refuse = [&](std::string why) { request.result = {false, std::move(why)}; };
    if (request.kind == OperatorRequest::Kind::replay ||
        request.kind == OperatorRequest::Kind::discard) {
      auto loaded = store.dead_letter(request.dead_letter_id);
      if (!loaded) throw TurnAborted{loaded.error()};
      const auto& letter = loaded.value();
      std::string name = "dead letter " + std::to_string(request.dead_letter_id);
      auto in_turn = [&](const std::vector<std::int64_t>& ids) {
        return std::find(ids.begin(), ids.end(), request.dead_letter_id) != ids.end();
      };
      if (!letter) return refuse(name + " does not exist");
      if (letter->replayed_at || in_turn(turn.batch.replayed))
        return refuse(name + " was already replayed");
      if (letter->discarded_at || in_turn(turn.batch.discarded))
        return refuse(name + " was discarded");
      if (request.kind == OperatorRequest::Kind::discard) {
        turn.batch.discarded.push_back(request.dead_letter_id);
        request.result = {true, name + " discarded"};
        return;
      }
      if (letter->raw.size() != letter->raw_size)
        return refuse(name + " kept only " + std::to_string(letter->raw.size()) + " of its " +
                      std::to_string(letter->raw_size) + " bytes; it cannot be replayed");
      std::size_t letters_before = turn.batch.dead_letters.size();
      const std::size_t applied_before = turn.applied;
      process_message(turn, InboundMessage{letter->raw, "replay of " + name});
      turn.batch.replayed.push_back(request.dead_letter_id);
      if (turn.batch.dead_letters.size() > letters_before)
        request.result = {false, name + " was refused again and dead-lettered anew: " +
                                     turn.batch.dead_letters.back().reason};
      else if (turn.applied == applied_before)
        request.result = {true, name +
                                    " replayed: a duplicate of a message already applied, "
                                    "nothing changed"};
      else
        request.result = {true, name + " replayed"};
      return;
    }
    std::string code, reason;
    CachedSaga* saga = load(turn, request.saga_id, code, reason);
    if (!saga) return refuse(reason);
    if (saga->instance->status() != SagaStatus::Failed)
      return refuse("saga " + request.saga_id + " is " +
                    std::string(to_string(saga->instance->status())) + ", not Failed");
    turn.touched.push_back(request.saga_id);
    if (request.kind == OperatorRequest::Kind::resolve) {
      if (request.status != SagaStatus::Completed && request.status != SagaStatus::Compensated)
        return refuse("a saga is resolved as Completed or Compensated");
      saga->instance->resolve(request.status);
      journal(
          turn, request.saga_id, JournalKind::status_changed, "", "", "", "",
          std::string(to_string(request.status)) + ": resolved by an operator: " + request.note);
      nlohmann::json data = write_saga(turn, request.saga_id, *saga);
      if (instrumented())
        observe_end(turn, request.saga_id, *saga, request.status, "",
                    "resolved by an operator: " + request.note);
      turn.outcomes.push_back({request.saga_id, std::string(saga->type->name()), request.status,
                               std::string(saga->instance->state()), std::move(data),
                               "resolved by an operator: " + request.note});
      request.result = {true, "saga " + request.saga_id + " resolved as " +
                                  std::string(to_string(request.status))};
      return;
    }
    // retry: the command whose policy ran out is the one named by the last timed_out entry.
    auto parked_on = last_timed_out(turn, request.saga_id);
    const std::string command_id = parked_on ? parked_on->message_id : "";
    auto rows = store.outbox(request.saga_id);
    if (!rows) throw TurnAborted{rows.error()};
    std::optional<OutboxMessage> command;
    for (auto& row : rows.value())
      if (row.message_id == command_id) command = row;
    if (!command || !waits_for(saga->instance->state(), command->message_type) ||
        !saga->instance->unpark())
      return refuse("saga " + request.saga_id +
                    " was parked by a failure its state cannot wait out (see its journal); fix "
                    "the cause and resolve it");
    journal(turn, request.saga_id, JournalKind::status_changed, command->message_id,
            command->message_type, "", "",
            std::string(to_string(saga->instance->status())) + ": retried by an operator");
    write_saga(turn, request.saga_id, *saga);
    turn.batch.reopened.push_back(command->message_id);
    command->attempts = 0;
    turn.rearm.push_back(*command);
    request.result = {
        true, "saga " + request.saga_id + " retried: " + command->message_type + " sent again"};
  }

  // Whether a saga in `state` waits for a command of `type`. The DSL names a waiting state
  // "awaiting:<type>" or "compensating:<type>". Where user code parked a saga after a timeout (a
  // compensation's builder threw), the timed-out command is not the one its state waits for.
  // A hand-written machine's states are named freely and are not checked.
  static bool waits_for(std::string_view state, std::string_view type) {
    const std::string_view awaited = awaited_type(state);
    return awaited.empty() || awaited == type;
  }

  // The command type a DSL state's name says it waits for ("awaiting:<type>",
  // "compensating:<type>"); empty for a name without one.
  static std::string_view awaited_type(std::string_view state) {
    const auto colon = state.find(':');
    return colon == std::string_view::npos ? std::string_view() : state.substr(colon + 1);
  }

  // Operator requests a tool queued in the store join the next turn like API calls.
  void poll_operator_requests() {
    Timestamp now = clock.now();
    if (now < next_operator_poll || stopping.load()) return;
    next_operator_poll = now + options.operator_poll_interval;
    auto pending = store.pending_operator_requests(options.max_batch_messages);
    if (!pending) throw TurnAborted{pending.error()};
    std::lock_guard lock(starts_mutex);
    for (const auto& stored : pending.value())
      if (stored_requests_queued.insert(stored.id).second)
        queued_starts.push_back(Input{nullptr, {}, nullptr, from_stored(stored)});
  }

  std::future<OperatorResult> queue_operation(std::shared_ptr<OperatorRequest> request) {
    auto future = request->promise.get_future();
    {
      std::lock_guard lock(starts_mutex);
      if (stopping.load()) {
        request->promise.set_value({false, "the engine is stopping"});
        return future;
      }
      queued_starts.push_back(Input{nullptr, {}, nullptr, std::move(request)});
    }
    transport.wake();
    return future;
  }

  // A command whose retry policy ran out. If its reply was applied earlier in this turn, the
  // reply won. Otherwise the step fails (a compensation runs out: the saga is parked), unless
  // the command belongs to a retriable step, which is re-sent for ever.
  void process_expiry(Turn& turn, const OutboxMessage& row) {
    if (std::find(turn.batch.replied.begin(), turn.batch.replied.end(), row.message_id) !=
        turn.batch.replied.end())
      return;
    std::string code, reason;
    CachedSaga* saga = load(turn, row.saga_id, code, reason);
    if (!saga && code != "unknown_saga") {
      // This build cannot load the saga (its type, version or state is unknown here): the
      // command stays open in the store, for a build that can to re-arm it when it starts.
      if (logs(LogLevel::warn))
        write_later(turn, command_line(LogLevel::warn,
                                       "command timed out for a saga this "
                                       "engine cannot load; left open",
                                       row)
                              .with("reason", reason));
      return;
    }
    if (!saga || is_terminal(saga->instance->status())) {
      turn.batch.replied.push_back(row.message_id);  // nothing waits for it any more
      return;
    }
    if (saga->type->is_retriable(row.message_type)) {
      turn.rearm.push_back(row);
      return;
    }
    std::string why = "no reply to " + row.message_type + " " + row.message_id + " after " +
                      std::to_string(row.attempts) + " attempt(s)";
    const std::size_t timed_out_entry = journal(turn, row.saga_id, JournalKind::timed_out,
                                                row.message_id, row.message_type, "", "", why);
    if (metrics) {
      std::string type = row.message_type;
      turn.after_commit.push_back([this, type] { metrics->timeouts.with({type}).inc(); });
    }
    if (logs(LogLevel::warn))
      write_later(turn, command_line(LogLevel::warn, "command timed out", row)
                            .with("attempts", row.attempts)
                            .with("sagaType", saga->type->name()));
    SagaStatus before = saga->instance->status();
    turn.touched.push_back(row.saga_id);
    Reaction reaction = saga->instance->time_out(why);
    turn.batch.replied.push_back(row.message_id);
    record_reaction(turn, row.saga_id, *saga, reaction, before, row.message_id, timed_out_entry,
                    row.message_id);
    ++turn.timeouts;
  }

  void take_queued_starts(std::vector<Input>& inputs, std::size_t limit) {
    std::lock_guard lock(starts_mutex);
    std::size_t take = std::min(queued_starts.size(), limit);
    std::move(queued_starts.begin(), queued_starts.begin() + static_cast<std::ptrdiff_t>(take),
              std::back_inserter(inputs));
    queued_starts.erase(queued_starts.begin(),
                        queued_starts.begin() + static_cast<std::ptrdiff_t>(take));
  }

  // A turn's inputs go into the vector the last turn that did not fail left (capacity kept): a
  // turn of a few hundred inputs does not grow a fresh one, allocation by allocation.
  std::vector<Input> gather_inputs() {
    std::vector<Input> inputs = std::exchange(spare.inputs, {});
    take_queued_starts(inputs, options.max_batch_messages);
    if (stopping.load()) return inputs;  // draining: finish what was accepted, take nothing new
    // Re-send marks alone are not worth a commit (an fsync): they wait for company.
    auto wait = inputs.empty() && !backlog_ready ? options.idle_wait : std::chrono::milliseconds{0};
    // Idle with turns held: nothing is worth doing before their sync ends, which hands them out.
    if (wait.count() > 0 && sync_running()) sync_and_hand_out();
    const auto deadline = std::chrono::steady_clock::now() + options.max_batch_delay;
    std::size_t bytes = 0;
    while (inputs.size() < options.max_batch_messages && !stopping.load()) {
      auto message = transport.receive(wait);
      if (message) {
        bytes += message->bytes.size();
        inputs.push_back(Input{nullptr, std::move(*message)});
        if (bytes >= options.max_batch_bytes) {  // checked after taking: a budget of 0 takes one
          gathered_bytes_full = true;
          break;
        }
      } else if (!inputs.empty() && sync_running() && sync_and_hand_out()) {
        // Drained while the last commit's sync ran: its turns went out, and what arrived
        // meanwhile joins this turn. Its effects could not have left before that sync ended
        // anyway, and one commit costs less than two.
        take_queued_starts(inputs, options.max_batch_messages - inputs.size());
        wait = std::chrono::milliseconds{0};
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      if (!message && (inputs.empty() || now >= deadline)) break;
      wait = now < deadline ? std::chrono::ceil<std::chrono::milliseconds>(deadline - now)
                            : std::chrono::milliseconds{0};
    }
    return inputs;
  }

  // The newest held turn's commit is not durable yet: its sync is running.
  bool sync_running() const {
    return !held_turns.empty() && store.durable_through() < held_turns.back().commit;
  }

  // Waits until every commit so far is durable. A store that could not sync is not asked again
  // (it refuses commits from then on): its error is returned.
  StoreStatus sync_store() {
    if (sync_failure) return {sync_failure};
    if (store.durable_through() >= store.last_commit()) return StoreStatus::success();
    StoreStatus status = store.sync();
    if (!status) {
      sync_failure = status.error;
      if (logs(LogLevel::error))
        logger->write(
            LogRecord(LogLevel::error, "cannot make the store's commits durable", clock.now())
                .with("error", status.error->message)
                .with("turnsNotDurable", held_turns.size()));
    }
    return status;
  }

  // Waits until every commit so far is durable, then hands out the held turns. A store that
  // cannot sync keeps them (a restart recovers from what the file holds).
  StoreStatus sync_and_hand_out() {
    StoreStatus status = sync_store();
    if (status) release_durable();
    return status;
  }

  // The in-memory sagas of a turn that did not commit are ahead of the store: drop them.
  void discard_turn(const Turn& turn) {
    for (const auto& saga_id : turn.delayed)  // the inputs are tried again: not a failure more
      if (auto count = retriable_failures.find(saga_id);
          count != retriable_failures.end() && --count->second <= 0)
        retriable_failures.erase(count);
    for (const auto& saga_id : turn.touched) cache.erase(saga_id);
    for (const auto& saga_id : turn.loaded) cache.erase(saga_id);
    publish_cache_size();
  }

  // Processes every input into `turn`. Returns the index of an input whose processing threw
  // something other than a store failure (a bug or poisonous data), or nullopt.
  std::optional<std::size_t> process_inputs(Turn& turn, std::vector<Input>& inputs) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      turn.input_received = inputs[i].received_at;
      try {
        if (inputs[i].operation)
          process_operation(turn, *inputs[i].operation);
        else if (inputs[i].expired)
          process_expiry(turn, *inputs[i].expired);
        else if (inputs[i].start)
          process_start(turn, *inputs[i].start);
        else
          process_message(turn, inputs[i].message);
      } catch (const TurnAborted&) {
        throw;
      } catch (const PoisonError& error) {
        turn.poison_code = error.code;
        turn.poison_reason = error.what();
        return i;
      } catch (const std::exception& error) {
        turn.poison_code = "processing_error";
        turn.poison_reason = error.what();
        return i;
      } catch (...) {
        turn.poison_reason = "unknown exception";
        return i;
      }
    }
    return std::nullopt;
  }

  // An input that cannot be processed is taken out of the turn: a message is dead-lettered, a
  // start is dropped and reported Failed. The other inputs are retried without it.
  void quarantine(Input poisoned, const std::string& code, const std::string& reason,
                  std::vector<Input> others) {
    Turn turn;
    if (poisoned.operation) {
      OperatorRequest& request = *poisoned.operation;
      retry_inputs = std::move(others);
      OperatorResult failed{false, "the operation failed: " + reason};
      if (request.stored_id != 0) {
        turn.batch.answers.push_back({request.stored_id, false, failed.message});
        turn.batch.at = clock.now();
        if (StoreStatus status = store.commit(turn.batch);
            !status || !(status = sync_and_hand_out())) {
          fail_quarantine(*status.error, std::move(poisoned));
          return;
        }
        stored_requests_queued.erase(request.stored_id);
      }
      request.promise.set_value(std::move(failed));
      return;
    }
    if (poisoned.expired) {  // the command stays awaiting its reply; a restart re-arms it
      if (logs(LogLevel::error))
        logger->write(command_line(LogLevel::error,
                                   "a command's retries ran out but its saga could not take the "
                                   "timeout; the saga waits for its reply or a restart",
                                   *poisoned.expired)
                          .with("reasonCode", code)
                          .with("reason", reason));
      retry_inputs = std::move(others);
      return;
    }
    if (poisoned.start) {
      auto& request = *poisoned.start;
      dead_letter(turn, request.data_text, "start_failed",
                  "saga '" + request.saga_id + "' could not be started: " + reason, nullptr,
                  request.saga_id, false);
      turn.batch.dead_letters.back().saga_id = request.saga_id;
      turn.batch.dead_letters.back().message_type = std::string(request.type->name());
      turn.outcomes.push_back({request.saga_id, std::string(request.type->name()),
                               SagaStatus::Failed, "", nlohmann::json::parse(request.data_text),
                               reason});
    } else {
      if (++poisoned.failed_attempts < options.poison_attempts) {
        auto wait = options.commit_backoff * (1 << std::min(poisoned.failed_attempts - 1, 16));
        deferred.emplace_back(clock.now() + std::min(wait, options.max_commit_backoff),
                              std::move(poisoned));
        retry_inputs = std::move(others);
        return;
      }
      DecodeResult decoded = decode_envelope(poisoned.message.bytes, options.max_message_bytes);
      const Envelope* envelope = std::get_if<Envelope>(&decoded);
      turn.input_received = poisoned.received_at;
      std::string saga_id;
      if (envelope && !envelope->causation_id.empty())
        if (auto flight = in_flight.find(envelope->causation_id); flight != in_flight.end())
          saga_id = flight->second.row.saga_id;
      std::string why =
          code == "processing_error" ? "processing the message threw: " + reason : reason;
      dead_letter(turn, poisoned.message.bytes, code,
                  why + " (" + std::to_string(poisoned.failed_attempts) + " attempts)", envelope,
                  saga_id);
      turn.batch.dead_letters.back().attempts = poisoned.failed_attempts;
    }
    retry_inputs = std::move(others);
    if (StoreStatus status = store.commit(turn.batch); !status || !(status = sync_and_hand_out())) {
      fail_quarantine(*status.error, std::move(poisoned));
      return;
    }
    counters.dead_letters.fetch_add(1, std::memory_order_relaxed);
    notify(turn);
  }

  std::size_t run_once() {
    ++turn_number;
    if (backoff.count() > 0) std::this_thread::sleep_for(backoff);
    std::vector<Input> inputs;
    gathered_bytes_full = false;
    try {
      if (!recovered) recover();
      release_durable();
      resend_overdue();
      send_queued();
      poll_operator_requests();
      inputs = retry_inputs.empty() ? gather_inputs() : std::exchange(retry_inputs, {});
      for (auto& input : expired) inputs.push_back(std::move(input));  // after the replies
      expired.clear();
      take_due_deferred(inputs);
    } catch (const TurnAborted& aborted) {
      fail_turn(aborted.error, std::exchange(retry_inputs, {}));  // keep a failed turn's inputs
      return 0;
    }

    Turn turn;
    reuse_buffers(turn);
    turn.publish_events = options.publish_events && transport.has_observers();
    std::optional<std::size_t> poisoned;
    try {
      ReadScope reads(store);
      poisoned = process_inputs(turn, inputs);
    } catch (const TurnAborted& aborted) {
      discard_turn(turn);
      fail_turn(aborted.error, std::move(inputs));
      return 0;
    }
    if (poisoned) {
      discard_turn(turn);
      Input bad = std::move(inputs[*poisoned]);
      inputs.erase(inputs.begin() + static_cast<std::ptrdiff_t>(*poisoned));
      quarantine(std::move(bad), turn.poison_code, turn.poison_reason, std::move(inputs));
      return 0;
    }

    turn.batch.dispatched = dispatched_marks;
    turn.batch.at = clock.now();
    if (turn.batch.empty()) {
      settle_cache(turn);
      hand_out(turn, inputs, false, {});
      return 0;
    }
    detail::crash_point("engine.before_commit");
    auto commit_started = std::chrono::steady_clock::now();
    StoreStatus status = store.commit(turn.batch);
    if (!status) {
      discard_turn(turn);
      fail_turn(*status.error, std::move(inputs));
      return 0;
    }
    detail::crash_point("engine.after_commit");
    if (std::any_of(turn.batch.outbox.begin(), turn.batch.outbox.end(),
                    [](const OutboxMessage& row) { return row.compensation; }))
      detail::crash_point("engine.compensation_commit");
    if (metrics) {
      metrics->commit_duration.observe(seconds_since(commit_started));
      metrics->commits.inc();
      metrics->batch_size.observe(static_cast<double>(inputs.size()));
      metrics->dead_letter_depth.dec(
          static_cast<double>(turn.batch.replayed.size() + turn.batch.discarded.size()));
    }
    backoff = std::chrono::milliseconds{0};
    counters.commits.fetch_add(1, std::memory_order_relaxed);
    counters.sagas_started.fetch_add(turn.started, std::memory_order_relaxed);
    counters.messages_received.fetch_add(turn.received, std::memory_order_relaxed);
    counters.messages_applied.fetch_add(turn.applied, std::memory_order_relaxed);
    counters.duplicates.fetch_add(turn.duplicates, std::memory_order_relaxed);
    counters.dead_letters.fetch_add(turn.batch.dead_letters.size(), std::memory_order_relaxed);
    dispatched_marks.erase(
        dispatched_marks.begin(),
        dispatched_marks.begin() + static_cast<std::ptrdiff_t>(turn.batch.dispatched.size()));
    for (auto& write : turn.batch.sagas) {
      auto found = cache.find(write.record.id);
      if (found == cache.end()) continue;
      if (metrics) count_saga_write(write, found->second);
      if (is_terminal(write.record.status)) {
        cache.erase(found);
        continue;
      }
      const std::int64_t row_version =
          write.expected_row_version ? *write.expected_row_version + 1 : write.record.row_version;
      found->second.record = std::move(write.record);  // the batch is not read after this
      std::string().swap(found->second.record.data);   // the instance holds the data
      found->second.record.row_version = row_version;
      found->second.committed = true;
    }
    settle_cache(turn);
    for (const auto& id : turn.batch.replied) untrack(id);
    forget_closed_resends(turn);
    counters.command_timeouts.fetch_add(turn.timeouts, std::memory_order_relaxed);
    const std::size_t applied = inputs.size();
    // A full turn (by count or by bytes) means more input is waiting: the loop goes on while the
    // store syncs. Otherwise there is nothing better to do than to wait for the disk here, on
    // this thread: a hand-over to the store's thread and back would cost two wake-ups, each
    // waiting for a core.
    if (applied >= options.max_batch_messages || gathered_bytes_full)
      store.begin_sync();
    else
      sync_store();
    hand_out(turn, inputs, true, commit_started);
    return applied;
  }

  // What a turn hands to the outside world, once its commit (Store::last_commit; a turn that
  // committed nothing follows the last held one) is durable and every turn before it has handed
  // out its own: at once with a store that is durable on return, else held until
  // release_durable() finds it durable.
  void hand_out(Turn& turn, std::vector<Input>& inputs, bool committed,
                std::chrono::steady_clock::time_point commit_started) {
    const std::uint64_t commit = committed            ? store.last_commit()
                                 : held_turns.empty() ? 0
                                                      : held_turns.back().commit;
    for (const auto& row : turn.rearm) handled_elsewhere(row);
    // A turn that committed nothing and has nothing to answer or send is not held (a store that
    // can no longer sync would otherwise collect one per idle turn): only its log lines and
    // metrics go out ahead of held turns.
    const bool nothing_to_hold = !committed && turn.operations.empty() && turn.rearm.empty();
    if (nothing_to_hold || (held_turns.empty() && store.durable_through() >= commit)) {
      release(turn, inputs, committed, commit_started);
      return;
    }
    held_turns.push_back(
        HeldTurn{commit, committed, std::move(turn), std::move(inputs), commit_started});
    release_durable();
  }

  int failures_in_a_row(const std::string& saga_id) const {
    auto found = retriable_failures.find(saga_id);
    return found == retriable_failures.end() ? 0 : found->second;
  }

  void release_durable() {
    if (held_turns.empty()) return;
    const std::uint64_t durable = store.durable_through();
    while (!held_turns.empty() && held_turns.front().commit <= durable) {
      HeldTurn next = std::move(held_turns.front());
      held_turns.pop_front();
      release(next.turn, next.inputs, next.committed, next.commit_started);
    }
  }

  void release(Turn& turn, std::vector<Input>& inputs, bool committed,
               std::chrono::steady_clock::time_point commit_started) {
    if (committed && metrics) metrics->durable_after.observe(seconds_since(commit_started));
    if (committed)
      for (auto& row : turn.batch.outbox) {
        if (row.not_before) {  // a retry after a failure reply: it waits before it leaves
          // A destination backlog (one that started before, or with this turn's earlier
          // commands) may hold the row in its range: the read-back must leave it alone. Until
          // now it could not reach the row: a read-back stops at a held turn's commands.
          handled_elsewhere(row);
          track_waiting_retry(std::move(row));
        } else {
          queue_new(row);
        }
      }
    for (auto& row : turn.rearm) queue(std::move(row));
    finish_operations(turn, committed);
    if (committed || !turn.rearm.empty()) {
      const std::size_t sent = send_queued();
      if (committed && sent > 0) detail::crash_point("engine.after_send");
    }
    for (const auto& [type, bytes] : turn.events) {
      transport.publish(type, bytes);
      if (metrics) metrics->published.with({"event", type}).inc();
    }
    notify(turn);
    keep_buffers(turn, inputs);
  }

  // The big containers of a turn are kept for the next one (cleared, capacity kept), so a busy
  // loop does not allocate and free them, and the allocator does not consolidate, per turn.
  struct SpareBuffers {
    std::vector<SagaWrite> sagas;
    std::vector<JournalEntry> journal;
    std::vector<OutboxMessage> outbox;
    std::vector<std::string> inbox;
    std::vector<std::string> replied;
    std::unordered_map<std::string, std::size_t> saga_writes;
    std::unordered_set<std::string> seen_inbox;
    std::vector<SagaOutcome> outcomes;
    std::vector<std::string> touched;
    std::vector<std::function<void()>> after_commit;
    std::vector<LogRecord> log_lines;
    std::vector<Input> inputs;
  } spare;
  static constexpr std::size_t kMaxSpareEntries = 4096;
  static constexpr std::size_t kMaxSpareText = 16 * 1024;
  std::vector<JournalEntry> spare_journal_entries;  // see journal()
  std::vector<SagaWrite> spare_saga_writes;         // see write_saga()

  void reuse_buffers(Turn& turn) {
    turn.batch.sagas = std::exchange(spare.sagas, {});
    turn.batch.journal = std::exchange(spare.journal, {});
    turn.batch.outbox = std::exchange(spare.outbox, {});
    turn.batch.inbox = std::exchange(spare.inbox, {});
    turn.batch.replied = std::exchange(spare.replied, {});
    turn.saga_writes = std::exchange(spare.saga_writes, {});
    turn.inbox = std::exchange(spare.seen_inbox, {});
    turn.outcomes = std::exchange(spare.outcomes, {});
    turn.touched = std::exchange(spare.touched, {});
    turn.after_commit = std::exchange(spare.after_commit, {});
    turn.log_lines = std::exchange(spare.log_lines, {});
  }

  // After a turn that did not fail, when nothing reads it or its inputs any more.
  void keep_buffers(Turn& turn, std::vector<Input>& inputs) {
    auto keep = [](auto& from, auto& to) {
      from.clear();
      to = std::move(from);
    };
    // A pool keeps at most kMaxSpareEntries objects, none holding a text past kMaxSpareText: a
    // large turn (a recovery, a burst of large payloads) does not keep its memory for good.
    for (JournalEntry& entry : turn.batch.journal)
      if (spare_journal_entries.size() < kMaxSpareEntries &&
          entry.detail.capacity() <= kMaxSpareText)
        spare_journal_entries.push_back(std::move(entry));
    for (SagaWrite& write : turn.batch.sagas)
      if (spare_saga_writes.size() < kMaxSpareEntries &&
          write.record.data.capacity() <= kMaxSpareText)
        spare_saga_writes.push_back(std::move(write));
    keep(turn.batch.sagas, spare.sagas);
    keep(turn.batch.journal, spare.journal);
    keep(turn.batch.outbox, spare.outbox);
    keep(turn.batch.inbox, spare.inbox);
    keep(turn.batch.replied, spare.replied);
    keep(turn.saga_writes, spare.saga_writes);
    keep(turn.inbox, spare.seen_inbox);
    keep(turn.outcomes, spare.outcomes);
    keep(turn.touched, spare.touched);
    keep(turn.after_commit, spare.after_commit);
    keep(turn.log_lines, spare.log_lines);
    keep(inputs, spare.inputs);
  }

  // The saga gauges follow every committed saga row: a new one, or a change of status.
  void count_saga_write(const SagaWrite& write, const CachedSaga& before) {
    const std::string& type = write.record.type;
    if (!write.expected_row_version) {
      metrics->started.with({type}).inc();
    } else {
      if (before.record.status == write.record.status) return;
      metrics->sagas.with({type, to_string(before.record.status)}).dec();
    }
    metrics->sagas.with({type, to_string(write.record.status)}).inc();
  }

  void take_due_deferred(std::vector<Input>& inputs) {
    if (deferred.empty()) return;
    Timestamp now = clock.now();
    for (auto it = deferred.begin(); it != deferred.end();) {
      if (it->first > now) {
        ++it;
        continue;
      }
      inputs.push_back(std::move(it->second));
      it = deferred.erase(it);
    }
  }

  // Sagas loaded only to journal a late or duplicate message do not stay cached once ended.
  void discard_loaded_terminal(const Turn& turn) {
    for (const auto& saga_id : turn.loaded) {
      auto found = cache.find(saga_id);
      if (found != cache.end() && is_terminal(found->second.instance->status())) cache.erase(found);
    }
  }

  // After a turn that committed (or had nothing to commit), when every cached saga matches the
  // store, which load() reads back: ended sagas loaded only to journal a message leave, the
  // turn's loads are counted, and the cache is trimmed to Options::max_cached_sagas.
  void settle_cache(const Turn& turn) {
    discard_loaded_terminal(turn);
    counters.sagas_loaded.fetch_add(turn.loaded.size(), std::memory_order_relaxed);
    if (metrics) metrics->cache_loads.inc(static_cast<double>(turn.loaded.size()));
    evict_least_recently_used();
    publish_cache_size();
  }

  // Past the limit, the sagas used longest ago leave, down to 7/8 of it, so that this runs once
  // per many evictions.
  void evict_least_recently_used() {
    const std::size_t limit = options.max_cached_sagas;
    if (cache.size() <= limit) return;
    const std::size_t keep = limit - limit / 8;
    std::vector<std::pair<std::uint64_t, const std::string*>> by_use;
    by_use.reserve(cache.size());
    for (const auto& [saga_id, saga] : cache) by_use.emplace_back(saga.last_used_turn, &saga_id);
    const std::size_t evicted = cache.size() - keep;
    std::nth_element(by_use.begin(), by_use.begin() + static_cast<std::ptrdiff_t>(evicted),
                     by_use.end());
    std::vector<std::string> ids;
    ids.reserve(evicted);
    for (std::size_t i = 0; i < evicted; ++i) ids.push_back(*by_use[i].second);
    for (const auto& saga_id : ids) cache.erase(saga_id);
    counters.sagas_evicted.fetch_add(evicted, std::memory_order_relaxed);
    if (metrics) metrics->cache_evictions.inc(static_cast<double>(evicted));
  }

  void publish_cache_size() {
    counters.cached_sagas.store(cache.size(), std::memory_order_relaxed);
    if (metrics) metrics->cached_sagas.set(static_cast<double>(cache.size()));
  }

  void notify(const Turn& turn) {
    apply_after_commit(turn);
    for (const auto& outcome : turn.outcomes) {
      auto& counter = outcome.status == SagaStatus::Completed     ? counters.sagas_completed
                      : outcome.status == SagaStatus::Compensated ? counters.sagas_compensated
                                                                  : counters.sagas_failed;
      counter.fetch_add(1, std::memory_order_relaxed);
      for (const auto& callback : outcome_callbacks) invoke_callback(callback, outcome);
    }
    for (const auto& letter : turn.batch.dead_letters)
      for (const auto& callback : dead_letter_callbacks) invoke_callback(callback, letter);
  }

  template <class Callback, class Value>
  void invoke_callback(const Callback& callback, const Value& value) {
    try {
      callback(value);
    } catch (...) {
      counters.callback_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // The commit that would have taken a poisoned input out failed: it is kept with the turn's
  // other inputs, and the retry waits like any failed turn's.
  void fail_quarantine(const StoreError& error, Input poisoned) {
    std::vector<Input> inputs = std::exchange(retry_inputs, {});
    inputs.push_back(std::move(poisoned));
    fail_turn(error, std::move(inputs));
  }

  void fail_turn(const StoreError& error, std::vector<Input> inputs) {
    counters.commit_failures.fetch_add(1, std::memory_order_relaxed);
    if (metrics) metrics->commit_failures.with({to_string(error.code)}).inc();
    retry_inputs = std::move(inputs);
    backoff = backoff.count() == 0 ? options.commit_backoff
                                   : std::min(backoff * 2, options.max_commit_backoff);
    if (logs(LogLevel::error))
      logger->write(
          LogRecord(LogLevel::error, "store transaction failed; the turn is retried", clock.now())
              .with("code", to_string(error.code))
              .with("error", error.message)
              .with("inputs", retry_inputs.size())
              .with("retryInMs", backoff.count()));
  }

  // One loop turn, then the lag gauges and alerts.
  std::size_t turn() {
    std::size_t committed = run_once();
    observe_lag();
    return committed;
  }

  bool has_unfinished_work() {
    std::lock_guard lock(starts_mutex);
    return !queued_starts.empty() || !retry_inputs.empty() || !dispatched_marks.empty() ||
           !held_turns.empty();
  }

  bool has_queued_starts() {
    std::lock_guard lock(starts_mutex);
    return !queued_starts.empty();
  }

  // After stop(): turns until the accepted starts (and queued operator actions), a failed turn's
  // inputs and the re-send marks are committed. Accepted starts are drained however many turns
  // they take (no new ones are accepted, so that ends); after the last, the rest gets
  // kMaxDrainTurns turns, as replies still arriving keep producing marks. A store that keeps
  // failing ends the drain after kMaxDrainTurns failed turns in a row; what is left is logged.
  void drain() {
    int turns_after_starts = 0, failed_in_a_row = 0;
    while (has_unfinished_work() && failed_in_a_row < kMaxDrainTurns &&
           (turns_after_starts < kMaxDrainTurns || !retry_inputs.empty())) {
      sync_and_hand_out();  // the drain takes no new input: nothing is gained by not waiting
      const bool starts_left = has_queued_starts();
      const auto failures = counters.commit_failures.load(std::memory_order_relaxed);
      turn();
      turns_after_starts = starts_left ? 0 : turns_after_starts + 1;
      const bool failed = counters.commit_failures.load(std::memory_order_relaxed) != failures;
      failed_in_a_row = failed ? failed_in_a_row + 1 : 0;
    }
    sync_and_hand_out();
    if (!has_unfinished_work() || !logs(LogLevel::error)) return;
    std::lock_guard lock(starts_mutex);
    std::string sagas;
    for (const auto* inputs : {&retry_inputs, &queued_starts})
      for (const Input& input : *inputs)
        if (input.start) sagas += (sagas.empty() ? "" : ",") + input.start->saga_id;
    logger->write(LogRecord(LogLevel::error, "engine stopped with work not committed", clock.now())
                      .with("queuedInputs", queued_starts.size())
                      .with("failedTurnInputs", retry_inputs.size())
                      .with("dispatchMarks", dispatched_marks.size())
                      .with("turnsNotDurable", held_turns.size())
                      .with("sagasNotStarted", sagas));
  }
};

Engine::Engine(Options options, Store& store, Transport& transport, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), store, transport, clock)) {
  if (impl_->options.max_cached_sagas == 0)
    throw std::invalid_argument("Options::max_cached_sagas must be at least 1");
  if (impl_->options.max_queued_commands == 0)
    throw std::invalid_argument("Options::max_queued_commands must be at least 1");
}

Engine::~Engine() = default;

void Engine::register_saga(std::unique_ptr<SagaType> type) {
  if (!type) throw std::invalid_argument("register_saga: null saga type");
  auto key = std::pair<std::string, int>(std::string(type->name()), type->version());
  const SagaType* raw = type.get();
  if (!impl_->types.emplace(key, std::move(type)).second)
    throw std::logic_error("saga '" + key.first + "' version " + std::to_string(key.second) +
                           " is already registered");
  auto& latest = impl_->latest[key.first];
  if (!latest || latest->version() < raw->version()) latest = raw;
}

void Engine::register_upcaster(std::string_view message_type, int from_version, Upcaster upcaster) {
  impl_->upcasters.add(message_type, from_version, std::move(upcaster));
}

std::string Engine::start(std::string_view saga_type, nlohmann::json data,
                          std::string_view correlation_id) {
  auto found = impl_->latest.find(std::string(saga_type));
  if (found == impl_->latest.end())
    throw std::invalid_argument("start: saga type '" + std::string(saga_type) +
                                "' is not registered");
  auto request = std::make_shared<StartRequest>();
  request->saga_id = impl_->next_id();
  request->correlation_id = correlation_id.empty() ? request->saga_id : std::string(correlation_id);
  request->type = found->second;
  try {
    request->instance = found->second->create(data);
  } catch (const std::exception& error) {
    throw std::invalid_argument("start: data for saga '" + std::string(saga_type) +
                                "' does not convert: " + error.what());
  }
  try {
    request->data_text = detail::json_text(data);
  } catch (const std::exception& error) {
    throw std::invalid_argument("start: data for saga '" + std::string(saga_type) +
                                "' cannot be serialized: " + error.what());
  }
  // The start keeps only the text: data that would read back different is refused here.
  if (lost_in_text(data))
    throw std::invalid_argument("start: data for saga '" + std::string(saga_type) +
                                "' holds a number that is not finite or binary data, which JSON "
                                "text cannot carry");
  std::string id = request->saga_id;
  bool first_queued = false;
  {
    std::lock_guard lock(impl_->starts_mutex);
    if (impl_->stopping.load()) throw std::logic_error("start: the engine is stopping");
    first_queued = impl_->queued_starts.empty();
    impl_->queued_starts.push_back(Input{std::move(request), {}});
  }
  // The loop takes the queued starts first in every turn and waits for input only after finding
  // none, so only a start that finds the queue empty has to wake it.
  if (first_queued) impl_->transport.wake();
  return id;
}

std::future<OperatorResult> Engine::retry(std::string saga_id) {
  auto request = std::make_shared<OperatorRequest>();
  request->kind = OperatorRequest::Kind::retry;
  request->saga_id = std::move(saga_id);
  return impl_->queue_operation(std::move(request));
}

std::future<OperatorResult> Engine::resolve(std::string saga_id, SagaStatus status,
                                            std::string note) {
  auto request = std::make_shared<OperatorRequest>();
  request->kind = OperatorRequest::Kind::resolve;
  request->saga_id = std::move(saga_id);
  request->status = status;
  request->note = std::move(note);
  return impl_->queue_operation(std::move(request));
}

std::future<OperatorResult> Engine::replay_dead_letter(std::int64_t dead_letter_id) {
  auto request = std::make_shared<OperatorRequest>();
  request->kind = OperatorRequest::Kind::replay;
  request->dead_letter_id = dead_letter_id;
  return impl_->queue_operation(std::move(request));
}

std::future<OperatorResult> Engine::discard_dead_letter(std::int64_t dead_letter_id) {
  auto request = std::make_shared<OperatorRequest>();
  request->kind = OperatorRequest::Kind::discard;
  request->dead_letter_id = dead_letter_id;
  return impl_->queue_operation(std::move(request));
}

void Engine::on_outcome(std::function<void(const SagaOutcome&)> callback) {
  impl_->outcome_callbacks.push_back(std::move(callback));
}

void Engine::on_dead_letter(std::function<void(const DeadLetter&)> callback) {
  impl_->dead_letter_callbacks.push_back(std::move(callback));
}

std::size_t Engine::run_once() {
  const std::size_t committed = impl_->turn();
  impl_->sync_and_hand_out();
  return committed;
}

void Engine::run() {
  while (!impl_->stopping.load()) impl_->turn();
  impl_->drain();
}

void Engine::stop() {
  {
    std::lock_guard lock(impl_->starts_mutex);
    impl_->stopping.store(true);
  }
  impl_->transport.wake();
}

EngineStats Engine::stats() const {
  const Counters& c = impl_->counters;
  auto get = [](const std::atomic<std::uint64_t>& value) {
    return value.load(std::memory_order_relaxed);
  };
  return {get(c.sagas_started),     get(c.messages_received),  get(c.messages_applied),
          get(c.duplicates),        get(c.dead_letters),       get(c.commits),
          get(c.commit_failures),   get(c.commands_sent),      get(c.send_retries),
          get(c.command_resends),   get(c.command_timeouts),   get(c.sagas_completed),
          get(c.sagas_compensated), get(c.sagas_failed),       get(c.callback_errors),
          get(c.cached_sagas),      get(c.sagas_evicted),      get(c.sagas_loaded),
          get(c.queued_commands),   get(c.backlogged_commands)};
}

}  // namespace saga
