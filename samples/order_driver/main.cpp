// Places N orders with the order orchestrator, waits for every saga to end, prints a summary and
// checks the business invariants against the participant services' own ledgers (their SQLite
// files), not against the orchestrator's view. Exits 1 if an invariant fails or a saga did not
// end, 2 for bad flags.
//
// Two ways to see sagas end: --track status (the default) polls the status of every saga in
// flight every 20 ms; --track outcomes reads the orchestrator's outcome log, which has the exact
// time each saga ended, and adds load shapes for benchmarks: open-loop --rate (latency counted
// from each order's scheduled time, so a slow system cannot hide its queueing), a closed-loop
// --window of sagas in flight, a --duration instead of a count, and a --json summary.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>

#include "ledger_check.hpp"
#include "order/messages.hpp"
#include "order/order_saga.hpp"

namespace {

using Clock = std::chrono::steady_clock;

class Intake {
 public:
  explicit Intake(const std::string& endpoint) : socket_(context_, zmq::socket_type::req) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 10000);
    socket_.connect(endpoint);
  }
  nlohmann::json call(const nlohmann::json& request) { return call_text(request.dump()); }
  // The reply to an accepted request; throws for a refused one.
  nlohmann::json call_text(std::string_view request) {
    auto json = answer_to(request);
    if (!json.value("ok", false)) throw std::runtime_error(json.value("error", "request refused"));
    return json;
  }
  // The reply, accepted or refused.
  nlohmann::json answer_to(std::string_view request) {
    socket_.send(zmq::buffer(request), zmq::send_flags::none);
    zmq::message_t reply;
    if (!socket_.recv(reply)) throw std::runtime_error("the orchestrator did not answer in 10 s");
    const std::string_view text = reply.to_string_view();  // no copy of a large reply
    return nlohmann::json::parse(text.begin(), text.end());
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(p * static_cast<double>(values.size() - 1))];
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Load {
  int orders = 0;         // ignored when duration_s > 0
  double rate = 0;        // orders/s, open loop; 0 = as fast as the window allows
  int window = 0;         // sagas in flight at most; 0 = no limit
  double duration_s = 0;  // place orders for this long; 0 = place `orders`
  int timeout_s = 120;
  int first_order = 0;
};

struct Tracked {
  double placing_s = 0;  // how long orders were placed
  std::size_t ended_while_placing = 0;
};

