// The crash test (docs/reliability.md, "Crash test"): runs the order flow as separate processes
// (crash_orchestrator and the inventory, payment and shipping services) and kills them with
// SIGKILL at every named crash point, several times each, restarting whatever died. Then it
// checks that every saga ended Completed or Compensated, that the services' ledgers show at most
// one effect per saga and step, that no compensation was sent for a step that neither ran nor
// was given up on, and that the database is intact. Exit code 0 when all hold, 1 otherwise, 2
// for bad flags.
//
// With --stall-ms it kills nothing: one service stops polling for that long after its first 20
// commands (the services' --pause-ms), while the orchestrator gives up on a charge after
// --charge-attempts sends. The stalled payment service then finds charges the sagas gave up on
// and compensated: the ledgers must still balance.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ledger_check.hpp"
#include "saga/detail/crash_point.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Process {
  pid_t pid = -1;
  std::string name;
};

Process spawn(const std::string& name, const std::vector<std::string>& args,
              const std::map<std::string, std::string>& env, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
    std::FILE* out = std::fopen(log.c_str(), "a");
    if (out) ::dup2(::fileno(out), STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  return {pid, name};
}

// How a process ended: nullopt while it runs; else the signal (negative) or the exit code.
std::optional<int> ended(Process& process) {
  if (process.pid <= 0) return 0;
  int status = 0;
  pid_t done = ::waitpid(process.pid, &status, WNOHANG);
  if (done == 0) return std::nullopt;
  process.pid = -1;
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

void stop(Process& process) {
  if (process.pid <= 0) return;
  ::kill(process.pid, SIGTERM);
  for (int i = 0; i < 100 && !ended(process); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  if (process.pid > 0) {
    ::kill(process.pid, SIGKILL);
    ::waitpid(process.pid, nullptr, 0);
    process.pid = -1;
  }
}

struct Plan {
  std::string point;
  int after;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Kills the order flow's processes at every crash point and checks the outcome."};
  std::string bin_dir, orchestrator_path, work = "crash-test";
  int sagas = 200, crashes_per_point = 1, rate = 400, timeout_s = 300;
  std::uint64_t seed = 1;
  int stall_ms = 0, charge_attempts = 0;
  std::size_t saga_cache = 100000;
  std::size_t send_queue = 10000;
  std::string stall_service = "payment";
  app.add_option("--samples", bin_dir, "Directory of the built samples (services/...)")->required();
  app.add_option("--orchestrator", orchestrator_path, "The crash_orchestrator program")->required();
  app.add_option("--work", work, "Scratch directory (recreated)")->capture_default_str();
  app.add_option("--sagas", sagas, "Sagas in the run")->check(CLI::Range(1, 1000000));
  app.add_option("--crashes-per-point", crashes_per_point, "Kills at each crash point")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rate", rate, "Saga starts per second")->check(CLI::Range(1, 100000));
  app.add_option("--seed", seed, "Seed of the crash schedule")->capture_default_str();
  app.add_option("--timeout", timeout_s, "Seconds before giving up")->check(CLI::Range(1, 86400));
  app.add_option("--stall-ms", stall_ms, "Instead of killing: a service pauses this long, once")
      ->check(CLI::Range(0, 600000));
  app.add_option("--stall-service", stall_service, "The service --stall-ms stops")
      ->check(CLI::IsMember({"inventory", "payment", "shipping"}))
      ->capture_default_str();
  app.add_option("--charge-attempts", charge_attempts,
                 "The orchestrator gives up on a charge after this many sends (0: never)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--saga-cache", saga_cache,
                 "The orchestrator's saga cache (below the sagas in flight: they are read back)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--send-queue", send_queue,
                 "The orchestrator's send queue per participant (past it, commands wait in the "
                 "outbox only and are read back)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  fs::remove_all(work);
  fs::create_directories(work);
  const fs::path dir = fs::absolute(work);
  const std::string db = (dir / "orchestrator.db").string();
  std::mt19937_64 random(seed);
  std::vector<Plan> plan;  // round-robin over the points, so each is reached early
  for (int round = 0; round < (stall_ms > 0 ? 0 : crashes_per_point); ++round)
    for (std::string_view point : saga::detail::kCrashPoints)
      plan.push_back({std::string(point), 1 + static_cast<int>(random() % 12)});

  std::string router = "tcp://127.0.0.1:*";
  auto start_orchestrator = [&](const std::map<std::string, std::string>& env) {
    fs::remove(dir / "endpoints");
    Process process = spawn(
        "orchestrator",
        {orchestrator_path, "--db", db, "--router", router, "--endpoints-file",
         (dir / "endpoints").string(), "--sagas", std::to_string(sagas), "--rate",
         std::to_string(rate), "--charge-attempts", std::to_string(charge_attempts), "--saga-cache",
         std::to_string(saga_cache), "--send-queue", std::to_string(send_queue)},
        env, dir / "orchestrator.log");
    for (int i = 0; i < 500 && !fs::exists(dir / "endpoints"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    std::ifstream in(dir / "endpoints");
    std::string line;
    std::getline(in, line);
    if (line.rfind("router=", 0) == 0) router = line.substr(7);  // the same port next time
    return process;
  };
  const std::vector<std::string> services = {"inventory", "payment", "shipping"};
  std::map<std::string, Process> running;
  auto start_service = [&](const std::string& name, const std::map<std::string, std::string>& env,
                           std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {bin_dir + "/services/" + name + "_service",
                                     "--orchestrator",
                                     router,
                                     "--instance",
                                     name + "-1",
                                     "--db",
                                     (dir / (name + ".db")).string(),
                                     "--heartbeat-ms",
                                     "100"};
    args.insert(args.end(), extra.begin(), extra.end());
    running[name] = spawn(name, args, env, dir / (name + ".log"));
  };

  auto deadline = Clock::now() + std::chrono::seconds{timeout_s};
  std::map<std::string, int> kills;
  int restarts = 0, unreached = 0;
  std::size_t participant_kills = 0;
  auto began = Clock::now();
  running["orchestrator"] = start_orchestrator({});
  for (const auto& name : services) {
    if (stall_ms > 0 && name == stall_service) {
      start_service(name, {}, {"--pause-after", "20", "--pause-ms", std::to_string(stall_ms)});
      std::cout << "  " << name << " pauses for " << stall_ms << " ms after 20 commands\n";
    } else {
      start_service(name, {});
    }
  }
  bool finished = false;

  for (std::size_t step = 0; step < plan.size() && !finished; ++step) {
    const Plan& crash = plan[step];
    std::map<std::string, std::string> env = {{"SAGA_CRASH_POINT", crash.point},
                                              {"SAGA_CRASH_AFTER", std::to_string(crash.after)}};
    std::string victim = crash.point.rfind("engine.", 0) == 0
                             ? "orchestrator"
                             : services[participant_kills++ % services.size()];
    stop(running[victim]);
    if (victim == "orchestrator")
      running[victim] = start_orchestrator(env);
    else
      start_service(victim, env);
    std::cout << "  [" << step + 1 << "/" << plan.size() << "] " << victim << " armed at "
              << crash.point << " (hit " << crash.after << ")" << std::flush;
    std::optional<int> how;
    while (!(how = ended(running[victim])) && Clock::now() < deadline) {
      if (victim != "orchestrator" && ended(running["orchestrator"])) break;  // all sagas ended
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    if (how && *how == -SIGKILL) {
      ++kills[crash.point];
      std::cout << ": killed\n";
    } else {
      ++unreached;
      std::cout << ": not reached before the sagas ended\n";
    }
    ++restarts;
    if (victim == "orchestrator" && how && *how == 0) finished = true;
    // Bring the victim back without a crash point (the orchestrator ends when all sagas did).
    if (victim == "orchestrator") {
      if (!finished) running[victim] = start_orchestrator({});
    } else {
      stop(running[victim]);
      start_service(victim, {});
      if (auto done = ended(running["orchestrator"]); done && *done == 0) finished = true;
    }
  }
  std::optional<int> final_exit;
  if (!finished) {
    while (!(final_exit = ended(running["orchestrator"])) && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    if (final_exit && *final_exit != 0) {
      std::cout << "  the orchestrator exited with " << *final_exit << "; restarting it\n";
      running["orchestrator"] = start_orchestrator({});
      while (!(final_exit = ended(running["orchestrator"])) && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  }
  for (auto& [name, process] : running) stop(process);
  double seconds = std::chrono::duration<double>(Clock::now() - began).count();

  std::vector<std::string> violations;
  std::map<std::string, int> by_status;
  long long given_up = 0;
  try {
    order_check::ReadOnlyDatabase orchestrator(db);
    std::vector<order_check::PlacedOrder> orders;
    for (auto& row : orchestrator.rows("SELECT id, status, data FROM sagas ORDER BY created_at")) {
      by_status[row[1]]++;
      std::string status = row[1] == "Running" || row[1] == "Compensating" ? "" : row[1];
      orders.push_back({row[0], nlohmann::json::parse(row[2]).get<order::OrderData>(), status});
    }
    if (static_cast<int>(orders.size()) != sagas)
      violations.push_back(std::to_string(orders.size()) + " sagas in the database, expected " +
                           std::to_string(sagas));
    auto ledger_violations =
        order_check::check_ledgers(orders,
                                   {(dir / "inventory.db").string(), (dir / "payment.db").string(),
                                    (dir / "shipping.db").string()},
                                   "is stuck (did not end)");
    violations.insert(violations.end(), ledger_violations.begin(), ledger_violations.end());
    // A compensation answers a step that ran (its saga applied that step's success reply) or
    // one the saga gave up on (a timed_out entry names its command), which may have run.
    for (auto& row : orchestrator.rows(
             "SELECT o.saga_id, o.message_type FROM outbox o WHERE o.compensation = 1 AND NOT "
             "EXISTS (SELECT 1 FROM journal j WHERE j.saga_id = o.saga_id AND ((j.kind = "
             "'message_in' AND j.message_type = CASE o.message_type WHEN 'inventory.Release' "
             "THEN 'inventory.Reserved' WHEN 'payment.Refund' THEN 'payment.Charged' END) OR "
             "(j.kind = 'timed_out' AND j.message_type = CASE o.message_type WHEN "
             "'inventory.Release' THEN 'inventory.Reserve' WHEN 'payment.Refund' THEN "
             "'payment.Charge' END)))"))
      violations.push_back("saga " + row[0] + " sent " + row[1] +
                           " for a step that neither ran nor was given up on");
    given_up = orchestrator.number("SELECT count(*) FROM journal WHERE kind = 'timed_out'");
    for (auto& row : orchestrator.rows("PRAGMA integrity_check"))
      if (row[0] != "ok") violations.push_back("integrity_check: " + row[0]);
  } catch (const std::exception& error) {
    violations.push_back(std::string("cannot check: ") + error.what());
  }

  int total_kills = 0;
  for (const auto& [point, count] : kills) total_kills += count;
  std::cout << "Sagas       " << sagas << " (Completed " << by_status["Completed"]
            << ", Compensated " << by_status["Compensated"] << ", Failed " << by_status["Failed"]
            << ", Running " << by_status["Running"] + by_status["Compensating"] << ")\n"
            << "Kills       " << total_kills << " by SIGKILL at crash points (";
  for (const auto& [point, count] : kills) std::cout << point << " " << count << " ";
  std::cout << "), " << unreached << " armed but not reached, " << restarts << " restarts\n"
            << "Given up    " << given_up << " command(s)\n"
            << "Elapsed     " << seconds << " s\n";
  for (std::string_view point : saga::detail::kCrashPoints)
    if (!plan.empty() && !kills.contains(std::string(point)))
      violations.push_back("crash point " + std::string(point) + " was never reached");
  if (stall_ms > 0 && charge_attempts > 0 && given_up == 0)
    violations.push_back("the stall made the orchestrator give up on nothing: nothing tested");
  if (violations.empty()) {
    std::cout << "Invariants  ok: every saga ended Completed or Compensated; at most one effect "
                 "per saga and step; no compensation for a step that neither ran nor was given "
                 "up on; integrity ok\n";
    return 0;
  }
  std::cout << "Invariants  VIOLATED (" << violations.size() << "):\n";
  for (std::size_t i = 0; i < std::min<std::size_t>(violations.size(), 20); ++i)
    std::cout << "  - " << violations[i] << "\n";
  return 1;
}
