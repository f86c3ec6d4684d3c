// E: the engine end to end. The sample order orchestrator and the inventory, payment and shipping
// services run as separate processes over tcp://127.0.0.1; the sample order driver places the
// orders. All participants always succeed (no stock-outs, declines or lost parcels), so every
// saga runs its three steps.
//
// One cluster (fresh databases and processes) per run:
//   saturation: closed loop, `window` sagas in flight, for `saturation_s`; the engine's counters
//               and each process's CPU are sampled over the steady middle of the run;
//   half:       open loop at half the saturation rate for `half_s` (latency from each order's
//               scheduled time);
//   profile:    optional, perf attached to the orchestrator during another saturation run;
//   in-flight:  optional, a separate cluster: the inventory service is stopped (SIGSTOP), `k`
//               sagas are started and committed, and the orchestrator's RSS growth is divided by
//               k; then the service continues and every saga must complete.
// Processes are stopped (SIGTERM, then SIGKILL) whatever happens. Throws std::runtime_error when a
// process cannot be started or the orchestrator stops answering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saga/options.hpp"

namespace bench {

struct ClusterOptions {
  std::string samples_dir;          // holds order_orchestrator/, order_driver/, services/
  std::string work_dir;             // databases and logs, recreated per cluster
  std::string durability = "full";  // the orchestrator's store
  std::string participant_durability = "full";  // the services' ledgers
  std::string sync = "background";              // the orchestrator's --sync: background or commit
  std::size_t max_batch = saga::Options{}.max_batch_messages;    // the orchestrator's --batch
  std::size_t saga_cache = saga::Options{}.max_cached_sagas;     // the orchestrator's --saga-cache
  std::size_t send_queue = saga::Options{}.max_queued_commands;  // the orchestrator's --send-queue
  // Keep the SQLite files when the cluster stops (logs and the profile are always kept).
  bool keep_databases = false;
  // Called with the orchestrator's database path before the orchestrator starts (to fill it).
  std::function<void(const std::string&)> prepare_database = {};
};

// Counters of the orchestrator's engine over a window of time.
struct EngineWindow {
  double seconds = 0;
  std::uint64_t steps = 0;  // sagas started + messages applied
  std::uint64_t commits = 0;
  std::uint64_t sagas_ended = 0;
  std::uint64_t command_resends = 0;
  double steps_per_s() const { return seconds > 0 ? static_cast<double>(steps) / seconds : 0; }
  double sagas_per_s() const {
    return seconds > 0 ? static_cast<double>(sagas_ended) / seconds : 0;
  }
  double batch() const {
    return commits > 0 ? static_cast<double>(steps) / static_cast<double>(commits) : 0;
  }
};

struct ProcessUse {
  double cpu_percent = 0;      // of one core, over the window
  double cpu_us_per_saga = 0;  // over the window
  double peak_rss_kib = 0;     // VmHWM at the end of the run
  // Scheduler figures over the window (/proc/<pid>/task/*/schedstat), % of one core: time its
  // threads were runnable but waiting for a core, and the busiest thread's time on a core and
  // waiting for one. Negative when not measured (the driver).
  double runnable_percent = -1;
  double busiest_thread_cpu_percent = -1;
  double busiest_thread_runnable_percent = -1;
};

struct PhaseResult {
  nlohmann::json driver;  // the driver's --json summary
  EngineWindow engine;
  std::map<std::string, ProcessUse> processes;  // orchestrator, inventory, payment, shipping,
                                                // driver
  double machine_cpu_percent = 0;  // every process on the machine, % of one core (/proc/stat)
  double machine_iowait_percent = 0;
  // A phase measured in rounds reports the round with the median throughput, with each latency
  // percentile replaced by its median over the rounds; these are every round's figures.
  std::vector<double> round_sagas_per_s;
  std::vector<double> round_steps_per_s;
  std::vector<double> round_latency_p99_ms;
};

// The median of `rounds` (see PhaseResult). Throws std::invalid_argument when empty.
PhaseResult median_phase(std::vector<PhaseResult> rounds);

struct ProfileResult {
  std::size_t samples = 0;
  // Share of the orchestrator's CPU samples with a frame of the component on the stack
  // (inclusive; components overlap).
  std::vector<std::pair<std::string, double>> components;
  // Share of samples per thread: the engine loop, the sample's intake, ZeroMQ I/O, other.
  std::vector<std::pair<std::string, double>> threads;
  double json_share = 0;              // a nlohmann frame on the stack, all threads
  double json_share_engine_loop = 0;  // the same, within the engine loop thread's samples
  std::vector<std::pair<std::string, double>> top_self;  // hottest functions (self), share
  std::string data_file;
};

struct RunPlan {
  std::size_t window = 1000;
  double warmup_s = 5;
  double saturation_s = 30;
  double half_s = 30;  // 0: skip the half-rate phase
  // Lighter open loops after the half-rate phase, as fractions of the saturation rate, each for
  // half_s: latency against load.
  std::vector<double> light_loads;
  double profile_s = 0;  // 0: no profile
  bool check_invariants = true;
  // Each phase is driven `rounds` times for its duration / rounds; its figures are the medians.
  std::size_t rounds = 1;
  // Called once per saturation round with the round's number (1-based), while the cluster idles:
  // after odd rounds and before even ones (compare_clusters: between the two clusters' runs of
  // the round), so a figure measured here pairs with the round beside it and the machine's drift
  // does not favour either side.
  std::function<void(std::size_t round)> beside_saturation_round = {};
};

struct RunResult {
  PhaseResult saturation;
  std::optional<PhaseResult> half;
  std::vector<std::pair<double, PhaseResult>> light;  // (fraction of saturation, result)
  std::optional<ProfileResult> profile;
};

RunResult run_cluster(const ClusterOptions& cluster, const RunPlan& plan);

// Two clusters side by side, for a ratio the machine's drift does not skew: both are started
// and warmed up, then driven at saturation in `plan.rounds` alternating rounds (the baseline
// first in odd rounds, the variant first in even ones) of saturation_s / rounds each. Only the
// plan's window, warm-up, saturation time, rounds, check_invariants and beside_saturation_round
// apply (the latter between the two clusters' runs of each round, so it is next to both).
struct Comparison {
  PhaseResult baseline, variant;     // each the median of its rounds
  std::vector<double> round_ratios;  // variant / baseline sagas/s, per round (adjacent runs)
  double ratio = 0;                  // the median of round_ratios
};
Comparison compare_clusters(const ClusterOptions& baseline, const ClusterOptions& variant,
                            const RunPlan& plan);

struct InFlightResult {
  std::size_t sagas = 0;
  double rss_before_kib = 0;
  double rss_after_kib = 0;
  double bytes_per_saga = 0;
  bool all_completed = false;
};

InFlightResult measure_in_flight(const ClusterOptions& cluster, std::size_t sagas, double warmup_s);

}  // namespace bench
