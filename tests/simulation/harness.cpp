#include "harness.hpp"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>

#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/envelope.hpp"
#include "saga/sqlite_store.hpp"

namespace saga::simulation {
namespace {

using Millis = std::chrono::milliseconds;

struct SimulatedCrash {};

std::string uuid_from(std::mt19937_64& random) {
  static const char* hex = "0123456789abcdef";
  std::string id;
  std::uint64_t high = random(), low = random();
  for (int i = 0; i < 32; ++i) {
    std::uint64_t word = i < 16 ? high : low;
    int nibble = static_cast<int>((word >> ((15 - i % 16) * 4)) & 0xf);
    if (i == 12) nibble = 4;
    if (i == 16) nibble = 8 | (nibble & 3);
    id.push_back(hex[nibble]);
    if (i == 7 || i == 11 || i == 15 || i == 19) id.push_back('-');
  }
  return id;
}

struct Packet {
  bool to_orchestrator = false;
  std::string destination;
  std::string bytes;
};

// The network: packets ordered by delivery time, then by a sequence number.
class Network {
 public:
  Network(std::mt19937_64& random, const Config& config, const ManualClock& clock)
      : random_(random), config_(config), clock_(clock) {}

  bool faults() const { return elapsed() < Millis{config_.fault_window_ms}; }
  Millis elapsed() const { return std::chrono::duration_cast<Millis>(clock_.now() - start_); }

  void post(Packet packet) {
    int copies = 1;
    if (faults()) {
      if (chance(config_.drop)) return;
      if (chance(config_.duplicate)) copies = 2;
    }
    for (int i = 0; i < copies; ++i) {
      Millis delay{faults() ? std::uniform_int_distribution<int>(0, config_.max_delay_ms)(random_)
                            : 1};
      packets_.emplace(std::pair{clock_.now() + delay, sequence_++}, packet);
    }
  }

  // The next due packet for the given direction.
  std::optional<Packet> take(bool to_orchestrator) {
    for (auto it = packets_.begin(); it != packets_.end() && it->first.first <= clock_.now();
         ++it) {
      if (it->second.to_orchestrator != to_orchestrator) continue;
      Packet packet = std::move(it->second);
      packets_.erase(it);
      return packet;
    }
    return std::nullopt;
  }

  // A crashed orchestrator loses what sat in its socket buffers: some of the due packets.
  void lose_some_due_to_orchestrator() {
    for (auto it = packets_.begin(); it != packets_.end() && it->first.first <= clock_.now();) {
      if (it->second.to_orchestrator && chance(0.5))
        it = packets_.erase(it);
      else
        ++it;
    }
  }

  bool empty() const { return packets_.empty(); }
  std::optional<Timestamp> next_due() const {
    if (packets_.empty()) return std::nullopt;
    return packets_.begin()->first.first;
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(random_); }

 private:
  std::mt19937_64& random_;
  const Config& config_;
  const ManualClock& clock_;
  Timestamp start_ = clock_.now();
  std::uint64_t sequence_ = 0;
  std::map<std::pair<Timestamp, std::uint64_t>, Packet> packets_;
};

class SimulatedTransport final : public Transport {
 public:
  SimulatedTransport(Network& network, const Config& config) : network_(network), config_(config) {}

  // A participant that is away refuses a send (the engine queues it, then leaves later ones in
  // the outbox): drawn only when `refusals` is set, so other seeds keep their scenario.
  bool refusals = false;

  SendResult send(std::string_view destination, std::string_view bytes) override {
    if (refusals && network_.faults() && network_.chance(0.2)) return SendResult::unroutable;
    bool crash = network_.faults() && network_.chance(config_.crash_while_sending);
    if (crash && network_.chance(0.5)) throw SimulatedCrash{};  // committed, not sent
    network_.post({false, std::string(destination), std::string(bytes)});
    if (crash) throw SimulatedCrash{};  // sent; the store does not know
    return SendResult::sent;
  }
  std::optional<InboundMessage> receive(std::chrono::milliseconds) override {
    auto packet = network_.take(true);
    if (!packet) return std::nullopt;
    return InboundMessage{std::move(packet->bytes), "simulated"};
  }
  void wake() override {}

