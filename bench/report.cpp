#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace bench {
namespace {

using nlohmann::json;

std::string number(double value, int decimals = 0) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  // Thousands separators in the integer part.
  const std::string plain(text);
  const std::size_t sign = plain[0] == '-' ? 1 : 0;
  const std::size_t dot = std::min(plain.find('.'), plain.size());
  std::string out = plain.substr(0, sign);
  for (std::size_t i = sign; i < dot; ++i) {
    out.push_back(plain[i]);
    const std::size_t left = dot - i - 1;
    if (left > 0 && left % 3 == 0) out.push_back(',');
  }
  out.append(plain, dot, std::string::npos);
  return out;
}

double value_at(const json& report, const json::json_pointer& pointer) {
  if (!report.contains(pointer)) return 0;
  const json& node = report.at(pointer);
  return node.is_object() ? node.at("value").get<double>() : node.get<double>();
}

bool has(const json& report, const std::string& pointer) {
  return report.contains(json::json_pointer(pointer));
}

double median_of(const json& values) {
  std::vector<double> numbers;
  for (const auto& v : values) numbers.push_back(v.get<double>());
  return median(std::move(numbers));
}

double at(const json& report, const std::string& pointer) {
  return value_at(report, json::json_pointer(pointer));
}

std::string percent(double share) {
  return number(100 * share, 1) + " %";
}

}  // namespace