// --track outcomes: places orders with start_many and reads the orchestrator's outcome log. A
// saga's latency runs from its scheduled time (--rate) or the moment its request was sent, to
// the time the orchestrator reported its outcome.
Tracked run_tracked(Intake& intake, const Load& load, std::mt19937_64& random,
                    std::map<std::string, order::OrderData>& placed,
                    std::map<std::string, std::string>& ended, std::vector<double>& latencies_ms,
                    const std::function<void(bool)>& progress) {
  constexpr std::size_t kMaxPerRequest = 256;
  std::uint64_t cursor = intake.call({{"op", "outcomes"}, {"after", 0}})["next"];
  std::unordered_map<std::string, std::int64_t> started_us;  // in flight
  const auto begin = Clock::now();
  const std::int64_t begin_us = now_us();
  const bool timed = load.duration_s > 0;
  const auto placing_deadline =
      begin + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(timed ? load.duration_s : 1e9));
  std::int64_t placing_end_us = std::numeric_limits<std::int64_t>::max();
  Clock::time_point give_up = Clock::time_point::max();
  Tracked result;
  std::int64_t n = 0;

  auto read_outcomes = [&] {
    auto reply = intake.call({{"op", "outcomes"}, {"after", cursor}});
    cursor = reply["next"];
    std::size_t seen = 0;
    for (const auto& entry : reply["outcomes"]) {
      auto found = started_us.find(entry[0].get<std::string>());
      if (found == started_us.end()) continue;  // another client's saga
      const std::int64_t ended_at = entry[2].get<std::int64_t>();
      ended[found->first] = entry[1].get<std::string>();
      latencies_ms.push_back(static_cast<double>(ended_at - found->second) / 1000.0);
      if (ended_at <= placing_end_us) ++result.ended_while_placing;
      started_us.erase(found);
      ++seen;
    }
    return seen;
  };

  std::vector<order::OrderData> orders;  // of the request being placed
  std::vector<std::int64_t> at;          // their scheduled (or sent) times
  std::string request;
  constexpr auto kPollEvery = std::chrono::milliseconds{5};
  auto next_poll = begin;
  for (;;) {
    auto now = Clock::now();
    const bool placing = timed ? now < placing_deadline : n < load.orders;
    if (!placing && placing_end_us == std::numeric_limits<std::int64_t>::max()) {
      result.placing_s = std::chrono::duration<double>(now - begin).count();
      placing_end_us = now_us();
      give_up = now + std::chrono::seconds{load.timeout_s};
    }
    if (!placing && (started_us.empty() || now >= give_up)) break;
    std::int64_t want = 0;
    if (placing) {
      const auto in_flight = static_cast<std::int64_t>(started_us.size());
      want = load.rate > 0 ? static_cast<std::int64_t>(
                                 std::chrono::duration<double>(now - begin).count() * load.rate) +
                                 1 - n
                           : std::numeric_limits<std::int64_t>::max();
      if (load.window > 0) want = std::min(want, load.window - in_flight);
      if (!timed) want = std::min<std::int64_t>(want, load.orders - n);
      want = std::clamp<std::int64_t>(want, 0, kMaxPerRequest);
    }
    if (want > 0) {
      // The request is written as text into buffers kept across requests: at hundreds of orders
      // per request, a JSON array and vectors grown afresh each time make the allocator
      // consolidate on every large step, a tenth of this process's CPU.
      orders.clear();
      at.clear();
      request = R"({"op":"start_many","orders":[)";
      const std::int64_t sent_us = now_us();
      for (std::int64_t i = 0; i < want; ++i, ++n) {
        orders.push_back(order_check::random_order(load.first_order + static_cast<int>(n), random));
        if (i > 0) request += ',';
        request += nlohmann::json(orders.back()).dump();
        at.push_back(load.rate > 0 ? begin_us + static_cast<std::int64_t>(static_cast<double>(n) *
                                                                          1e6 / load.rate)
                                   : sent_us);
      }
      request += "]}";
      auto reply = intake.call_text(request);
      const auto& ids = reply["sagaIds"];
      for (std::size_t i = 0; i < ids.size(); ++i) {
        std::string id = ids[i];
        placed[id] = std::move(orders[i]);
        started_us[id] = at[i];
      }
      now = Clock::now();
    }
    if (now >= next_poll) {
      read_outcomes();
      progress(false);
      next_poll = now + kPollEvery;
    }
    if (want > 0) continue;
    auto wake = next_poll;
    if (placing && load.rate > 0)
      wake = std::min(
          wake, begin + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(static_cast<double>(n) / load.rate)));
    std::this_thread::sleep_until(wake);
  }
  if (result.placing_s <= 0)
    result.placing_s = std::chrono::duration<double>(Clock::now() - begin).count();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Places orders with the order orchestrator and checks the services' ledgers."};
  std::string intake_endpoint = "tcp://127.0.0.1:5557";
  int orders = 1000;
  std::uint64_t seed = 42;
  double rate = 0;
  int timeout_s = 120;
  std::string inventory_db = "inventory.db", payment_db = "payment.db", shipping_db = "shipping.db";
  app.add_option("--intake", intake_endpoint, "The orchestrator's intake endpoint")
      ->capture_default_str();
  app.add_option("--orders", orders, "Orders to place")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed for the orders")->capture_default_str();
  app.add_option("--rate", rate, "Orders per second (0 = as fast as possible)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--timeout", timeout_s, "Seconds to wait for every saga to end")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--inventory-db", inventory_db, "Inventory service ledger")->capture_default_str();
  app.add_option("--payment-db", payment_db, "Payment service ledger")->capture_default_str();
  app.add_option("--shipping-db", shipping_db, "Shipping service ledger")->capture_default_str();
  std::string track = "status";
  int window = 0;
  double duration_s = 0;
  std::string json_path;
  bool skip_invariants = false;
  int first_order = 0;
  app.add_option("--track", track,
                 "How sagas are seen to end: 'status' polls every 20 ms; 'outcomes' reads the "
                 "orchestrator's outcome log (exact end times; needed by --window, --duration)")
      ->check(CLI::IsMember({"status", "outcomes"}))
      ->capture_default_str();
  app.add_option("--window", window, "At most this many sagas in flight (0 = no limit)")
      ->check(CLI::Range(0, 10000000))
      ->capture_default_str();
  app.add_option("--duration", duration_s,
                 "Place orders for this many seconds instead of --orders (0 = use --orders)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the summary to this file as JSON");
  std::string raw_request;
  app.add_option("--request", raw_request,
                 "Send this one JSON request to the intake instead, print the reply; exit 0 if "
                 "it is ok, 1 if refused, 2 without an answer (samples/README.md lists them)");
  app.add_flag("--skip-invariants", skip_invariants, "Do not check the services' ledgers");
  app.add_option("--first-order", first_order,
                 "Number of the first order (order-N); runs against the same services need "
                 "distinct numbers")
      ->check(CLI::Range(0, 1000000000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const bool tracked = track == "outcomes";
  if (!tracked && (window > 0 || duration_s > 0)) {
    std::cerr << "order_driver: --window and --duration need --track outcomes\n";
    return 2;
  }

  Intake intake(intake_endpoint);
  if (!raw_request.empty()) {
    try {
      const nlohmann::json reply = intake.answer_to(raw_request);
      std::cout << reply.dump() << "\n";
      return reply.is_object() && reply.value("ok", false) ? 0 : 1;
    } catch (const std::exception& error) {  // no answer, or not JSON
      std::cerr << "order_driver: " << error.what() << "\n";
      return 2;
    }
  }
  std::mt19937_64 random(seed);
  std::map<std::string, order::OrderData> placed;  // saga id -> order
  std::map<std::string, Clock::time_point> started;
  std::map<std::string, std::string> ended;  // saga id -> status
  std::vector<double> latencies_ms;
  auto begin = Clock::now();
  if (duration_s > 0)
    std::cout << "Placing orders for " << duration_s << " s with " << intake_endpoint << "\n";
  else
    std::cout << "Placing " << orders << " orders with " << intake_endpoint << "\n";
  auto poll = [&] {
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& [id, at] : started)
      if (!ended.contains(id)) ids.push_back(id);
    for (std::size_t from = 0; from < ids.size(); from += 1000) {
      nlohmann::json chunk(
          ids.begin() + static_cast<std::ptrdiff_t>(from),
          ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), from + 1000)));
      auto reply = intake.call({{"op", "status"}, {"sagaIds", chunk}});
      for (auto& [id, status] : reply["statuses"].items()) {
        std::string text = status.get<std::string>();
        if (text == "Running" || text == "Compensating") continue;
        ended[id] = text;
        latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - started[id]).count());
      }
    }
  };
  auto last_progress = Clock::now();
  auto progress = [&](bool force) {
    if (!force && Clock::now() - last_progress < std::chrono::milliseconds{500}) return;
    last_progress = Clock::now();
    std::cout << "  placed " << placed.size();
    if (duration_s <= 0) std::cout << " / " << orders;
    std::cout << ", ended " << ended.size() << "\n" << std::flush;
  };
  Tracked tracked_result;
  try {
    if (tracked) {
      tracked_result =
          run_tracked(intake, {orders, rate, window, duration_s, timeout_s, first_order}, random,
                      placed, ended, latencies_ms, progress);
    }
    for (int n = 0; !tracked && n < orders; ++n) {
      if (rate > 0) {
        auto due = begin + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(n / rate));
        while (Clock::now() < due) {
          poll();
          progress(false);
          std::this_thread::sleep_until(
              std::min(due, Clock::now() + std::chrono::milliseconds{20}));
        }
      }
      auto data = order_check::random_order(first_order + n, random);
      auto reply = intake.call({{"op", "start"}, {"order", data}});
      std::string id = reply["sagaId"];
      placed[id] = data;
      started[id] = Clock::now();
      progress(false);
    }
    auto deadline = Clock::now() + std::chrono::seconds{timeout_s};
    while (!tracked && ended.size() < placed.size() && Clock::now() < deadline) {
      poll();
      progress(false);
      if (ended.size() < placed.size()) std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  } catch (const std::exception& error) {
    std::cerr << "order_driver: " << error.what() << "\n";
    return 1;
  }
  progress(true);
  double seconds = std::chrono::duration<double>(Clock::now() - begin).count();

  std::map<std::string, int> by_status;
  std::vector<order_check::PlacedOrder> checked;
  for (const auto& [id, data] : placed) {
    auto status = ended.find(id);
    checked.push_back({id, data, status == ended.end() ? "" : status->second});
    if (status != ended.end()) by_status[status->second]++;
  }
  const std::string not_ended = "did not end within " + std::to_string(timeout_s) + " s";
  std::vector<std::string> violations;
  if (skip_invariants) {
    for (const auto& order : checked)
      if (order.status.empty()) violations.push_back(order.data.order_id + " " + not_ended);
  } else {
    violations =
        order_check::check_ledgers(checked, {inventory_db, payment_db, shipping_db}, not_ended);
  }

  const double throughput =
      tracked ? static_cast<double>(tracked_result.ended_while_placing) / tracked_result.placing_s
              : static_cast<double>(placed.size()) / seconds;
  std::cout << std::fixed << std::setprecision(1) << "Completed   " << by_status["Completed"]
            << "\nCompensated " << by_status["Compensated"]
            << "  (stock-outs, declined payments, undeliverable addresses)\nFailed      "
            << by_status["Failed"] << "\nThroughput  " << throughput;
  if (tracked)
    std::cout << " sagas/s (ended while placing orders, over " << tracked_result.placing_s
              << " s)\nLatency     p50 " << percentile(latencies_ms, 0.50) << " ms, p99 "
              << percentile(latencies_ms, 0.99) << " ms, p99.9 " << percentile(latencies_ms, 0.999)
              << " ms (from " << (rate > 0 ? "scheduled start" : "start request")
              << " to the orchestrator's outcome)\n";
  else
    std::cout << " sagas/s over " << seconds << " s\nLatency     p50 "
              << percentile(latencies_ms, 0.50) << " ms, p99 " << percentile(latencies_ms, 0.99)
              << " ms (start to observed end, polled every 20 ms)\n";
  if (!json_path.empty()) {
    double mean = 0;
    for (double value : latencies_ms) mean += value;
    if (!latencies_ms.empty()) mean /= static_cast<double>(latencies_ms.size());
    nlohmann::json summary = {
        {"placed", placed.size()},
        {"ended", ended.size()},
        {"completed", by_status["Completed"]},
        {"compensated", by_status["Compensated"]},
        {"failed", by_status["Failed"]},
        {"seconds", seconds},
        {"placing_seconds", tracked ? tracked_result.placing_s : seconds},
        {"throughput_sagas_per_s", throughput},
        {"latency_ms",
         {{"p50", percentile(latencies_ms, 0.50)},
          {"p90", percentile(latencies_ms, 0.90)},
          {"p99", percentile(latencies_ms, 0.99)},
          {"p999", percentile(latencies_ms, 0.999)},
          {"max", percentile(latencies_ms, 1.0)},
          {"mean", mean}}},
        {"latency_from",
         tracked ? (rate > 0 ? "scheduled start" : "start request") : "start (polled every 20 ms)"},
        {"invariants_checked", !skip_invariants},
        {"violations", violations.size()}};
    std::ofstream(json_path) << summary.dump(2) << "\n";
  }
  if (violations.empty() && skip_invariants) {
    std::cout << "Invariants  not checked (--skip-invariants)\n";
    return 0;
  }
  if (violations.empty()) {
    std::cout << "Invariants  ok: stock conserved; every completed order reserved, charged once "
                 "and shipped; every compensated order released, refunded, not shipped\n";
    return 0;
  }
  std::cout << "Invariants  VIOLATED (" << violations.size() << "):\n";
  for (std::size_t i = 0; i < std::min<std::size_t>(violations.size(), 20); ++i)
    std::cout << "  - " << violations[i] << "\n";
  return 1;
}