 private:
  Network& network_;
  const Config& config_;
};

// The three participant services in one: idempotent by command eventId, with a ledger of
// effects per order.
class Participants {
 public:
  Participants(std::mt19937_64& random, Network& network, const Config& config,
               const ManualClock& clock)
      : random_(random), network_(network), config_(config), clock_(clock) {}

  void handle(const Packet& packet, std::vector<std::string>& violations) {
    auto decoded = decode_envelope(packet.bytes);
    if (!std::holds_alternative<Envelope>(decoded)) {
      violations.push_back("the engine sent an invalid envelope");
      return;
    }
    const Envelope& command = std::get<Envelope>(decoded);
    if (auto seen = replies_.find(command.event_id); seen != replies_.end()) {
      if (seen->second.empty()) {  // compensated before it arrived: never done, never answered
        ++compensated_first_;
        return;
      }
      network_.post({true, "", seen->second});
      return;
    }
    // A compensation naming the step it undoes: that step, should it come later, is not done.
    if (!command.compensates.empty()) replies_.emplace(command.compensates, "");
    std::string order_id = command.data.value("order_id", "");
    auto& ledger = effects_[order_id];
    std::string type;
    nlohmann::json data;
    const std::string& kind = command.event_type;
    if (kind == inventory::Reserve::type) {
      if (network_.chance(0.1)) {
        type = inventory::OutOfStock::type;
        data = inventory::OutOfStock{"sku", "none"};
      } else {
        ++ledger["reserve"];
        type = inventory::Reserved::type;
        data = inventory::Reserved{"res-" + order_id};
      }
    } else if (kind == inventory::Release::type) {
      // A compensation of a step given up on may find nothing to undo.
      if (ledger["reserve"] > ledger["release"])
        ++ledger["release"];
      else if (command.compensates.empty())
        violations.push_back(order_id + ": release of a reservation that never happened");
      type = inventory::Released::type;
      data = inventory::Released{"res-" + order_id};
    } else if (kind == payment::Charge::type) {
      if (network_.chance(0.1)) {
        type = payment::Declined::type;
        data = payment::Declined{"declined"};
      } else {
        ++ledger["charge"];
        type = payment::Charged::type;
        data = payment::Charged{"pay-" + order_id};
      }
    } else if (kind == payment::Refund::type) {
      if (ledger["charge"] > ledger["refund"])
        ++ledger["refund"];
      else if (command.compensates.empty())
        violations.push_back(order_id + ": refund of a charge that never happened");
      type = payment::Refunded::type;
      data = payment::Refunded{"pay-" + order_id};
    } else if (kind == shipping::Ship::type) {
      if (network_.chance(0.05)) {
        type = shipping::Undeliverable::type;
        data = shipping::Undeliverable{"lost"};
      } else {
        ++ledger["ship"];
        type = shipping::Shipped::type;
        data = shipping::Shipped{"track-" + order_id};
      }
    } else {
      violations.push_back("unknown command " + kind);
      return;
    }
    Envelope reply;
    reply.event_id = uuid_from(random_);
    reply.event_type = type;
    reply.timestamp = clock_.now();
    reply.source = packet.destination;
    reply.correlation_id = command.correlation_id;
    reply.causation_id = command.event_id;
    reply.kind = MessageKind::reply;
    reply.data = std::move(data);
    std::string bytes = encode_envelope(reply);
    replies_[command.event_id] = bytes;  // committed with the effect
    if (network_.faults() && network_.chance(config_.participant_reply_loss)) return;  // died
    network_.post({true, "", bytes});
  }

