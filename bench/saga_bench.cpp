// saga_bench: measures the engine against the raw limits of the same machine, in one run, and
// writes docs/benchmarks.json and docs/benchmarks.md. `saga_bench --help`; docs/benchmarks.md
// explains every figure. `make bench` runs it with the defaults (about seven minutes).
#include <sys/utsname.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "end_to_end.hpp"
#include "engine_capture.hpp"
#include "raw_limits.hpp"
#include "report.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/sqlite_tuning.hpp"

namespace {

namespace fs = std::filesystem;

struct RawOnly {};  // thrown past the end-to-end part with --raw-only
using nlohmann::json;

void say(const std::string& line) {
  std::cout << line << std::endl;
}

std::string fixed(double value, int decimals = 1) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string shell(const std::string& command) {
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    std::size_t read = 0;
    while ((read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, read);
    ::pclose(pipe);
  }
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  return output;
}

std::string quoted(const std::string& arg) {
  if (arg.find_first_of(" \t'\"$\\") == std::string::npos && !arg.empty()) return arg;
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

json load_average() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  in >> one >> five >> fifteen;
  return json::array({one, five, fifteen});
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

saga::Durability durability_of(const std::string& name) {
  return name == "full"     ? saga::Durability::full
         : name == "normal" ? saga::Durability::normal
                            : saga::Durability::off;
}

const char* name_of(saga::Durability durability) {
  return durability == saga::Durability::full     ? "full"
         : durability == saga::Durability::normal ? "normal"
                                                  : "off";
}

// Commits `sagas` completed order sagas (the engine's captured batches, replayed) into a new
// database at `path`, without fsync. Returns the database size in bytes.
double prefill(const bench::CapturedSaga& captured, const std::string& path, std::size_t sagas) {
  saga::StoreOptions options;
  options.path = path;
  options.durability = saga::Durability::off;
  std::uintmax_t size = 0;
  {
    auto opened = saga::SqliteStore::open(options);
    if (!opened) throw std::runtime_error("prefill: " + opened.error().message);
    auto& store = *opened.value();
    bench::StepReplayer replayer(captured);
    constexpr std::size_t kChunk = 512;
    std::size_t next_report = sagas / 10;
    for (std::size_t first = 0; first < sagas; first += kChunk) {
      const std::size_t last = std::min(sagas, first + kChunk);
      for (std::size_t step = 0; step < replayer.steps_per_saga(); ++step) {
        saga::WriteBatch writes;
        for (std::size_t i = first; i < last; ++i) replayer.append(i, step, writes);
        if (!store.commit(writes)) throw std::runtime_error("prefill: a commit failed");
      }
      if (last >= next_report && last < sagas) {
        say("    " + std::to_string(last) + " / " + std::to_string(sagas) + " sagas");
        next_report += sagas / 10;
      }
    }
  }
  std::error_code error;
  size = fs::file_size(path, error);
  return error ? 0 : static_cast<double>(size);
}

json phase_json(const bench::PhaseResult& phase) {
  json processes = json::object();
  double total_cpu = 0;
  for (const auto& [name, use] : phase.processes) {
    total_cpu += use.cpu_percent;
    json entry = {{"cpu", bench::figure(use.cpu_percent, "% of one core")}};
    entry["cpu_per_saga"] = bench::figure(use.cpu_us_per_saga, "us");
    entry["peak_rss"] = bench::figure(use.peak_rss_kib / 1024.0, "MiB");
    if (use.runnable_percent >= 0) {
      entry["waiting_for_a_core"] = bench::figure(use.runnable_percent, "% of one core");
      entry["busiest_thread_cpu"] = bench::figure(use.busiest_thread_cpu_percent, "% of one core");
      entry["busiest_thread_waiting_for_a_core"] =
          bench::figure(use.busiest_thread_runnable_percent, "% of one core");
    }
    processes[name] = entry;
  }
  const json& latency = phase.driver.at("latency_ms");
  return {{"sagas_per_s", bench::figure(phase.engine.sagas_per_s(), "sagas/s")},
          {"steps_per_s", bench::figure(phase.engine.steps_per_s(), "steps/s")},
          {"batch_size", bench::figure(phase.engine.batch(), "steps/commit")},
          {"measured_over", bench::figure(phase.engine.seconds, "s")},
          {"command_resends", phase.engine.command_resends},
          {"latency_p50", bench::figure(latency.at("p50").get<double>(), "ms")},
          {"latency_p99", bench::figure(latency.at("p99").get<double>(), "ms")},
          {"latency_p999", bench::figure(latency.at("p999").get<double>(), "ms")},
          {"latency_max", bench::figure(latency.at("max").get<double>(), "ms")},
          {"processes", processes},
          {"cpu_all_processes", bench::figure(total_cpu, "% of one core")},
          {"cpu_machine", bench::figure(phase.machine_cpu_percent, "% of one core")},
          {"iowait_machine", bench::figure(phase.machine_iowait_percent, "% of one core")},
          {"rounds",
           {{"count", phase.round_sagas_per_s.size()},
            {"sagas_per_s", phase.round_sagas_per_s},
            {"latency_p99_ms", phase.round_latency_p99_ms},
            {"figures",
             "the round with the median sagas/s; latency percentiles are medians over "
             "the rounds"}}},
          {"driver_summary", phase.driver}};
}

// L's pacing: a commit every 2 ms, the disk idle in between, as between a lightly loaded
// process's turns (at half load the orchestrator commits every 3 ms or so); and a saga's durable
// commits in a row: its start and three replies in the orchestrator, one in each service.
constexpr int kPacedCommitIntervalUs = 2000;
constexpr std::size_t kCommitsPerSaga = 7;

// One member of a figure, for every round.
template <class Figure>
std::vector<double> each_round(const std::vector<Figure>& rounds, double Figure::*member) {
  std::vector<double> values;
  for (const auto& round : rounds) values.push_back(round.*member);
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  // As the sample orchestrator and services do: the raw limits use SQLite as the engine does.
  saga::disable_sqlite_memory_statistics();
  CLI::App app{
      "Measures the saga engine against the raw limits of this machine (SQLite, ZeroMQ, the "
      "envelope codec) in one run and writes a JSON and a markdown report."};
  // The published reports (docs/) are written only when asked for (make bench does): a --quick
  // or --raw-only run left there would stand as the project's figures.
  std::string json_path, md_path;
  const fs::path exe_dir = fs::canonical("/proc/self/exe").parent_path();
  std::string samples_dir = (exe_dir.parent_path() / "samples").string();
  std::string work_dir = (exe_dir / "work").string();
  std::string durability = "full", participant_durability = "full";
  bool quick = false, raw_only = false, keep_databases = false;
  std::string keep_awake_mode = "auto";
  double raw_s = 2, saturation_s = 30, half_s = 20, unbatched_s = 15, isolated_s = 15,
         profile_s = 8;
  // 40,000 held sagas: more than ZeroMQ takes for a stopped peer (its high-water mark, 10,000,
  // and the socket buffers), so the rest reach the engine's send queue.
  std::size_t window = 1000, in_flight = 40000, prefill_sagas = 50000, rounds = 3;
  double prefilled_s = 15;
  app.add_flag("--quick", quick,
               "A tiny configuration (seconds, not minutes) that proves the benchmark works; its "
               "figures mean little. Explicit duration flags still win.");
  app.add_option("--keep-awake", keep_awake_mode,
                 "Measure the raw limits with idle-priority spinners keeping the cores awake: on, "
                 "off, or auto (whichever gives the higher S(1) FULL in a short calibration)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_flag("--keep-databases", keep_databases,
               "Keep the SQLite files of the end-to-end runs in --work (logs are always kept)");
  app.add_flag("--raw-only", raw_only, "Measure S, F, Z and J only (seconds), no end-to-end run");
  app.add_option("--json", json_path,
                 "Where to write the JSON report (default: benchmarks.json in --work; make bench "
                 "writes docs/benchmarks.json)");
  app.add_option("--md", md_path,
                 "Where to write the markdown report (default: benchmarks.md in --work; make "
                 "bench writes docs/benchmarks.md)");
  app.add_option("--samples", samples_dir, "Directory of the built sample programs")
      ->capture_default_str();
  app.add_option("--work", work_dir, "Scratch directory (databases, logs), recreated")
      ->capture_default_str();
  app.add_option("--durability", durability, "The orchestrator's store in E: full, normal, off")
      ->check(CLI::IsMember({"full", "normal", "off"}))
      ->capture_default_str();
  app.add_option("--participant-durability", participant_durability,
                 "The services' ledgers in E: full, normal, off")
      ->check(CLI::IsMember({"full", "normal", "off"}))
      ->capture_default_str();
  auto* raw_option =
      app.add_option("--raw-seconds", raw_s,
                     "Seconds per S(B) configuration and round (Z and J take 2x and 1.5x)")
          ->check(CLI::Range(0.05, 600.0))
          ->capture_default_str();
  auto* saturation_option = app.add_option("--saturation-seconds", saturation_s, "E at saturation")
                                ->check(CLI::Range(0.5, 3600.0))
                                ->capture_default_str();
  auto* half_option =
      app.add_option("--half-seconds", half_s, "E open loop at half of saturation (0 = skip)")
          ->check(CLI::Range(0.0, 3600.0))
          ->capture_default_str();
  auto* unbatched_option =
      app.add_option("--unbatched-seconds", unbatched_s,
                     "E with batching disabled (--batch 1) at saturation (0 = skip)")
          ->check(CLI::Range(0.0, 3600.0))
          ->capture_default_str();
  auto* isolated_option =
      app.add_option("--isolated-seconds", isolated_s,
                     "E at saturation with the participants not durable, to see the engine's own "
                     "bound (0 = skip)")
          ->check(CLI::Range(0.0, 3600.0))
          ->capture_default_str();
  auto* prefill_option =
      app.add_option("--prefill-sagas", prefill_sagas,
                     "Completed sagas put in the database before one more saturation run, to see "
                     "whether throughput depends on the database size (0 = skip)")
          ->check(CLI::Range(0, 100000000))
          ->capture_default_str();
  app.add_option("--prefilled-seconds", prefilled_s, "That saturation run")
      ->check(CLI::Range(0.5, 3600.0))
      ->capture_default_str();
  auto* profile_option =
      app.add_option("--profile-seconds", profile_s,
                     "perf profile of the orchestrator at saturation (0 = none; needs perf)")
          ->check(CLI::Range(0.0, 600.0))
          ->capture_default_str();
  auto* window_option = app.add_option("--window", window, "Sagas in flight at saturation")
                            ->check(CLI::Range(1, 1000000))
                            ->capture_default_str();
  auto* in_flight_option = app.add_option("--in-flight-sagas", in_flight,
                                          "Sagas held in flight to measure RSS per saga (0 = skip)")
                               ->check(CLI::Range(0, 10000000))
                               ->capture_default_str();
  std::vector<double> light_loads = {0.1, 0.25};
  auto* light_option =
      app.add_option("--light-loads", light_loads,
                     "Open loops after the half-rate one, as fractions of the saturation rate, "
                     "each for --half-seconds: latency against load (none with --half-seconds 0)")
          ->check(CLI::Range(0.001, 0.999))
          ->delimiter(',')
          ->capture_default_str();
  auto* rounds_option =
      app.add_option("--rounds", rounds,
                     "Every figure is the median of this many rounds: each raw limit is measured "
                     "this many times, each E phase is driven this many times for its duration "
                     "divided by the count")
          ->check(CLI::Range(1, 99))
          ->capture_default_str();
  std::string from_json;
  app.add_option("--from-json", from_json,
                 "Measure nothing: rewrite --json and --md from an earlier run's JSON (after "
                 "changing the report's text or targets)");
  CLI11_PARSE(app, argc, argv);
  if (json_path.empty()) json_path = (fs::path(work_dir) / "benchmarks.json").string();
  if (md_path.empty()) md_path = (fs::path(work_dir) / "benchmarks.md").string();
  if (!from_json.empty()) {
    std::ifstream in(from_json);
    json earlier;
    try {
      in >> earlier;
    } catch (const std::exception& error) {
      std::cerr << "saga_bench: cannot read " << from_json << ": " << error.what() << "\n";
      return 1;
    }
    earlier["targets"] = bench::targets(earlier);
    std::ofstream(json_path) << earlier.dump(2) << "\n";
    std::ofstream(md_path) << bench::markdown(earlier);
    say("rewrote " + json_path + " and " + md_path + " from " + from_json);
    return 0;
  }
  if (quick) {
    if (raw_option->count() == 0) raw_s = 0.2;
    if (saturation_option->count() == 0) saturation_s = 2;
    if (half_option->count() == 0) half_s = 1.5;
    if (unbatched_option->count() == 0) unbatched_s = 1;
    if (isolated_option->count() == 0) isolated_s = 1;
    if (prefill_option->count() == 0) prefill_sagas = 0;
    if (profile_option->count() == 0) profile_s = 0;
    if (window_option->count() == 0) window = 200;
    if (in_flight_option->count() == 0) in_flight = 500;
    if (rounds_option->count() == 0) rounds = 1;
    if (light_option->count() == 0) light_loads.clear();
  }
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + quoted(argv[i]);

  const auto began = std::chrono::steady_clock::now();
  json report;
  report["generated_by"] = "saga_bench";
  report["date"] = saga::format_rfc3339(std::chrono::system_clock::now());
  report["command"] = command;
  report["quick"] = quick;
  std::string commit = shell("git -C " + quoted(SAGA_SOURCE_DIR) + " rev-parse HEAD 2>/dev/null");
  if (!commit.empty() &&
      !shell("git -C " + quoted(SAGA_SOURCE_DIR) + " status --porcelain -uno 2>/dev/null").empty())
    commit += "-dirty";
  report["git_commit"] = commit.empty() ? "unknown" : commit;
  report["cores"] = std::thread::hardware_concurrency();
  report["cpu_model"] = cpu_model();
  utsname system{};
  ::uname(&system);
  report["kernel"] = std::string(system.sysname) + " " + system.release;
  report["load_average_at_start"] = load_average();
  report["rounds"] = rounds;
  report["durability"] = {{"orchestrator", durability}, {"participants", participant_durability}};

  try {
    fs::create_directories(work_dir);
    say("saga_bench" + std::string(quick ? " --quick" : "") + ": " +
        std::to_string(std::thread::hardware_concurrency()) + " cores, load average " +
        report["load_average_at_start"].dump());

    say("[1/9] capturing one order saga from the engine (its real batches and envelopes)");
    const bench::CapturedSaga captured = bench::capture_order_saga();
    bool keep_awake = keep_awake_mode == "on";
    if (keep_awake_mode == "auto") {
      const bench::KeepAwakeCalibration calibration = bench::calibrate_keep_awake(
          captured, std::min(raw_s, quick ? 0.1 : 0.5), quick ? 1 : 3, work_dir);
      keep_awake = calibration.keep_awake;
      say("  S(1) FULL with the cores kept awake " +
          fixed(bench::median(calibration.awake_steps_per_s), 0) + ", without " +
          fixed(bench::median(calibration.asleep_steps_per_s), 0) +
          " steps/s: the raw limits are measured " +
          (keep_awake ? "with the cores kept awake" : "without spinners"));
      report["keep_awake_calibration"] = {{"F_awake_rounds", calibration.awake_steps_per_s},
                                          {"F_asleep_rounds", calibration.asleep_steps_per_s},
                                          {"unit", "steps/s (S(1) FULL)"}};
    }
    report["keep_awake"] = keep_awake_mode;
    report["raw_limits_with_cores_kept_awake"] = keep_awake;
    json sizes = {{"commands", json::array()}, {"replies", json::array()}, {"unit", "bytes"}};
    for (const auto& c : captured.commands) sizes["commands"].push_back(c.size());
    for (const auto& r : captured.replies) sizes["replies"].push_back(r.size());
    report["message_sizes"] = sizes;
    std::size_t writes = 0;
    for (const auto& step : captured.steps)
      writes += step.sagas.size() + step.journal.size() + step.outbox.size() + step.inbox.size() +
                step.dispatched.size() + step.replied.size();
    report["rows_written_per_saga"] = writes;

    // The raw limits are measured with the cores kept awake if the calibration (or --keep-awake
    // on) says so (see KeepCoresAwake).
    auto awake = std::make_unique<bench::KeepCoresAwake>(keep_awake);
    say("[2/9] S(B): SqliteStore::commit with the engine's batches, " + fixed(raw_s) +
        " s per configuration and round");
    report["S_method"] =
        "saga::SqliteStore::commit driven with the WriteBatches the engine committed for a "
        "captured order saga (saga row, journal, outbox, inbox, dispatch and reply marks), ids "
        "refreshed per replayed saga; time inside commit only, and with full inside the "
        "SqliteStore::sync() after it (the fsync of the WAL)";
    // The round with the median steps/s; `per_round` gets every round's steps/s.
    auto median_store = [&](saga::Durability mode, std::size_t batch,
                            std::vector<double>& per_round) {
      std::vector<bench::StoreFigure> figures;
      for (std::size_t round = 0; round < rounds; ++round)
        figures.push_back(bench::measure_store(captured, mode, batch, raw_s, work_dir));
      per_round = each_round(figures, &bench::StoreFigure::steps_per_s);
      std::sort(figures.begin(), figures.end(),
                [](const auto& a, const auto& b) { return a.steps_per_s < b.steps_per_s; });
      return figures[(figures.size() - 1) / 2];
    };
    json s_list = json::array();
    double full_single = 0;
    for (saga::Durability mode : {saga::Durability::full, saga::Durability::normal}) {
      for (std::size_t batch : {1, 8, 64, 256}) {
        std::vector<double> per_round;
        auto figure = median_store(mode, batch, per_round);
        say("  " + std::string(name_of(mode)) + " B=" + std::to_string(batch) + ": " +
            fixed(figure.steps_per_s, 0) + " steps/s (" + fixed(figure.commits_per_s, 0) +
            " commits/s)");
        s_list.push_back({{"durability", name_of(mode)},
                          {"batch", batch},
                          {"steps_per_s", bench::figure(figure.steps_per_s, "steps/s")},
                          {"commits_per_s", bench::figure(figure.commits_per_s, "commits/s")},
                          {"cpu_per_step", bench::figure(figure.cpu_us_per_step, "us")},
                          {"db_bytes_per_saga", bench::figure(figure.db_bytes_per_saga, "bytes")},
                          {"warmup_sagas", figure.warmup_sagas},
                          {"rounds_steps_per_s", per_round}});
        if (mode == saga::Durability::full && batch == 1) full_single = figure.steps_per_s;
      }
    }
    report["S"] = s_list;
    report["F"] = bench::figure(full_single, "steps/s");

    // L: single commits with the disk idle in between, pooled over the rounds.
    const auto pace = std::chrono::microseconds(kPacedCommitIntervalUs);
    std::vector<double> paced_commits_us, paced_p99_per_round;
    for (std::size_t round = 0; round < rounds; ++round) {
      auto paced =
          bench::measure_commit_latency(captured, saga::Durability::full, pace, raw_s, work_dir);
      paced_p99_per_round.push_back(paced.p99_us);
      paced_commits_us.insert(paced_commits_us.end(), paced.samples_us.begin(),
                              paced.samples_us.end());
    }
    std::sort(paced_commits_us.begin(), paced_commits_us.end());
    auto pooled = [&](double fraction) { return bench::percentile(paced_commits_us, fraction); };
    say("  full B=1, one commit every " + fixed(kPacedCommitIntervalUs / 1000.0, 0) +
        " ms: commit p50 " + fixed(pooled(0.5), 0) + " us, p99 " + fixed(pooled(0.99), 0) + " us");

    say("[3/9] Z: ZeroMQ DEALER/ROUTER round trips over tcp://127.0.0.1, " + fixed(2 * raw_s) +
        " s");
    // The largest real command (inventory.Reserve, with the order lines) and its reply.
    std::size_t largest = 0;
    for (std::size_t i = 1; i < captured.commands.size(); ++i)
      if (captured.commands[i].size() > captured.commands[largest].size()) largest = i;
    std::vector<bench::ZmqFigure> z_rounds;
    for (std::size_t round = 0; round < rounds; ++round)
      z_rounds.push_back(bench::measure_zmq(captured.commands[largest], captured.replies[largest],
                                            256, 2 * raw_s));
    bench::ZmqFigure z = z_rounds.front();
    z.round_trips_per_s = bench::median(each_round(z_rounds, &bench::ZmqFigure::round_trips_per_s));
    z.rtt_p50_us = bench::median(each_round(z_rounds, &bench::ZmqFigure::rtt_p50_us));
    z.rtt_p99_us = bench::median(each_round(z_rounds, &bench::ZmqFigure::rtt_p99_us));
    say("  " + fixed(z.round_trips_per_s, 0) + " round trips/s (window " +
        std::to_string(z.window) + "), unpipelined RTT p50 " + fixed(z.rtt_p50_us) + " us, p99 " +
        fixed(z.rtt_p99_us) + " us");
    report["Z"] = {
        {"round_trips_per_s", bench::figure(z.round_trips_per_s, "round trips/s")},
        {"window", bench::figure(static_cast<double>(z.window), "round trips outstanding")},
        {"rtt_p50", bench::figure(z.rtt_p50_us, "us")},
        {"rtt_p99", bench::figure(z.rtt_p99_us, "us")},
        {"command_bytes", bench::figure(static_cast<double>(z.command_bytes), "bytes")},
        {"reply_bytes", bench::figure(static_cast<double>(z.reply_bytes), "bytes")},
        {"rounds_round_trips_per_s", each_round(z_rounds, &bench::ZmqFigure::round_trips_per_s)}};

    std::vector<double> rtts_us;
    for (const auto& round : z_rounds)
      rtts_us.insert(rtts_us.end(), round.rtt_samples_us.begin(), round.rtt_samples_us.end());
    const bench::LatencyFloor floor =
        bench::latency_floor(paced_commits_us, kCommitsPerSaga, rtts_us,
                             static_cast<std::size_t>(bench::kRoundTripsPerSaga));
    say("  a saga's latency floor (" + std::to_string(floor.commits) + " paced commits + " +
        std::to_string(floor.round_trips) + " round trips, drawn from the samples): p50 " +
        fixed(floor.p50_ms) + " ms, p99 " + fixed(floor.p99_ms) + " ms");
    report["L"] = {{"interval", bench::figure(double{kPacedCommitIntervalUs}, "us")},
                   {"commit_p50", bench::figure(pooled(0.5), "us")},
                   {"commit_p99", bench::figure(pooled(0.99), "us")},
                   {"commits_measured", paced_commits_us.size()},
                   {"rounds_commit_p99_us", paced_p99_per_round},
                   {"floor_commits", floor.commits},
                   {"floor_round_trips", floor.round_trips},
                   {"floor_p50", bench::figure(floor.p50_ms, "ms")},
                   {"floor_p99", bench::figure(floor.p99_ms, "ms")}};

    say("[4/9] J: envelope decode + encode on one core, " + fixed(1.5 * raw_s) + " s");
    std::vector<bench::CodecFigure> j_rounds;
    for (std::size_t round = 0; round < rounds; ++round)
      j_rounds.push_back(bench::measure_codec(captured, 1.5 * raw_s));
    bench::CodecFigure j;
    j.ops_per_s = bench::median(each_round(j_rounds, &bench::CodecFigure::ops_per_s));
    j.decode_per_s = bench::median(each_round(j_rounds, &bench::CodecFigure::decode_per_s));
    j.encode_per_s = bench::median(each_round(j_rounds, &bench::CodecFigure::encode_per_s));
    say("  " + fixed(j.ops_per_s, 0) + " decode+encode/s (decode " + fixed(j.decode_per_s, 0) +
        "/s, encode " + fixed(j.encode_per_s, 0) + "/s)");
    report["J"] = {
        {"decode_encode_per_s", bench::figure(j.ops_per_s, "ops/s")},
        {"decode_per_s", bench::figure(j.decode_per_s, "ops/s")},
        {"encode_per_s", bench::figure(j.encode_per_s, "ops/s")},
        {"rounds_decode_encode_per_s", each_round(j_rounds, &bench::CodecFigure::ops_per_s)}};

    awake.reset();
    if (raw_only) throw RawOnly{};
    bench::ClusterOptions cluster;
    cluster.samples_dir = samples_dir;
    cluster.keep_databases = keep_databases;
    cluster.durability = durability;
    cluster.participant_durability = participant_durability;

    say("[5/9] E: orchestrator + inventory, payment, shipping as processes over tcp loopback");
    cluster.work_dir = (fs::path(work_dir) / "batched").string();
    bench::RunPlan plan;
    plan.window = window;
    plan.rounds = rounds;
    plan.warmup_s = quick ? 0.3 : 5;
    plan.saturation_s = saturation_s;
    plan.half_s = half_s;
    plan.light_loads = light_loads;
    plan.profile_s = profile_s;
    const bench::RunResult run = bench::run_cluster(cluster, plan);
    json e;
    e["saturation"] = phase_json(run.saturation);
    e["saturation"]["window"] = bench::figure(static_cast<double>(window), "sagas in flight");
    if (run.half) {
      e["half"] = phase_json(*run.half);
      e["half"]["offered_rate"] = bench::figure(run.saturation.engine.sagas_per_s() / 2, "sagas/s");
    }
    if (!run.light.empty()) {
      json light = json::array();
      for (const auto& [fraction, phase] : run.light) {
        json entry = phase_json(phase);
        entry["fraction_of_saturation"] = bench::figure(fraction, "ratio");
        entry["offered_rate"] =
            bench::figure(run.saturation.engine.sagas_per_s() * fraction, "sagas/s");
        light.push_back(std::move(entry));
      }
      e["light_loads"] = std::move(light);
    }

    // C at the batch size the engine achieved, with S measured at exactly that size, right after
    // the E run (other work on the machine changes fsync times from minute to minute).
    const double b_star = run.saturation.engine.batch();
    const std::size_t b_round =
        std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(b_star)));
    say("  S(B*) at B = " + std::to_string(b_round) + " (" + durability + ")");
    awake = std::make_unique<bench::KeepCoresAwake>(keep_awake);
    std::vector<double> s_at_b_rounds;
    const bench::StoreFigure store_at_b =
        median_store(durability_of(durability), b_round, s_at_b_rounds);
    const double s_at_b = store_at_b.steps_per_s;
    awake.reset();
    const bench::Ceiling ceiling = bench::ceiling(s_at_b, z.round_trips_per_s, j.ops_per_s);
    report["C"] = bench::ceiling_json(ceiling, b_star, b_round, durability);
    report["C"]["S_at_B_star_cpu_per_step"] = bench::figure(store_at_b.cpu_us_per_step, "us");
    report["C"]["S_at_B_star_rounds"] = s_at_b_rounds;
    const double e_over_c = run.saturation.engine.steps_per_s() / ceiling.steps_per_s;
    e["E_over_C"] = bench::figure(e_over_c, "ratio");
    say("  C = " + fixed(ceiling.sagas_per_s) + " sagas/s (" + fixed(ceiling.steps_per_s) +
        " steps/s) at B* = " + fixed(b_star, 2) + "; E/C = " + fixed(e_over_c, 3));
    if (run.profile) e["profile"] = bench::profile_json(*run.profile);

    if (isolated_s > 0 && participant_durability != "off") {
      say("[6/9] E with the participants not durable (services --durability off) beside durable "
          "ones: the engine's own bound");
      bench::ClusterOptions durable = cluster;
      durable.work_dir = (fs::path(work_dir) / "participants-durable").string();
      bench::ClusterOptions light = cluster;
      light.work_dir = (fs::path(work_dir) / "participants-off").string();
      light.participant_durability = "off";
      bench::RunPlan light_plan;
      light_plan.window = window;
      light_plan.rounds = rounds;
      light_plan.warmup_s = quick ? 0.3 : 2;
      light_plan.saturation_s = isolated_s;
      light_plan.check_invariants = false;
      const bench::Comparison compared = bench::compare_clusters(durable, light, light_plan);
      json l = phase_json(compared.variant);
      l["window"] = bench::figure(static_cast<double>(window), "sagas in flight");
      l["E_over_C"] = bench::figure(compared.variant.engine.steps_per_s() / ceiling.steps_per_s,
                                    "ratio (C at the batched run's B*)");
      l["durable_participants_sagas_per_s"] = bench::figure(
          compared.baseline.engine.sagas_per_s(), "sagas/s (durable services, run alternately)");
      l["over_durable_participants"] = bench::figure(
          compared.ratio, "ratio (median over rounds, each against the durable run beside it)");
      l["round_ratios"] = compared.round_ratios;
      e["participants_not_durable"] = l;
    } else {
      say("[6/9] E with the participants not durable: skipped");
    }

    if (unbatched_s > 0) {
      const bool beside_light = participant_durability != "off";
      say("[7/9] E with batching disabled (orchestrator --batch 1 --sync commit)" +
          std::string(beside_light ? ", with the participants durable and, alternately, not" : ""));
      bench::ClusterOptions single = cluster;
      single.work_dir = (fs::path(work_dir) / "unbatched").string();
      single.max_batch = 1;
      // One message per transaction and per fsync: with the sync thread, the commits made during
      // one fsync would share the next, which is batching again.
      single.sync = "commit";
      // The same with the services' ledgers not durable: F is one process's commits on a quiet
      // machine, and durable services fsync on the same disk, so this run shows the ratio without
      // the disk's time the services' fsyncs take (they still share the cores).
      bench::ClusterOptions single_light = single;
      single_light.work_dir = (fs::path(work_dir) / "unbatched-participants-off").string();
      single_light.participant_durability = "off";
      bench::RunPlan single_plan;
      // One fsync per step: throughput does not grow with the window, the drain time does.
      single_plan.window = std::min<std::size_t>(window, 200);
      single_plan.rounds = rounds;
      single_plan.warmup_s = quick ? 0.3 : 2;
      single_plan.saturation_s = unbatched_s;
      single_plan.half_s = 0;
      single_plan.check_invariants = false;
      // F swings between runs on this kind of disk (1,010 to 1,661 steps/s), so it is measured
      // beside each round, not once: every round's ratio compares two adjacent measurements.
      std::vector<double> f_rounds;
      single_plan.beside_saturation_round = [&](std::size_t round) {
        bench::KeepCoresAwake cores_awake(keep_awake);
        f_rounds.push_back(
            bench::measure_store(captured, saga::Durability::full, 1, raw_s, work_dir).steps_per_s);
        say("    F beside round " + std::to_string(round) + ": " + fixed(f_rounds.back(), 0) +
            " steps/s");
      };
      bench::PhaseResult durable_phase, light_phase;
      std::vector<double> light_over_durable;
      if (beside_light) {
        bench::Comparison compared = bench::compare_clusters(single, single_light, single_plan);
        light_over_durable = compared.round_ratios;
        durable_phase = std::move(compared.baseline);
        light_phase = std::move(compared.variant);
      } else {
        durable_phase = bench::run_cluster(single, single_plan).saturation;
      }
      auto over_f = [&](const bench::PhaseResult& phase) {
        std::vector<double> ratios;
        for (std::size_t i = 0; i < std::min(phase.round_steps_per_s.size(), f_rounds.size()); ++i)
          ratios.push_back(phase.round_steps_per_s[i] / std::max(f_rounds[i], 1e-9));
        return ratios;
      };
      const double f_median = bench::median(f_rounds);
      auto unbatched_json = [&](const bench::PhaseResult& phase) {
        json u = phase_json(phase);
        u["window"] = bench::figure(static_cast<double>(single_plan.window), "sagas in flight");
        u["sync"] = single.sync;
        u["steps_per_s_rounds"] = phase.round_steps_per_s;
        const std::vector<double> ratios = over_f(phase);
        u["round_ratios"] = ratios;
        u["steps_over_F"] =
            bench::figure(bench::median(ratios),
                          "ratio (median over rounds, each against the F measured beside it)");
        return u;
      };
      json u = unbatched_json(durable_phase);
      u["F"] = bench::figure(f_median, "steps/s (S(1) FULL, median of the rounds beside E's)");
      u["F_rounds"] = f_rounds;
      std::string light_text;
      if (beside_light) {
        u["participants_not_durable"] = unbatched_json(light_phase);
        u["participants_not_durable"]["over_durable_participants"] =
            bench::figure(bench::median(light_over_durable),
                          "ratio (median over rounds, each against the durable run beside it)");
        u["participants_not_durable"]["over_durable_participants_rounds"] = light_over_durable;
        light_text = "; participants not durable " +
                     fixed(u["participants_not_durable"]["steps_over_F"]["value"].get<double>(), 3);
      }
      say("  F = " + fixed(f_median, 0) + " steps/s beside the rounds (" + fixed(full_single, 0) +
          " at the start of the run); steps/s over F " +
          fixed(u["steps_over_F"]["value"].get<double>(), 3) + light_text);
      e["batching_disabled"] = u;
    } else {
      say("[7/9] E with batching disabled: skipped");
    }

    if (prefill_sagas > 0) {
      say("[8/9] E with " + std::to_string(prefill_sagas) +
          " completed sagas already in the database, beside a fresh database");
      bench::ClusterOptions fresh = cluster;
      fresh.work_dir = (fs::path(work_dir) / "fresh").string();
      bench::ClusterOptions full = cluster;
      full.work_dir = (fs::path(work_dir) / "prefilled").string();
      double db_bytes = 0;
      full.prepare_database = [&](const std::string& path) {
        say("  filling " + path + " (the engine's batches, replayed, without fsync)");
        db_bytes = prefill(captured, path, prefill_sagas);
      };
      bench::RunPlan full_plan;
      full_plan.window = window;
      full_plan.rounds = rounds;
      full_plan.warmup_s = quick ? 0.3 : 2;
      full_plan.saturation_s = prefilled_s;
      full_plan.check_invariants = false;
      const bench::Comparison compared = bench::compare_clusters(fresh, full, full_plan);
      json p = phase_json(compared.variant);
      p["sagas_in_database"] = prefill_sagas;
      p["database_bytes_before"] = bench::figure(db_bytes, "bytes");
      p["fresh"] = phase_json(compared.baseline);
      p["over_fresh_database"] = bench::figure(
          compared.ratio, "ratio (median over rounds, each against the fresh run beside it)");
      p["round_ratios"] = compared.round_ratios;
      e["prefilled"] = p;
    } else {
      say("[8/9] E with sagas already in the database: skipped");
    }

    if (in_flight > 0) {
      say("[9/9] RSS per in-flight saga: " + std::to_string(in_flight) + " sagas held in flight");
      bench::ClusterOptions held = cluster;
      held.work_dir = (fs::path(work_dir) / "in-flight").string();
      auto held_in_flight = [&](const bench::InFlightResult& measured) {
        say("  " + fixed(measured.bytes_per_saga, 0) + " bytes of RSS per in-flight saga; " +
            (measured.all_completed ? "all completed afterwards" : "NOT all completed"));
        if (!measured.all_completed)
          throw std::runtime_error("the sagas held in flight did not all complete");
        return nlohmann::json{
            {"sagas", measured.sagas},
            {"orchestrator_rss_before", bench::figure(measured.rss_before_kib / 1024.0, "MiB")},
            {"orchestrator_rss_with_sagas", bench::figure(measured.rss_after_kib / 1024.0, "MiB")},
            {"rss_per_in_flight_saga", bench::figure(measured.bytes_per_saga, "bytes")},
            {"all_completed_afterwards", measured.all_completed}};
      };
      e["in_flight"] = held_in_flight(bench::measure_in_flight(held, in_flight, quick ? 0.3 : 2));
      // The same sagas with a saga cache and a send queue a tenth their number: what a waiting
      // saga costs once the cache has let it go and its command waits in the outbox only.
      held.saga_cache = std::max<std::size_t>(1, in_flight / 10);
      held.send_queue = held.saga_cache;
      say("  again with the orchestrator's saga cache and send queue at " +
          std::to_string(held.saga_cache) + " (--saga-cache, --send-queue)");
      nlohmann::json bounded =
          held_in_flight(bench::measure_in_flight(held, in_flight, quick ? 0.3 : 2));
      bounded["saga_cache"] = held.saga_cache;
      bounded["send_queue"] = held.send_queue;
      e["in_flight"]["bounded_cache"] = bounded;
    } else {
      say("[9/9] RSS per in-flight saga: skipped");
    }
    report["E"] = e;
  } catch (const RawOnly&) {
    say("[5-9/9] E: skipped (--raw-only)");
  } catch (const std::exception& error) {
    std::cerr << "saga_bench: " << error.what() << "\n";
    return 1;
  }

  report["load_average_at_end"] = load_average();
  report["duration"] = bench::figure(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count(), "s");
  report["targets"] = bench::targets(report);
  for (const std::string& path : {json_path, md_path})
    if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  std::ofstream(json_path) << report.dump(2) << "\n";
  std::ofstream(md_path) << bench::markdown(report);
  say("wrote " + json_path + " and " + md_path + " (" +
      fixed(report["duration"]["value"].get<double>(), 0) + " s)");
  for (const auto& target : report["targets"])
    say("  " +
        std::string(target["pass"].is_null()     ? "  --  "
                    : target["pass"].get<bool>() ? " pass "
                                                 : " FAIL ") +
        target["target"].get<std::string>() + ": " + target["measured"].get<std::string>());
  return 0;
}