json figure(double value, const std::string& unit) {
  return {{"value", value}, {"unit", unit}};
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

Ceiling ceiling(double store_steps_per_s, double round_trips_per_s, double codec_ops_per_s) {
  Ceiling c;
  c.store_s_per_saga = kStepsPerSaga / store_steps_per_s;
  c.transport_s_per_saga = kRoundTripsPerSaga / round_trips_per_s;
  c.codec_s_per_saga = kCodecOpsPerSaga / codec_ops_per_s;
  const double total = c.store_s_per_saga + c.transport_s_per_saga + c.codec_s_per_saga;
  c.sagas_per_s = 1 / total;
  c.steps_per_s = kStepsPerSaga * c.sagas_per_s;
  c.bound_by =
      c.store_s_per_saga >= c.transport_s_per_saga && c.store_s_per_saga >= c.codec_s_per_saga
          ? "store (S)"
      : c.transport_s_per_saga >= c.codec_s_per_saga ? "transport (Z)"
                                                     : "codec (J)";
  return c;
}

json ceiling_json(const Ceiling& c, double b_star, std::size_t b_used,
                  const std::string& durability) {
  const double total = c.store_s_per_saga + c.transport_s_per_saga + c.codec_s_per_saga;
  return {{"B_star", figure(b_star, "steps/commit")},
          {"S_measured_at_B", b_used},
          {"S_durability", durability},
          {"S_at_B_star", figure(kStepsPerSaga / c.store_s_per_saga, "steps/s")},
          {"sagas_per_s", figure(c.sagas_per_s, "sagas/s")},
          {"steps_per_s", figure(c.steps_per_s, "steps/s")},
          {"share_store", figure(c.store_s_per_saga / total, "fraction")},
          {"share_transport", figure(c.transport_s_per_saga / total, "fraction")},
          {"share_codec", figure(c.codec_s_per_saga / total, "fraction")},
          {"bound_by", c.bound_by}};
}

json profile_json(const ProfileResult& p) {
  auto shares = [](const std::vector<std::pair<std::string, double>>& list) {
    json out = json::array();
    for (const auto& [name, share] : list)
      out.push_back({{"name", name}, {"share", figure(share, "fraction of samples")}});
    return out;
  };
  return {{"samples", p.samples},
          {"json_share", figure(p.json_share, "fraction of orchestrator CPU samples")},
          {"json_share_engine_loop",
           figure(p.json_share_engine_loop, "fraction of the engine loop thread's samples")},
          {"components", shares(p.components)},
          {"threads", shares(p.threads)},
          {"top_self", shares(p.top_self)},
          {"perf_data", p.data_file}};
}

json targets(const json& report) {
  json list = json::array();
  auto add = [&](std::string target, std::string required, std::string measured, json pass) {
    list.push_back({{"target", std::move(target)},
                    {"required", std::move(required)},
                    {"measured", std::move(measured)},
                    {"pass", std::move(pass)}});
  };
  const bool have_e = has(report, "/E/saturation");
  const double e_over_c = at(report, "/E/E_over_C");
  add("E >= 0.5 x C (moonshot 0.8 x C)", "E/C >= 0.5",
      have_e ? "E/C = " + number(e_over_c, 3) + " (E " +
                   number(at(report, "/E/saturation/steps_per_s")) + " steps/s, C " +
                   number(at(report, "/C/steps_per_s")) + " steps/s)"
             : "not measured",
      have_e ? json(e_over_c >= 0.5) : json());
  const double sagas = at(report, "/E/saturation/sagas_per_s");
  add("Completed 3-step sagas per second, participants on the same machine", ">= 5,000 sagas/s",
      have_e ? number(sagas) + " sagas/s" : "not measured", have_e ? json(sagas >= 5000) : json());
  const bool have_half = has(report, "/E/half");
  const double p99 = at(report, "/E/half/latency_p99");
  add("Saga latency p99 at 50% of saturation", "<= 10 ms",
      have_half
          ? number(p99, 1) + " ms (at " + number(at(report, "/E/half/offered_rate")) +
                " sagas/s offered" +
                (has(report, "/L/floor_p99") ? "; this machine's floor, without queueing or CPU: " +
                                                   number(at(report, "/L/floor_p99"), 1) + " ms"
                                             : "") +
                ")"
          : "not measured",
      have_half ? json(p99 <= 10) : json());
  const bool have_unbatched = has(report, "/E/batching_disabled");
  const double ratio = at(report, "/E/batching_disabled/steps_over_F");
  add("Batching disabled: engine steps/s vs F", ">= 0.9 x F",
      have_unbatched
          ? number(ratio, 3) + " x F (" + number(at(report, "/E/batching_disabled/steps_per_s")) +
                " steps/s, F " + number(at(report, "/E/batching_disabled/F")) +
                " steps/s, measured beside each of its rounds" +
                (has(report, "/E/batching_disabled/participants_not_durable")
                     ? "; with the participants not durable " +
                           number(at(report,
                                     "/E/batching_disabled/participants_not_durable/steps_over_F"),
                                  3) +
                           " x F"
                     : "") +
                ")"
          : "not measured",
      have_unbatched ? json(ratio >= 0.9) : json());
  if (has(report, "/E/prefilled")) {
    const double in_db = at(report, "/E/prefilled/sagas_in_database");
    const double change = at(report, "/E/prefilled/over_fresh_database");
    add("Throughput from 1,000 to 1,000,000 sagas in the database", "within 20 %",
        number(at(report, "/E/prefilled/sagas_per_s")) + " sagas/s with " + number(in_db) +
            " sagas in the database = " + number(change, 3) + " x the fresh database's" +
            (has(report, "/E/prefilled/round_ratios") ? " (run beside it, alternating)" : "") +
            (in_db < 1e6 ? " (fewer than 1,000,000: use --prefill-sagas 1000000)" : ""),
        in_db >= 1e6 ? json(change >= 0.8 && change <= 1.2) : json());
  } else {
    add("Throughput from 1,000 to 1,000,000 sagas in the database", "within 20 %",
        "not measured (--prefill-sagas 0)", json());
  }
  std::string rss = has(report, "/E/in_flight")
                        ? number(at(report, "/E/in_flight/rss_per_in_flight_saga")) +
                              " bytes per in-flight saga; "
                        : "";
  if (has(report, "/E/in_flight/bounded_cache"))
    rss += number(at(report, "/E/in_flight/bounded_cache/rss_per_in_flight_saga")) +
           " with the saga cache and the send queue at a tenth of them (" +
           number(at(report, "/E/in_flight/bounded_cache/saga_cache")) + "); ";
  // The fresh database run beside the prefilled one, when there is one (older reports: E's run).
  const std::string fresh =
      has(report, "/E/prefilled/fresh") ? "/E/prefilled/fresh" : "/E/saturation";
  rss += "orchestrator peak " + number(at(report, fresh + "/processes/orchestrator/peak_rss"), 1) +
         " MiB at saturation";
  if (has(report, "/E/prefilled"))
    rss += ", " + number(at(report, "/E/prefilled/processes/orchestrator/peak_rss"), 1) +
           " MiB with " + number(at(report, "/E/prefilled/sagas_in_database")) +
           " sagas in the database";
  // Judged like throughput, with a database of 1,000,000 sagas: the cache holds only the sagas
  // in flight, so the peak must not grow with what the database holds.
  json rss_pass;
  if (have_e && has(report, "/E/prefilled") &&
      at(report, "/E/prefilled/sagas_in_database") >= 1e6) {
    const double growth = at(report, "/E/prefilled/processes/orchestrator/peak_rss") /
                          at(report, fresh + "/processes/orchestrator/peak_rss");
    rss += " (" + number(growth, 2) + " x)";
    rss_pass = growth <= 1.25;
  }
  add("RSS bounded as sagas accumulate",
      "peak with 1,000,000 sagas in the database <= 1.25 x the fresh run's",
      have_e ? rss : "not measured", rss_pass);
  return list;
}

std::string markdown(const json& r) {
  std::ostringstream md;
  auto fmt = [&](const std::string& pointer, int decimals = 0) {
    return has(r, pointer) ? number(at(r, pointer), decimals) : std::string("—");
  };
  md << "# Benchmarks\n\n"
     << "<!-- Generated by saga_bench (bench/report.cpp); edit that file, not this one. -->\n\n"
     << "`saga_bench` measures the engine against the raw limits of the machine it runs on, in "
        "one run and with the engine's real statements and message sizes: how fast SQLite can "
        "do the engine's writes (S, F) and how long one durable commit takes at low load (L), how "
        "fast ZeroMQ can carry its messages (Z), how fast the "
        "envelope codec is (J), the ceiling these imply (C), and the engine end to end (E) with "
        "the order saga's participants as separate processes.\n\n"
     << "```sh\n"
     << "make bench                                  # builds, runs saga_bench, writes "
        "docs/benchmarks.{json,md} (~7 min)\n"
     << "build/default/bench/saga_bench --quick      # a few seconds; proves it works "
        "(ctest bench.smoke); reports in its --work directory\n"
     << "build/default/bench/saga_bench --help       # durations, window, durability, "
        "output paths\n"
     << "build/default/bench/saga_microbench         # Google Benchmark: MSM dispatch, codec, "
        "store\n"
     << "bench/cpu_per_saga.sh --samples DIR         # CPU per saga of each process, fixed work: "
        "compare two builds\n"
     << "bench/wal_frames.sh --batch N               # WAL pages per orchestrator commit, by "
        "table and index\n"
     << "bench/instructions_per_saga.sh --loop PATH  # the engine's instructions per saga "
        "(callgrind): compare two builds\n"
     << "bench/syscalls_per_saga.sh --rate R         # system calls, context switches, CPU per "
        "saga of each process under a load\n"
     << "build/default/bench/saga_engine_loop --waiting N [--saga-cache C]  # the engine's heap "
        "per waiting saga\n"
     << "```\n\n";
  md << "## This run\n\n"
     << "| | |\n|---|---|\n"
     << "| Date | " << r.value("date", "") << " |\n"
     << "| Commit | `" << r.value("git_commit", "") << "` |\n"
     << "| Command | `" << r.value("command", "") << "` |\n"
     << "| Cores | " << r.value("cores", 0) << " (" << r.value("cpu_model", "") << ") |\n"
     << "| Kernel | " << r.value("kernel", "") << " |\n"
     << "| Load average (1, 5, 15 min) at start / end | " << r["load_average_at_start"].dump()
     << " / " << r["load_average_at_end"].dump() << " |\n"
     << "| Durability in E | orchestrator `" << r["durability"].value("orchestrator", "")
     << "`, participants `" << r["durability"].value("participants", "") << "` |\n"
     << "| Rounds | " << r.value("rounds", 1)
     << (r.value("rounds", 1) > 1
             ? " per figure: each raw limit is the median of its rounds; each E phase is driven "
               "in rounds, reported as the round with the median sagas/s and the medians of the "
               "latency percentiles (the range over the rounds in parentheses)"
             : " (single measurements)")
     << " |\n"
     << "| Duration | " << fmt("/duration") << " s |\n\n";
  if (r.value("quick", false))
    md << "**This was a `--quick` run: the figures prove the benchmark works and mean "
          "little.**\n\n";
  const auto& load = r["load_average_at_start"];
  if (load.is_array() && !load.empty() && load[0].get<double>() > 0.5 * r.value("cores", 1))
    md << "**The machine was busy when the run started (load average " << load[0].get<double>()
       << " on " << r.value("cores", 0)
       << " cores): other work shared the CPU, so the figures are noisy. Re-run `make bench` on "
          "a quiet machine for figures to quote.**\n\n";

  md << "## Targets\n\n| Target | Required | Measured | Result |\n|---|---|---|---|\n";
  for (const auto& t : r["targets"])
    md << "| " << t.value("target", "") << " | " << t.value("required", "") << " | "
       << t.value("measured", "") << " | "
       << (t["pass"].is_null()     ? "not judged"
           : t["pass"].get<bool>() ? "**pass**"
                                   : "**FAIL**")
       << " |\n";
  md << "\n";

  // " (low–high)" over the rounds of a figure, when it had more than one.
  auto range = [&](const std::string& pointer, int decimals) {
    if (!has(r, pointer)) return std::string();
    const json& values = r.at(json::json_pointer(pointer));
    if (!values.is_array() || values.size() < 2) return std::string();
    auto [low, high] = std::minmax_element(
        values.begin(), values.end(),
        [](const json& a, const json& b) { return a.get<double>() < b.get<double>(); });
    return " (" + number(low->get<double>(), decimals) + "–" +
           number(high->get<double>(), decimals) + ")";
  };
  md << "## Raw limits of this machine\n\n"
     << "| Figure | Value | Meaning |\n|---|---|---|\n";
  if (r.contains("S")) {
    for (std::size_t i = 0; i < r["S"].size(); ++i) {
      const json& s = r["S"][i];
      md << "| S(" << s.value("batch", 0) << ") " << s.value("durability", "") << " | "
         << number(s["steps_per_s"]["value"].get<double>())
         << range("/S/" + std::to_string(i) + "/rounds_steps_per_s", 0) << " steps/s ("
         << number(s["commits_per_s"]["value"].get<double>()) << " commits/s) | "
         << s.value("batch", 0) << " step(s) per transaction, WAL, "
         << (s.value("durability", "") == "full" ? "durable: COMMIT, then fdatasync of the WAL"
                                                 : "synchronous=NORMAL, no sync")
         << " |\n";
    }
  }
  if (r.contains("raw_limits_with_cores_kept_awake"))
    md << "| Cores kept awake | "
       << (r["raw_limits_with_cores_kept_awake"].get<bool>() ? "yes" : "no") << " | "
       << (has(r, "/keep_awake_calibration")
               ? "chosen by calibration: S(1) FULL " +
                     number(median_of(r["keep_awake_calibration"]["F_awake_rounds"])) +
                     " steps/s with idle-priority spinners, " +
                     number(median_of(r["keep_awake_calibration"]["F_asleep_rounds"])) + " without"
           : r.contains("keep_awake")
               ? "`--keep-awake " + r.value("keep_awake", std::string()) + "`"
               : std::string(r["raw_limits_with_cores_kept_awake"].get<bool>()
                                 ? "always, before `--keep-awake`"
                                 : "`--no-keep-awake`, before `--keep-awake`"))
       << " |\n";
  md << "| F | " << fmt("/F") << " steps/s | S(1) FULL: one step per durable transaction |\n"
     << "| Z | " << fmt("/Z/round_trips_per_s") << range("/Z/rounds_round_trips_per_s", 0)
     << " round trips/s | DEALER/ROUTER over "
     << "tcp://127.0.0.1, " << fmt("/Z/window") << " outstanding, " << fmt("/Z/command_bytes")
     << "-byte command out, " << fmt("/Z/reply_bytes") << "-byte reply back |\n"
     << "| Z RTT p50 / p99 | " << fmt("/Z/rtt_p50", 1) << " / " << fmt("/Z/rtt_p99", 1)
     << " µs | the same, one at a time |\n"
     << (has(r, "/L")
             ? "| L commit p50 / p99 | " + fmt("/L/commit_p50") + " / " + fmt("/L/commit_p99") +
                   " µs | S(1) FULL paced, one commit every " +
                   number(at(r, "/L/interval") / 1000, 0) +
                   " ms: the disk idle in between, as at low load (" + fmt("/L/commits_measured") +
                   " commits) |\n| Latency floor p50 / p99 | " + fmt("/L/floor_p50", 1) + " / " +
                   fmt("/L/floor_p99", 1) + " ms | " + fmt("/L/floor_commits") +
                   " such commits and " + fmt("/L/floor_round_trips") +
                   " unpipelined round trips in a row (a saga's path), each drawn from the "
                   "measured samples: the saga latency of this machine without queueing, CPU "
                   "work or wake-ups beyond the measured ones |\n"
             : std::string())
     << "| J | " << fmt("/J/decode_encode_per_s") << range("/J/rounds_decode_encode_per_s", 0)
     << " ops/s | decode a real reply + encode a "
     << "real command, one core (decode alone " << fmt("/J/decode_per_s") << "/s, encode alone "
     << fmt("/J/encode_per_s") << "/s) |\n"
     << "| B* | " << fmt("/C/B_star", 2) << " steps/commit | the engine's average batch at "
     << "saturation (E run) |\n"
     << "| S(B*) | " << fmt("/C/S_at_B_star") << range("/C/S_at_B_star_rounds", 0)
     << " steps/s | S measured at B = " << fmt("/C/S_measured_at_B") << " |\n"
     << "| C | " << fmt("/C/sagas_per_s") << " sagas/s = " << fmt("/C/steps_per_s")
     << " steps/s | the ceiling; per saga the store takes "
     << (has(r, "/C") ? percent(at(r, "/C/share_store")) : "—") << ", the transport "
     << (has(r, "/C") ? percent(at(r, "/C/share_transport")) : "—") << ", the codec "
     << (has(r, "/C") ? percent(at(r, "/C/share_codec")) : "—") << " of it: bound by "
     << (r.contains("C") ? r["C"].value("bound_by", "") : "—") << " |\n\n";

  md << "## The engine end to end (E)\n\n"
     << "| Run | Sagas/s | Steps/s | Steps/commit | Latency p50 | p99 | p99.9 |\n"
     << "|---|---|---|---|---|---|---|\n";
  auto row = [&](const std::string& name, const std::string& base) {
    if (!has(r, base)) return;
    md << "| " << name << " | " << fmt(base + "/sagas_per_s")
       << range(base + "/rounds/sagas_per_s", 0) << " | " << fmt(base + "/steps_per_s") << " | "
       << fmt(base + "/batch_size", 2) << " | " << fmt(base + "/latency_p50", 1) << " ms | "
       << fmt(base + "/latency_p99", 1) << " ms" << range(base + "/rounds/latency_p99_ms", 1)
       << " | " << fmt(base + "/latency_p999", 1) << " ms |\n";
  };
  row("Saturation, " + fmt("/E/saturation/window") + " sagas in flight", "/E/saturation");
  row("Open loop at 50 % of saturation (" + fmt("/E/half/offered_rate") + " sagas/s)", "/E/half");
  if (r.contains("E") && r["E"].contains("light_loads"))
    for (std::size_t i = 0; i < r["E"]["light_loads"].size(); ++i) {
      const std::string base = "/E/light_loads/" + std::to_string(i);
      row("Open loop at " + number(100 * at(r, base + "/fraction_of_saturation")) +
              " % of saturation (" + fmt(base + "/offered_rate") + " sagas/s)",
          base);
    }
  row("Participants not durable (`--durability off`), saturation", "/E/participants_not_durable");
  row("Saturation with " + fmt("/E/prefilled/sagas_in_database") +
          " completed sagas already in the database",
      "/E/prefilled");
  row("Saturation on a fresh database, in rounds alternating with the previous row's",
      "/E/prefilled/fresh");
  row("Batching disabled (`--batch 1 --sync commit`), " + fmt("/E/batching_disabled/window") +
          " sagas in flight",
      "/E/batching_disabled");
  row("Batching disabled, participants not durable, in rounds alternating with the previous "
      "row's",
      "/E/batching_disabled/participants_not_durable");
  md << "\nE/C = **" << fmt("/E/E_over_C", 3)
     << "**. Batching disabled: " << fmt("/E/batching_disabled/steps_over_F", 3) << " x F"
     << (has(r, "/E/batching_disabled/participants_not_durable")
             ? " (" + fmt("/E/batching_disabled/participants_not_durable/steps_over_F", 3) +
                   " x F with the participants not durable)"
             : std::string())
     << ".\n\n";
  auto processes_table = [&](const std::string& phase, const std::string& title) {
    if (!has(r, "/E/" + phase + "/processes")) return;
    auto value = [](const json& use, const char* key, int digits, const std::string& unit) {
      return use.contains(key) ? number(use[key]["value"].get<double>(), digits) + unit
                               : std::string("—");
    };
    md << title
       << ":\n\n| Process | CPU (% of one core) | CPU per saga | Waiting for a core | Busiest "
          "thread: on a core / waiting | Peak RSS |\n|---|---|---|---|---|---|\n";
    for (const auto& [name, use] : r["E"][phase]["processes"].items()) {
      md << "| " << name << " | " << value(use, "cpu", 1, "") << " | "
         << value(use, "cpu_per_saga", 0, " µs") << " | "
         << value(use, "waiting_for_a_core", 1, " %") << " | "
         << (use.contains("busiest_thread_cpu")
                 ? value(use, "busiest_thread_cpu", 1, " %") + " / " +
                       value(use, "busiest_thread_waiting_for_a_core", 1, " %")
                 : std::string("—"))
         << " | " << value(use, "peak_rss", 1, " MiB") << " |\n";
    }
    md << "\n";
  };
  processes_table("saturation", "Processes at saturation");
  processes_table("half", "Processes at 50 % of saturation");
  if (has(r, "/E/saturation/processes"))
    md << "(CPU is over the measured window for every process, the driver included. "
          "\"Waiting for a core\" is the time the process's threads were runnable but every "
          "core was busy (from /proc/<pid>/task/*/schedstat), as % of one core; the busiest "
          "thread of the orchestrator is the engine's loop.)\n\n";
  if (has(r, "/E/saturation") && has(r, "/C")) {
    // Where the time of one step goes, from this run's own figures.
    const double cores = r.value("cores", 1);
    const double cpu_all = at(r, "/E/saturation/cpu_all_processes");
    const double orchestrator_us_per_step =
        at(r, "/E/saturation/processes/orchestrator/cpu_per_saga") / kStepsPerSaga;
    const double store_us_per_step = 1e6 / std::max(at(r, "/C/S_at_B_star"), 1e-9);
    const double store_cpu_us_per_step = at(r, "/C/S_at_B_star_cpu_per_step");
    const double codec_us_per_step =
        1e6 * kCodecOpsPerSaga / kStepsPerSaga / std::max(at(r, "/J/decode_encode_per_s"), 1e-9);
    md << "### What bounds E in this run\n\n"
       << "- The ceiling C is bound by " << r["C"].value("bound_by", "?") << ": per saga the store "
       << percent(at(r, "/C/share_store")) << ", the transport "
       << percent(at(r, "/C/share_transport")) << ", the codec " << percent(at(r, "/C/share_codec"))
       << ".\n"
       << "- At saturation the orchestrator used " << number(orchestrator_us_per_step)
       << " µs of CPU per step. The raw store at B* takes " << number(store_us_per_step)
       << " µs per step, of which " << number(store_cpu_us_per_step)
       << " µs CPU (the rest is waiting for fsync), and the codec " << number(codec_us_per_step, 1)
       << " µs of CPU (3/4 of 1/J): about "
       << number(
              std::max(0.0, orchestrator_us_per_step - store_cpu_us_per_step - codec_us_per_step))
       << " µs of CPU per step is the orchestrator's own work beyond them (state machine, saga "
          "data and journal JSON, lifecycle events, bookkeeping, its ZeroMQ I/O thread and the "
          "sample's intake thread).\n"
       << "- The benchmark's processes used " << number(cpu_all) << " % of one core, the whole "
       << "machine " << fmt("/E/saturation/cpu_machine") << " % of " << number(cores * 100)
       << " % (I/O wait " << fmt("/E/saturation/iowait_machine") << " %): "
       << (at(r, "/E/saturation/cpu_machine") >= 0.9 * cores * 100
               ? (cpu_all >= 0.75 * cores * 100
                      ? "the CPU is the bound."
                      : "the CPU was saturated, partly by other work on the machine, so these "
                        "figures understate what the engine does on a quiet machine.")
               : "the cores were not busy all the time: the rest goes to waiting — for a core "
                 "while another process has it, for fsync in four processes, and for the round "
                 "trips between them.")
       << "\n";
    for (const auto& [phase, label] :
         {std::pair<std::string, std::string>{"saturation", "At saturation"},
          {"half", "At 50 % of saturation"}}) {
      const std::string loop = "/E/" + phase + "/processes/orchestrator/";
      if (!has(r, loop + "busiest_thread_cpu")) continue;
      const double on_core = at(r, loop + "busiest_thread_cpu");
      const double waiting = at(r, loop + "busiest_thread_waiting_for_a_core");
      md << "- " << label << " the engine's loop thread was on a core " << number(on_core, 0)
         << " % of the time and waited for one " << number(waiting, 0) << " % ("
         << fmt("/E/" + phase + "/cpu_all_processes", 0) << " % of one core used by the "
         << "benchmark's processes, "
         << fmt("/E/" + phase + "/processes/orchestrator/cpu_per_saga", 0)
         << " µs of orchestrator CPU per saga)"
         << (waiting >= 10 ? ": the processes sharing the cores delay the loop, so co-location is "
                             "part of the bound"
                           : "");
      if (phase == "half" && has(r, "/E/saturation/processes/orchestrator/cpu_per_saga"))
        md << ". Per saga the orchestrator used "
           << number(at(r, loop + "cpu_per_saga") /
                         std::max(at(r, "/E/saturation/processes/orchestrator/cpu_per_saga"), 1e-9),
                     1)
           << "x the CPU it used at saturation: its turns are smaller ("
           << fmt("/E/half/batch_size", 1)
           << " steps per commit), so each commit's fixed cost (the transaction, its fsync, the "
              "wake-ups) is shared by fewer steps, and the services' batches shrink the same way";
      if (phase == "half" && has(r, "/E/half/cpu_machine") && has(r, "/E/saturation/cpu_machine"))
        md << ". The whole machine was " << fmt("/E/half/cpu_machine", 0) << " % of "
           << number(cores * 100) << " % busy at half of the saturation rate, against "
           << fmt("/E/saturation/cpu_machine", 0) << " % at saturation"
           << (at(r, "/E/half/cpu_machine") >= 0.75 * at(r, "/E/saturation/cpu_machine")
                   ? ": half the throughput does not leave half the machine idle, so at half "
                     "load every hop of a saga still queues for a core, which is what its p99 "
                     "there is made of"
                   : "");
      md << ".\n";
    }
    if (has(r, "/E/half") && r["E"].contains("light_loads")) {
      std::vector<std::pair<double, double>> curve;  // (fraction of saturation, p99 ms)
      for (std::size_t i = 0; i < r["E"]["light_loads"].size(); ++i) {
        const std::string base = "/E/light_loads/" + std::to_string(i);
        curve.emplace_back(at(r, base + "/fraction_of_saturation"), at(r, base + "/latency_p99"));
      }
      curve.emplace_back(0.5, at(r, "/E/half/latency_p99"));
      std::sort(curve.begin(), curve.end());
      md << "- Latency against load (p99):";
      for (std::size_t i = 0; i < curve.size(); ++i)
        md << (i ? "," : "") << " " << number(curve[i].second, 1) << " ms at "
           << number(100 * curve[i].first) << " %";
      md << " of saturation. A saga is 4 orchestrator commits and 3 service commits in a row, "
            "each an fsync, and 6 messages through ZeroMQ's I/O threads; the lighter the load, "
            "the less each of them waits for a core.";
      if (has(r, "/L/floor_p99"))
        md << " Those commits and round trips alone, drawn from the raw measurements (L), put "
              "p99 at "
           << fmt("/L/floor_p99", 1) << " ms and p50 at " << fmt("/L/floor_p50", 1)
           << " ms on this machine: a paced commit takes " << fmt("/L/commit_p50")
           << " µs at p50 and " << fmt("/L/commit_p99") << " µs at p99, against "
           << (has(r, "/F") ? number(1e6 / at(r, "/F")) : std::string("—"))
           << " µs each when commits come back to back (F).";
      md << "\n";
    }
    if (has(r, "/E/participants_not_durable"))
      md << "- With the participants not durable E reaches "
         << fmt("/E/participants_not_durable/sagas_per_s") << " sagas/s, "
         << fmt("/E/participants_not_durable/over_durable_participants", 2) << "x the durable run"
         << (has(r, "/E/participants_not_durable/round_ratios") ? " beside it" : "")
         << ": each service commits (and fsyncs) once per batch of waiting "
            "commands, so durable participants "
         << (at(r, "/E/participants_not_durable/over_durable_participants") >= 1.3
                 ? "are a large part of the bound."
                 : "are not what bounds E here.")
         << "\n";
    if (has(r, "/E/batching_disabled/participants_not_durable")) {
      const double durable = at(r, "/E/batching_disabled/steps_over_F");
      const double light = at(r, "/E/batching_disabled/participants_not_durable/steps_over_F");
      md << "- With batching disabled the engine made " << fmt("/E/batching_disabled/steps_per_s")
         << " steps/s with durable services and "
         << fmt("/E/batching_disabled/participants_not_durable/steps_per_s")
         << " with services not durable, against F = " << fmt("/E/batching_disabled/F")
         << " single-step commits/s of one process on a quiet machine (" << number(durable, 3)
         << " and " << number(light, 3)
         << " x F). Each step is one durable commit in the orchestrator; each command is one more "
            "in a durable service, on the same disk. ";
      if (light >= 1.1 * durable)
        md << "Services that do not fsync lift the ratio by "
           << number(100 * (light / std::max(durable, 1e-9) - 1), 0)
           << " %, which is consistent with the services' fsyncs taking disk time the "
              "orchestrator's commits wait for. ";
      md << (light >= 0.9
                 ? "Without them the engine is within a tenth of F."
                 : "Without them the engine still stays below 0.9 x F: beyond its commits, each "
                   "step's own work (receiving, deciding, sending: the wake-ups of the engine's "
                   "and ZeroMQ's threads and their system calls) and the services and driver "
                   "sharing the two cores are part of the bound.")
         << "\n";
    }
    if (has(r, "/E/profile"))
      md << "- In the orchestrator's profile, `SqliteStore::commit` is on the stack in "
         << percent([&] {
              for (const auto& c : r["E"]["profile"]["components"])
                if (c.value("name", "") == "saga::SqliteStore::commit")
                  return c["share"]["value"].get<double>();
              return 0.0;
            }())
         << " of the samples and JSON in " << percent(at(r, "/E/profile/json_share")) << ".\n";
    md << "\n";
  }

  if (has(r, "/E/in_flight"))
    md << "RSS per in-flight saga: **" << fmt("/E/in_flight/rss_per_in_flight_saga")
       << " bytes** (orchestrator " << fmt("/E/in_flight/orchestrator_rss_before", 1) << " MiB → "
       << fmt("/E/in_flight/orchestrator_rss_with_sagas", 1) << " MiB with "
       << fmt("/E/in_flight/sagas") << " sagas in flight)";
  if (has(r, "/E/in_flight/bounded_cache"))
    md << "; **" << fmt("/E/in_flight/bounded_cache/rss_per_in_flight_saga")
       << " bytes** with the orchestrator's saga cache and send queue at "
       << fmt("/E/in_flight/bounded_cache/saga_cache") << " (`--saga-cache`, `--send-queue`; "
       << fmt("/E/in_flight/bounded_cache/orchestrator_rss_before", 1) << " MiB → "
       << fmt("/E/in_flight/bounded_cache/orchestrator_rss_with_sagas", 1)
       << " MiB): past the cache the engine keeps no saga, and past the send queue no command "
          "for the stopped service, only in the outbox; the rest of this figure is what ZeroMQ "
          "queued before it refused, SQLite's page cache and the sample intake";
  if (has(r, "/E/in_flight")) md << ".\n\n";
  if (has(r, "/E/profile")) {
    const json& p = r["E"]["profile"];
    auto escape = [](std::string text) {
      for (char& c : text)
        if (c == '|') c = '/';
      return text;
    };
    md << "### Where the orchestrator's CPU goes at saturation\n\n"
       << "perf with DWARF call graphs on the orchestrator, " << fmt("/E/profile/samples")
       << " samples. JSON (nlohmann) is on the stack in **"
       << percent(at(r, "/E/profile/json_share")) << "** of the orchestrator's samples ("
       << percent(at(r, "/E/profile/json_share_engine_loop"))
       << " of the engine loop thread's).\n\n| Component (a frame on the stack) | Share |\n"
       << "|---|---|\n";
    for (const auto& c : p["components"])
      md << "| " << escape(c.value("name", "")) << " | "
         << percent(c["share"]["value"].get<double>()) << " |\n";
    md << "\n| Thread | Share |\n|---|---|\n";
    for (const auto& t : p["threads"])
      md << "| " << escape(t.value("name", "")) << " | "
         << percent(t["share"]["value"].get<double>()) << " |\n";
    md << "\n| Hottest functions (self) | Share |\n|---|---|\n";
    for (const auto& f : p["top_self"])
      md << "| `" << escape(f.value("name", "")) << "` | "
         << percent(f["share"]["value"].get<double>()) << " |\n";
    md << "\n";
  }

  md << R"(## What each figure means

- **Step**: one input the engine applies — a saga start or a reply. A completed 3-step order saga
  is 4 steps (start, `inventory.Reserved`, `payment.Charged`, `shipping.Shipped`), 3 transport
  round trips and 3 codec operations. Steps/s is counted by the orchestrator's own counters
  (`sagas_started + messages_applied`, read through its intake socket's `stats` op).
- **S(B)**: store steps per second with B steps per transaction. saga_bench first runs one order
  saga through a real `saga::Engine` (batch size 1, in-memory transport) and captures every
  `WriteBatch` it commits — the saga row insert/update, the journal rows, the outbox rows, the
  inbox id, the dispatch and reply marks. It then replays those batches through
  `saga::SqliteStore::commit` for fresh sagas (every UUID replaced, also inside payloads), B
  sagas' steps per transaction, on a new database file (WAL). FULL is the store's durable mode:
  COMMIT writes the WAL and `SqliteStore::sync()` fdatasyncs it, both timed, as when the engine
  syncs after a turn on its own thread (the store's default `sync_in_background` leaves the fsync
  out of `commit`; saga_bench from 9338681 to f82157c timed `commit` alone, so its FULL figures
  lacked the fsync). NORMAL is `synchronous=NORMAL` without any sync. Each configuration first commits
  untimed until the WAL file is being reused (its size unchanged for 20 commits), as in a running
  engine: while a new WAL grows, every fsync also commits file-system metadata and is several
  times slower. Then only the time inside `commit` (and `sync`) counts.
  Reads (the inbox lookup per reply) are not included.
- **F**: S(1) with FULL: one step per durable transaction, the rate a one-message-per-transaction
  engine cannot beat.
- **Cores kept awake**: S, F, L, Z and J may be measured while one `SCHED_IDLE` thread per core
  spins (it runs only when a core would otherwise halt). On a virtual machine where a halted vCPU
  takes milliseconds to wake for an I/O completion, a process alone waiting on fsync measures the
  wake-up rather than the disk: on the 2-core VM this benchmark was written on, S(1) FULL was ~270
  commits/s alone and ~2,000–4,000 with the cores kept awake (or with four processes committing at
  once). On another hypervisor the spinning vCPUs take host time from the virtual disk and network
  instead: on the Firecracker VM of later runs, F was a fifth lower with them, Z's round trip
  twice as long and L's p99 three to five times. So by default (`--keep-awake auto`) a short
  calibration measures S(1) FULL three times each way, alternating, and all the raw limits are
  measured the way that gave the higher median (`keep_awake_calibration` in the JSON): the choice
  is made on F alone, the figure the spinners were for, and applies to Z, J and L as well; `on`
  and `off` force it. The E runs keep the cores busy by themselves and never use the spinners.
- **L**: S(1) with FULL again, paced: one commit every 2 ms, so the disk is idle between
  commits as it is between the small turns of a lightly loaded process (on a virtual disk an
  fsync after a pause can take several times one issued back to back). Every round's commits are
  pooled for the percentiles. The **latency floor** draws 7 of these commits (a saga's start and
  three replies in the orchestrator, one command in each service) and 3 unpipelined round trips
  (Z's samples) at random, 100,000 times, and reports the percentiles of the sum: what a saga's
  latency would be on this machine if nothing else took time, queued or waited for a core.
- **Z**: ZeroMQ round trips per second between a ROUTER (the orchestrator's socket) and a DEALER
  (a participant's) in two contexts over tcp://127.0.0.1, with the engine's framing
  (`[identity][MESSAGE][envelope]`) and its real, largest command (`inventory.Reserve`) out and
  the real reply back; pipelined with 256 outstanding. The RTT percentiles are one at a time.
- **J**: decode a real reply envelope (`saga::decode_envelope`) plus encode a real command
  (`saga::encode_envelope`), cycling over the saga's three steps, on one core.
- **C** = 1 / (4/S(B*) + 3/Z + 3/J) sagas/s: the ceiling when a saga's store work, round trips
  and codec work are done one after the other, with S at the batch size B* the engine achieved
  in the E run (measured right after that run, at exactly that B). Expressed in steps/s it is 4 x
  that.
- **E**: `samples/order_orchestrator` (durable, `--durability full` unless told otherwise) and
  `inventory_service`, `payment_service`, `shipping_service` (each with its own SQLite ledger,
  all succeeding) as separate processes over tcp loopback; `samples/order_driver --track
  outcomes` places the orders. *Saturation*: a closed loop with a fixed number of sagas in flight
  (`--window`); sagas/s, steps/s and steps per commit are the engine's counters over the middle
  of the run, and CPU is from `/proc/PID/stat` over the same window. *Half*: an open loop at half
  the saturation rate; a saga's latency runs from its scheduled start to the moment the
  orchestrator reported its outcome (after the commit that ended it), so queueing is never
  hidden. *Lighter loads* (`--light-loads`, default 10 % and 25 %): the same open loop at those
  fractions of the saturation rate, to show latency against load down to an almost idle
  cluster. Peak RSS is `VmHWM` from `/proc/PID/status`.
- **RSS per in-flight saga**: a fresh cluster; the inventory service is stopped (SIGSTOP), N
  sagas are started and committed (each waits on `inventory.Reserve`), and the orchestrator's
  `VmRSS` growth is divided by N. It includes the engine's saga cache, each saga's open command,
  the commands queued for the stopped service (in ZeroMQ's queue and, past its high-water mark
  of 10,000 and the socket buffers, in the engine's send queue, with their bytes: N is 40,000 so
  that they get there), SQLite's page cache growing towards its 16 MiB
  bound, and the sample intake's set of sagas in flight; then the service continues and every
  saga must complete. The second figure is the same run with the orchestrator's saga cache and
  send queue at a tenth of N (`--saga-cache`, `--send-queue`): the sagas the cache let go are
  read back from the store when their replies come, and the commands past the send queue wait
  in the outbox only, read back in order as the service takes the queued ones. `saga_engine_loop --waiting N` isolates the engine's own heap per waiting saga
  (docs/architecture.md, "The saga cache is bounded").
- **Participants not durable**: a saturation run with the three services on `--durability off`,
  against one with durable services: two clusters side by side, driven in alternating rounds
  (the durable one first in odd rounds, second in even ones), and the ratio is the median of the
  rounds' ratios, so drift in the machine's speed falls on both alike. Each service handles the commands waiting together in one transaction (the
  participant SDK's group commit, `ParticipantOptions::max_batch`), so with durable ledgers every
  batch costs the service an fsync; this run shows how much of E that costs, and how fast the
  engine goes when participants are cheap.
- **Sagas in the database**: a saturation run on a database that already holds N completed
  sagas (the captured batches replayed through `SqliteStore::commit`, without fsync, before the
  orchestrator starts), against one on a fresh database (a few thousand sagas by the end of its
  warm-up), side by side in alternating rounds like the previous phase; the throughput ratio is
  the median of the rounds' ratios, and the RSS growth compares the two orchestrators' peaks.
- **Batching disabled**: the same saturation run with `order_orchestrator --batch 1 --sync
  commit` (one input per transaction, and the fsync inside each COMMIT: with the store's sync
  thread, the default, the commits made during one fsync share the next one, which is batching
  again), on two clusters in alternating rounds: one with durable services (the target's figure)
  and one with the services on `--durability off`. F is measured in every round between the two
  clusters' runs, while both idle, and each cluster's steps/s in a round is compared with that
  F; each ratio is the median of its rounds' ratios (fsync times drift with whatever else the
  machine does; the F in the raw-limits table is from the start). F is one process committing
  on an otherwise quiet disk and machine; durable services fsync on the same disk, and every
  service, durable or not, shares the two cores, so the second cluster shows how much of the
  gap the services' fsyncs make.
- **Sync**: every other E phase runs the orchestrator as shipped, with `--sync background`: COMMIT
  writes the WAL and a thread of the store fsyncs it while the loop goes on; nothing a turn sends
  or reports leaves before that fsync (docs/architecture.md, "Durable without waiting").
- **E/C**: E's steps/s at saturation over C's.
- **Rounds** (`--rounds`, default 3): every figure is a median. Each raw limit (every S(B), Z, J,
  S(B*) and the F beside the unbatched rounds) is measured that many times and the median round is
  reported; each E phase is driven that many times for its duration divided by the count, and
  reported as the round with the median sagas/s (its steps/commit, CPU and RSS) with each
  latency percentile replaced by its median over the rounds. The range over the rounds is shown
  in parentheses: on a shared virtual machine single runs of the same code differ by 20 %.
- **Waiting for a core**: from `/proc/PID/task/*/schedstat`, the time a process's threads were
  runnable while every core was busy with something else. For the orchestrator the busiest
  thread is the engine's loop; its time on a core plus its time waiting for one is how much of
  the window it could have worked.

The driver checks the business invariants in the services' ledgers after the saturation and
half-rate runs (every order reserved, charged once and shipped); a violation fails the benchmark.
The micro-benchmarks (`saga_microbench`, Google Benchmark) time the order saga's Boost.MSM
dispatch, the envelope codec and the store operations in isolation, to catch regressions.
)";
  return md.str();
}

}  // namespace bench