  const std::map<std::string, std::map<std::string, int>>& effects() const { return effects_; }
  int compensated_first() const { return compensated_first_; }

 private:
  std::mt19937_64& random_;
  Network& network_;
  const Config& config_;
  const ManualClock& clock_;
  std::map<std::string, std::string> replies_;
  std::map<std::string, std::map<std::string, int>> effects_;
  int compensated_first_ = 0;
};

}  // namespace

Result run(const Config& config) {
  Result result;
  result.seed = config.seed;
  std::mt19937_64 random(config.seed);
  ManualClock clock;
  Network network(random, config, clock);
  SimulatedTransport transport(network, config);
  Participants participants(random, network, config, clock);
  std::mt19937_64 ids(config.seed ^ 0x9e3779b97f4a7c15ULL);

  Options options;
  options.store.path = config.directory + "/saga-sim-" + std::to_string(::getpid()) + "-" +
                       std::to_string(config.seed) + ".db";
  options.store.durability = Durability::off;
  // Stores are reopened at every simulated crash; a checkpoint thread per open only costs time.
  options.store.background_checkpoint = false;
  options.idle_wait = Millis{0};
  options.command_retry = {Millis{1000}, 2.0, Millis{4000}, 0.2, 0};  // never give up: see
  options.compensation_retry = options.command_retry;                 // docs/reliability.md
  options.command_retry.max_attempts = config.step_attempts;
  options.random_seed = config.seed;
  options.publish_events = false;
  const std::size_t batches[] = {1, 4, 64};
  options.max_batch_messages = batches[random() % 3];
  // A small saga cache makes the engine read sagas back from the store all the time; chosen
  // from the seed without drawing from `random`, so each seed keeps its scenario.
  const std::size_t cache_sizes[] = {Options{}.max_cached_sagas, 1, 16};
  options.max_cached_sagas = cache_sizes[(config.seed / 2) % 3];
  // A send queue of one or three commands, with sends refused while faults last, makes the engine
  // leave commands in the outbox and read them back; also from the seed.
  const std::size_t queue_limits[] = {Options{}.max_queued_commands, 1, 3};
  options.max_queued_commands = queue_limits[(config.seed / 6) % 3];
  transport.refusals = options.max_queued_commands < 10;
  options.id_generator = [&ids] { return uuid_from(ids); };
  auto remove_files = [&] {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"})
      std::remove((options.store.path + suffix).c_str());
  };
  remove_files();

  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<Engine> engine;
  auto open = [&] {
    auto opened = SqliteStore::open(options.store);
    if (!opened) throw std::runtime_error("simulation: " + opened.error().message);
    store = std::move(opened).value();
    engine = std::make_unique<Engine>(options, *store, transport, clock);
    engine->register_saga<order::OrderSaga>();
  };
  auto crash = [&] {
    engine.reset();
    store.reset();
    network.lose_some_due_to_orchestrator();
    ++result.engine_crashes;
  };

  std::vector<Timestamp> start_times;
  for (int i = 0; i < config.sagas; ++i)
    start_times.push_back(clock.now() +
                          Millis{std::uniform_int_distribution<int>(0, 5000)(random)});
  std::sort(start_times.begin(), start_times.end());
  std::size_t started = 0;
  const Timestamp horizon = clock.now() + Millis{config.horizon_ms};

  auto unfinished = [&] {
    std::size_t count = 0;
    for (auto status : {SagaStatus::Running, SagaStatus::Compensating})
      count += store->sagas_with_status(status, 1'000'000).value().size();
    return count;
  };

  while (clock.now() < horizon) {
    ++result.steps;
    if (!engine) open();
    while (started < start_times.size() && start_times[started] <= clock.now()) {
      order::OrderData data{"order-" + std::to_string(started),
                            "customer",
                            "1 Main St",
                            {{"sku", 1, 1000 + static_cast<std::int64_t>(started)}}};
      engine->start<order::OrderSaga>(data);
      ++started;
    }
    if (network.faults() && network.chance(config.engine_crash)) {
      crash();
      continue;
    }
    try {
      engine->run_once();
    } catch (const SimulatedCrash&) {
      crash();
      continue;
    }
    result.backlogged =
        std::max(result.backlogged, static_cast<int>(engine->stats().backlogged_commands));
    while (auto packet = network.take(false)) participants.handle(*packet, result.violations);

    // The operator: once the faults stop, a saga parked on a pivot given up on is retried.
    if (!network.faults() && config.step_attempts > 0 && result.steps % 16 == 0)
      for (const auto& parked : store->sagas_with_status(SagaStatus::Failed, 1'000'000).value())
        (void)engine->retry(parked.id);
    if (!network.faults() && started == start_times.size() && network.empty() &&
        result.steps % 16 == 0 && unfinished() == 0 &&
        store->sagas_with_status(SagaStatus::Failed, 1).value().empty())
      break;
    Millis step{network.faults() ? std::uniform_int_distribution<int>(1, 60)(random) : 50};
    if (auto due = network.next_due(); !due && !network.faults()) step = Millis{250};
    clock.advance(step);
  }
  if (!engine) open();
  engine->run_once();  // commit pending re-send marks

  // Invariants, read from the store and the participants' ledgers.
  std::vector<SagaRecord> all;
  for (auto status : {SagaStatus::Running, SagaStatus::Compensating, SagaStatus::Completed,
                      SagaStatus::Compensated, SagaStatus::Failed}) {
    for (auto& record : store->sagas_with_status(status, 1'000'000).value())
      all.push_back(std::move(record));
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  result.sagas = static_cast<int>(all.size());
  for (const auto& record : all) {
    auto data = nlohmann::json::parse(record.data);
    std::string order_id = data.value("order_id", "");
    auto found = participants.effects().find(order_id);
    std::map<std::string, int> none;
    const auto& effect = found == participants.effects().end() ? none : found->second;
    auto count = [&](const char* kind) {
      auto it = effect.find(kind);
      return it == effect.end() ? 0 : it->second;
    };
    for (const char* kind : {"reserve", "release", "charge", "refund", "ship"})
      if (count(kind) > 1)
        result.violations.push_back(order_id + ": " + kind + " applied " +
                                    std::to_string(count(kind)) + " times");
    if (record.status == SagaStatus::Completed) {
      ++result.completed;
      if (count("reserve") != 1 || count("charge") != 1 || count("ship") != 1 ||
          count("release") != 0 || count("refund") != 0)
        result.violations.push_back(order_id +
                                    ": completed without exactly one reserve, charge "
                                    "and shipment, or with a compensation");
    } else if (record.status == SagaStatus::Compensated) {
      ++result.compensated;
      if (count("reserve") != count("release") || count("charge") != count("refund") ||
          count("ship") != 0)
        result.violations.push_back(order_id + ": compensated but not fully undone");
    } else {
      result.violations.push_back(order_id + " (saga " + record.id + ") ended " +
                                  std::string(to_string(record.status)) + " in state " +
                                  record.state);
    }
    for (const auto& entry : store->journal(record.id).value()) {
      if (entry.kind == JournalKind::timed_out) ++result.given_up;
      result.journal += record.id + "|" + std::string(to_string(entry.kind)) + "|" +
                        entry.message_id + "|" + entry.message_type + "|" + entry.from_state + "|" +
                        entry.to_state + "|" + entry.detail + "|" +
                        std::to_string(entry.at.time_since_epoch().count()) + "\n";
    }
  }
  if (!store->integrity_ok().value()) result.violations.push_back("integrity_check failed");
  result.compensated_first = participants.compensated_first();
  engine.reset();
  store.reset();
  remove_files();
  return result;
}

}  // namespace saga::simulation
