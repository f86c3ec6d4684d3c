#include "end_to_end.hpp"
#include "report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <zmq.hpp>

extern char** environ;

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

void say(const std::string& line) {
  std::cout << line << std::endl;
}

std::string fixed(double value, int decimals = 1) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(decimals);
  out << value;
  return out.str();
}

// A child process; stopped (SIGTERM, then SIGKILL after 10 s) when destroyed.
class Child {
 public:
  // `log` empty: the child shares our stdout and stderr.
  Child(std::string name, const std::vector<std::string>& args, const std::string& log)
      : name_(std::move(name)) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!log.empty()) {
      posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                       0644);
      posix_spawn_file_actions_adddup2(&actions, 1, 2);
    }
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  bool running() const { return pid_ > 0; }

  // Waits for the child to exit on its own; returns its exit status.
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  void signal(int number) const {
    if (pid_ > 0) ::kill(pid_, number);
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds{10};
    while (!exited() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
};

struct ThreadTimes {
  double on_cpu_s = 0;    // /proc/<pid>/task/<tid>/schedstat, first field
  double runnable_s = 0;  // waiting on a run queue for a core, second field
};

struct ProcSample {
  double cpu_s = 0;
  double rss_kib = 0;
  double hwm_kib = 0;
  std::map<std::string, ThreadTimes> threads;  // by tid
};

ProcSample sample_process(pid_t pid) {
  ProcSample sample;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
    double utime = 0, stime = 0;
    for (int index = 3; index <= 15 && fields >> field; ++index) {
      if (index == 14) utime = std::stod(field);
      if (index == 15) stime = std::stod(field);
    }
    sample.cpu_s = (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) sample.rss_kib = std::stod(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) sample.hwm_kib = std::stod(line.substr(6));
  }
  std::error_code error;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
    std::ifstream schedstat(task.path() / "schedstat");
    double on_cpu_ns = 0, runnable_ns = 0;
    if (schedstat >> on_cpu_ns >> runnable_ns)
      sample.threads[task.path().filename().string()] = {on_cpu_ns / 1e9, runnable_ns / 1e9};
  }
  return sample;
}

// Over the window between two samples of one process: its threads' time waiting for a core, and
// the busiest thread's (for the orchestrator, the engine's loop) time on and waiting for a core.
void add_scheduling(const ProcSample& first, const ProcSample& second, double seconds,
                    ProcessUse& use) {
  double runnable_s = 0, busiest_on_cpu_s = -1, busiest_runnable_s = 0;
  for (const auto& [tid, end] : second.threads) {
    auto begin = first.threads.find(tid);
    const ThreadTimes start = begin == first.threads.end() ? ThreadTimes{} : begin->second;
    const double on_cpu = end.on_cpu_s - start.on_cpu_s,
                 runnable = end.runnable_s - start.runnable_s;
    runnable_s += runnable;
    if (on_cpu > busiest_on_cpu_s) {
      busiest_on_cpu_s = on_cpu;
      busiest_runnable_s = runnable;
    }
  }
  if (seconds <= 0 || busiest_on_cpu_s < 0) return;
  use.runnable_percent = 100.0 * runnable_s / seconds;
  use.busiest_thread_cpu_percent = 100.0 * busiest_on_cpu_s / seconds;
  use.busiest_thread_runnable_percent = 100.0 * busiest_runnable_s / seconds;
}

// Machine-wide CPU time from /proc/stat, in clock ticks.
struct MachineSample {
  double busy = 0, iowait = 0, total = 0;
};

MachineSample sample_machine() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  MachineSample sample;
  sample.total = user + nice + system + idle + iowait + irq + softirq + steal;
  sample.busy = sample.total - idle - iowait;
  sample.iowait = iowait;
  return sample;
}

// A REQ client of the orchestrator's intake socket.
class IntakeClient {
 public:
  explicit IntakeClient(const std::string& endpoint) : socket_(context_, zmq::socket_type::req) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 30000);
    socket_.connect(endpoint);
  }
  nlohmann::json call(const nlohmann::json& request) {
    socket_.send(zmq::buffer(request.dump()), zmq::send_flags::none);
    zmq::message_t reply;
    if (!socket_.recv(reply)) throw std::runtime_error("the orchestrator did not answer in 30 s");
    auto json = nlohmann::json::parse(reply.to_string());
    if (!json.value("ok", false))
      throw std::runtime_error("intake refused: " + json.value("error", std::string("?")));
    return json;
  }
  nlohmann::json stats() { return call({{"op", "stats"}})["stats"]; }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

struct EngineSnapshot {
  Clock::time_point at;
  nlohmann::json stats;
};

EngineWindow difference(const EngineSnapshot& from, const EngineSnapshot& to) {
  auto delta = [&](const char* key) {
    return to.stats.at(key).get<std::uint64_t>() - from.stats.at(key).get<std::uint64_t>();
  };
  EngineWindow window;
  window.seconds = std::chrono::duration<double>(to.at - from.at).count();
  window.steps = delta("sagas_started") + delta("messages_applied");
  window.commits = delta("commits");
  window.sagas_ended =
      delta("sagas_completed") + delta("sagas_compensated") + delta("sagas_failed");
  window.command_resends = delta("command_resends");
  return window;
}

const char* const kServices[] = {"inventory", "payment", "shipping"};

// The orchestrator and the three services, on fresh databases in cluster.work_dir.
class Cluster {
 public:
  explicit Cluster(const ClusterOptions& options) : options_(options) {
    fs::remove_all(options.work_dir);
    fs::create_directories(options.work_dir);
    const fs::path work(options.work_dir);
    const fs::path samples(options.samples_dir);
    const std::string endpoints_file = (work / "endpoints").string();
    if (options.prepare_database) options.prepare_database((work / "orchestrator.db").string());
    orchestrator_ = std::make_unique<Child>(
        "orchestrator",
        std::vector<std::string>{(samples / "order_orchestrator" / "order_orchestrator").string(),
                                 "--router",
                                 "tcp://127.0.0.1:*",
                                 "--events",
                                 "tcp://127.0.0.1:*",
                                 "--intake",
                                 "tcp://127.0.0.1:*",
                                 "--db",
                                 (work / "orchestrator.db").string(),
                                 "--durability",
                                 options.durability,
                                 "--sync",
                                 options.sync,
                                 "--batch",
                                 std::to_string(options.max_batch),
                                 "--saga-cache",
                                 std::to_string(options.saga_cache),
                                 "--send-queue",
                                 std::to_string(options.send_queue),
                                 "--endpoints-file",
                                 endpoints_file},
        (work / "orchestrator.log").string());
    const auto deadline = Clock::now() + std::chrono::seconds{20};
    while (!fs::exists(endpoints_file)) {
      if (orchestrator_->exited() || Clock::now() > deadline)
        throw std::runtime_error("the orchestrator did not start; see " +
                                 (work / "orchestrator.log").string());
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    std::ifstream in(endpoints_file);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("router=", 0) == 0) router_ = line.substr(7);
      if (line.rfind("intake=", 0) == 0) intake_ = line.substr(7);
    }
    const std::string plenty = "1000000000000";
    for (const char* service : kServices) {
      std::vector<std::string> args = {
          (samples / "services" / (std::string(service) + "_service")).string(),
          "--orchestrator",
          router_,
          "--instance",
          std::string(service) + "-1",
          "--db",
          (work / (std::string(service) + ".db")).string(),
          "--durability",
          options.participant_durability};
      if (std::string(service) == "inventory") {
        args.push_back("--stock");
        std::string stock;
        for (const char* sku : {"sku-pen", "sku-book", "sku-lamp", "sku-chair", "sku-gold"})
          stock += (stock.empty() ? "" : ",") + std::string(sku) + "=" + plenty;
        args.push_back(stock);
      } else if (std::string(service) == "payment") {
        args.insert(args.end(), {"--decline-rate", "0", "--decline-above", plenty});
      } else {
        args.insert(args.end(), {"--failure-rate", "0"});
      }
      services_.push_back(std::make_unique<Child>(
          service, args, (work / (std::string(service) + ".log")).string()));
    }
    intake_client_ = std::make_unique<IntakeClient>(intake_);
    intake_client_->stats();  // answers once the engine is up
  }

  ~Cluster() {
    for (auto& service : services_) service->stop();
    if (orchestrator_) orchestrator_->stop();
    if (options_.keep_databases) return;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(options_.work_dir, error)) {
      const std::string name = entry.path().filename().string();
      if (name.find(".db") != std::string::npos && name.find(".perf.") == std::string::npos)
        fs::remove(entry.path(), error);
    }
  }

  const std::string& intake() const { return intake_; }
  IntakeClient& client() { return *intake_client_; }
  Child& orchestrator() { return *orchestrator_; }
  Child& service(const std::string& name) {
    for (auto& child : services_)
      if (child->name() == name) return *child;
    throw std::logic_error("no service " + name);
  }
  std::vector<Child*> processes() {
    std::vector<Child*> all = {orchestrator_.get()};
    for (auto& child : services_) all.push_back(child.get());
    return all;
  }
  void check_alive() {
    for (Child* child : processes())
      if (child->exited())
        throw std::runtime_error("the " + child->name() + " process stopped; see its log in " +
                                 options_.work_dir);
  }

  EngineSnapshot snapshot() { return {Clock::now(), intake_client_->stats()}; }

  // Runs the order driver with `extra` flags; samples the engine and the processes over the
  // middle of its placing time (from `margin` after its start to `margin` before the end).
  PhaseResult drive(const std::string& label, std::vector<std::string> extra, double duration_s,
                    bool check_invariants) {
    const fs::path work(options_.work_dir);
    const std::string summary_file = (work / (label + ".json")).string();
    fs::remove(summary_file);
    std::vector<std::string> args = {
        (fs::path(options_.samples_dir) / "order_driver" / "order_driver").string(),
        "--intake",
        intake_,
        "--track",
        "outcomes",
        "--duration",
        fixed(duration_s, 3),
        "--first-order",
        std::to_string(next_order_),
        "--json",
        summary_file,
        "--timeout",
        "120",
        "--inventory-db",
        (work / "inventory.db").string(),
        "--payment-db",
        (work / "payment.db").string(),
        "--shipping-db",
        (work / "shipping.db").string()};
    next_order_ += 10000000;  // 10 million orders per drive at most
    if (!check_invariants) args.push_back("--skip-invariants");
    args.insert(args.end(), extra.begin(), extra.end());

    const double margin = std::min(2.0, duration_s * 0.15);
    const auto started = Clock::now();
    Child driver("driver", args, "");
    auto at = [&](double seconds) {
      return started +
             std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    };
    std::this_thread::sleep_until(at(margin));
    EngineSnapshot first = snapshot();
    const MachineSample machine_first = sample_machine();
    std::map<std::string, ProcSample> cpu_first;
    for (Child* child : processes()) cpu_first[child->name()] = sample_process(child->pid());
    const ProcSample driver_first = sample_process(driver.pid());
    std::this_thread::sleep_until(at(duration_s - margin));
    EngineSnapshot second = snapshot();
    const MachineSample machine_second = sample_machine();
    std::map<std::string, ProcSample> cpu_second;
    for (Child* child : processes()) cpu_second[child->name()] = sample_process(child->pid());
    const ProcSample driver_second = sample_process(driver.pid());
    const int exit_code = driver.wait();
    check_alive();
    std::ifstream in(summary_file);
    if (!in)
      throw std::runtime_error("the driver wrote no summary (exit " + std::to_string(exit_code) +
                               ")");
    PhaseResult result;
    in >> result.driver;
    result.driver["exit_code"] = exit_code;
    result.engine = difference(first, second);
    const double cores = std::max(1u, std::thread::hardware_concurrency());
    const double ticks = std::max(machine_second.total - machine_first.total, 1.0);
    result.machine_cpu_percent = 100 * cores * (machine_second.busy - machine_first.busy) / ticks;
    result.machine_iowait_percent =
        100 * cores * (machine_second.iowait - machine_first.iowait) / ticks;
    const double sagas = static_cast<double>(std::max<std::uint64_t>(result.engine.sagas_ended, 1));
    // Every process over the same window, the driver included (its whole life would add its
    // start-up and its final check of the services' ledgers).
    cpu_first["driver"] = driver_first;
    cpu_second["driver"] = driver_second;
    for (const auto& [name, b] : cpu_second) {
      const ProcSample& a = cpu_first[name];
      ProcessUse use;
      use.cpu_percent = 100.0 * (b.cpu_s - a.cpu_s) / result.engine.seconds;
      use.cpu_us_per_saga = 1e6 * (b.cpu_s - a.cpu_s) / sagas;
      use.peak_rss_kib = b.hwm_kib;
      add_scheduling(a, b, result.engine.seconds, use);
      result.processes[name] = use;
    }
    if (exit_code != 0)
      throw std::runtime_error("the order driver failed (exit " + std::to_string(exit_code) +
                               "): a saga did not end or an invariant does not hold");
    return result;
  }

 private:
  ClusterOptions options_;
  std::unique_ptr<Child> orchestrator_;
  std::vector<std::unique_ptr<Child>> services_;
  std::string router_, intake_;
  std::unique_ptr<IntakeClient> intake_client_;
  int next_order_ = 0;
};

std::string run_command(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return output;
  char buffer[65536];
  std::size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, read);
  ::pclose(pipe);
  return output;
}

// perf with DWARF call graphs on the orchestrator; a sample counts for a component when one of
// its frames is on the stack.
std::optional<ProfileResult> profile_orchestrator(Cluster& cluster, const std::string& work_dir,
                                                  double seconds, std::size_t window) {
  if (run_command("command -v perf").empty()) {
    say("  perf is not installed: no profile");
    return std::nullopt;
  }
  const std::string data = (fs::path(work_dir) / "orchestrator.perf.data").string();
  const std::string record = "perf record -q --call-graph dwarf,16384 -F 499 -p " +
                             std::to_string(cluster.orchestrator().pid()) + " -o " + data +
                             " -- sleep " + fixed(seconds, 1) + " >/dev/null 2>&1";
  std::thread recorder([&] { (void)std::system(record.c_str()); });
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  try {
    cluster.drive("profile", {"--window", std::to_string(window)}, seconds + 0.5, false);
  } catch (...) {
    recorder.join();
    throw;
  }
  recorder.join();
  say("  reading the profile (perf script) ...");
  const std::string script = run_command("perf script -i " + data + " 2>/dev/null");
  ProfileResult result;
  result.data_file = data;

  struct Frame {
    std::string symbol, dso;
  };
  using Match = bool (*)(const Frame&);
  auto contains = [](const std::string& text, const char* part) {
    return text.find(part) != std::string::npos;
  };
  static const std::vector<std::pair<std::string, Match>> kComponents = {
      {"JSON (nlohmann)",
       [](const Frame& f) { return f.symbol.find("nlohmann") != std::string::npos; }},
      {"SQLite (libsqlite3)",
       [](const Frame& f) { return f.dso.find("libsqlite3") != std::string::npos; }},
      {"saga::SqliteStore::commit",
       [](const Frame& f) {
         return f.symbol.find("saga::SqliteStore::commit") != std::string::npos;
       }},
      {"WAL checkpoint (inside commits)",
       [](const Frame& f) { return f.symbol.find("sqlite3WalCheckpoint") != std::string::npos; }},
      {"fsync", [](const Frame& f) { return f.symbol.find("do_fsync") != std::string::npos; }},
      {"file writes (pwrite)",
       [](const Frame& f) { return f.symbol.find("sys_pwrite64") != std::string::npos; }},
      {"engine: applying inputs (process_start/process_message)",
       [](const Frame& f) {
         return f.symbol.find("saga::Engine::Impl::process_start") != std::string::npos ||
                f.symbol.find("saga::Engine::Impl::process_message") != std::string::npos;
       }},
      {"envelope codec (decode/encode_envelope)",
       [](const Frame& f) {
         return f.symbol.find("saga::decode_envelope") != std::string::npos ||
                f.symbol.find("saga::encode_envelope") != std::string::npos;
       }},
      {"malloc/free",
       [](const Frame& f) {
         return f.symbol.find("malloc") != std::string::npos ||
                f.symbol.find("_int_free") != std::string::npos ||
                f.symbol.rfind("__GI___libc_free", 0) == 0 || f.symbol.rfind("cfree", 0) == 0;
       }},
      {"libzmq", [](const Frame& f) { return f.dso.find("libzmq") != std::string::npos; }},
      {"kernel (system calls, page cache, scheduling)",
       [](const Frame& f) { return f.dso.find("kernel") != std::string::npos; }},
  };
  std::vector<std::size_t> component_hits(kComponents.size(), 0);
  std::map<std::string, std::size_t> thread_hits, self;
  std::size_t json = 0, json_in_loop = 0, loop_samples = 0;

  std::vector<Frame> stack;
  std::string comm;
  auto finish = [&] {
    if (stack.empty()) return;
    ++result.samples;
    bool has_json = false, in_loop = false, in_intake = false;
    for (std::size_t c = 0; c < kComponents.size(); ++c) {
      for (const Frame& frame : stack)
        if (kComponents[c].second(frame)) {
          ++component_hits[c];
          if (c == 0) has_json = true;
          break;
        }
    }
    for (const Frame& frame : stack) {
      if (contains(frame.symbol, "saga::Engine::run")) in_loop = true;
      if (contains(frame.symbol, "Intake::serve")) in_intake = true;
    }
    const std::string thread = in_loop                       ? "engine loop"
                               : in_intake                   ? "intake (the sample's REP socket)"
                               : comm.rfind("ZMQbg", 0) == 0 ? "ZeroMQ I/O threads"
                                                             : "other";
    ++thread_hits[thread];
    json += has_json;
    if (in_loop) {
      ++loop_samples;
      json_in_loop += has_json;
    }
    const Frame& top = stack.front();
    std::string name = top.symbol;
    if (name.empty() || name == "[unknown]")
      name = "[unknown] in " + fs::path(top.dso).filename().string();
    ++self[name];
    stack.clear();
  };
  std::istringstream lines(script);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) {
      finish();
      continue;
    }
    if (line[0] != ' ' && line[0] != '\t') {  // a sample header: "comm tid time: ..."
      finish();
      comm = line.substr(0, line.find(' '));
      continue;
    }
    // "\t    7f12ab34 symbol+0x12 (/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6)"
    const auto text_start = line.find_first_not_of(" \t");
    const auto space = line.find(' ', text_start);
    const auto dso_open = line.rfind(" (");
    Frame frame;
    if (space != std::string::npos && dso_open != std::string::npos && dso_open > space)
      frame.symbol = line.substr(space + 1, dso_open - space - 1);
    if (dso_open != std::string::npos) {
      frame.dso = line.substr(dso_open + 2);
      if (!frame.dso.empty() && frame.dso.back() == ')') frame.dso.pop_back();
    }
    if (auto plus = frame.symbol.rfind("+0x"); plus != std::string::npos) frame.symbol.resize(plus);
    stack.push_back(std::move(frame));
  }
  finish();
  if (result.samples == 0) {
    say("  perf recorded no samples: no profile");
    return std::nullopt;
  }
  const double total = static_cast<double>(result.samples);
  for (std::size_t c = 0; c < kComponents.size(); ++c)
    result.components.emplace_back(kComponents[c].first,
                                   static_cast<double>(component_hits[c]) / total);
  for (const auto& [thread, count] : thread_hits)
    result.threads.emplace_back(thread, static_cast<double>(count) / total);
  std::sort(result.threads.begin(), result.threads.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  result.json_share = static_cast<double>(json) / total;
  result.json_share_engine_loop =
      loop_samples > 0 ? static_cast<double>(json_in_loop) / static_cast<double>(loop_samples) : 0;
  std::vector<std::pair<std::string, double>> hottest;
  for (const auto& [symbol, count] : self)
    hottest.emplace_back(symbol.substr(0, 140), static_cast<double>(count) / total);
  std::sort(hottest.begin(), hottest.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  if (hottest.size() > 15) hottest.resize(15);
  result.top_self = std::move(hottest);
  say("  JSON: " + fixed(100 * result.json_share) + " % of the orchestrator's samples (" +
      fixed(100 * result.json_share_engine_loop) + " % of the engine loop's)");
  return result;
}

}  // namespace

PhaseResult median_phase(std::vector<PhaseResult> rounds) {
  if (rounds.empty()) throw std::invalid_argument("median_phase: no rounds");
  std::vector<double> sagas_per_s, steps_per_s, p99;
  for (const auto& round : rounds) {
    sagas_per_s.push_back(round.engine.sagas_per_s());
    steps_per_s.push_back(round.engine.steps_per_s());
    p99.push_back(round.driver.at("latency_ms").value("p99", 0.0));
  }
  std::vector<std::size_t> order(rounds.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return sagas_per_s[a] < sagas_per_s[b]; });
  PhaseResult result = rounds[order[(order.size() - 1) / 2]];
  for (const char* key : {"p50", "p90", "p99", "p999", "max", "mean"}) {
    std::vector<double> values;
    for (const auto& round : rounds)
      if (round.driver.at("latency_ms").contains(key))
        values.push_back(round.driver.at("latency_ms").at(key).get<double>());
    if (values.size() == rounds.size()) result.driver["latency_ms"][key] = median(values);
  }
  result.round_sagas_per_s = std::move(sagas_per_s);
  result.round_steps_per_s = std::move(steps_per_s);
  result.round_latency_p99_ms = std::move(p99);
  return result;
}

RunResult run_cluster(const ClusterOptions& options, const RunPlan& plan) {
  say("  starting the orchestrator (--batch " + std::to_string(options.max_batch) +
      ", durability " + options.durability + ", sync " + options.sync +
      ") and the three services in " + options.work_dir);
  Cluster cluster(options);
  RunResult result;
  const std::string window = std::to_string(plan.window);
  if (plan.warmup_s > 0) {
    say("  warm-up: " + fixed(plan.warmup_s) + " s, " + window + " sagas in flight");
    cluster.drive("warmup", {"--window", window}, plan.warmup_s, false);
  }
  const std::size_t rounds = std::max<std::size_t>(plan.rounds, 1);
  auto drive_rounds = [&](const std::string& label, const std::vector<std::string>& extra,
                          double seconds, const std::function<void(std::size_t)>& beside = {}) {
    std::vector<PhaseResult> results;
    for (std::size_t round = 1; round <= rounds; ++round) {
      if (beside && round % 2 == 0) beside(round);
      results.push_back(cluster.drive(rounds == 1 ? label : label + "-" + std::to_string(round),
                                      extra, seconds / static_cast<double>(rounds),
                                      plan.check_invariants));
      if (rounds > 1)
        say("    round " + std::to_string(round) + ": " +
            fixed(results.back().engine.sagas_per_s()) + " sagas/s, p99 " +
            fixed(results.back().driver.at("latency_ms").value("p99", 0.0), 1) + " ms");
      if (beside && round % 2 == 1) beside(round);
    }
    return median_phase(std::move(results));
  };
  say("  saturation: " + fixed(plan.saturation_s) + " s, " + window + " sagas in flight" +
      (rounds > 1 ? ", in " + std::to_string(rounds) + " rounds" : ""));
  result.saturation = drive_rounds("saturation", {"--window", window}, plan.saturation_s,
                                   plan.beside_saturation_round);
  const auto& engine = result.saturation.engine;
  say("  -> " + fixed(engine.sagas_per_s()) + " sagas/s, " + fixed(engine.steps_per_s()) +
      " steps/s, " + fixed(engine.batch(), 2) + " steps per commit");
  if (plan.half_s > 0) {
    const double rate = std::max(1.0, engine.sagas_per_s() / 2);
    say("  half of saturation: open loop at " + fixed(rate) + " orders/s for " +
        fixed(plan.half_s) + " s");
    result.half = drive_rounds("half", {"--rate", fixed(rate, 3)}, plan.half_s);
    for (double fraction : plan.light_loads) {
      const double light_rate = std::max(1.0, engine.sagas_per_s() * fraction);
      say("  " + fixed(100 * fraction, 0) + " % of saturation: open loop at " + fixed(light_rate) +
          " orders/s for " + fixed(plan.half_s) + " s");
      result.light.emplace_back(fraction,
                                drive_rounds("load-" + fixed(100 * fraction, 0),
                                             {"--rate", fixed(light_rate, 3)}, plan.half_s));
    }
  }
  if (plan.profile_s > 0) {
    say("  profile: perf on the orchestrator during " + fixed(plan.profile_s) + " s of saturation");
    result.profile = profile_orchestrator(cluster, options.work_dir, plan.profile_s, plan.window);
  }
  return result;
}

Comparison compare_clusters(const ClusterOptions& baseline_options,
                            const ClusterOptions& variant_options, const RunPlan& plan) {
  say("  starting both clusters: the baseline in " + baseline_options.work_dir +
      ", the variant in " + variant_options.work_dir);
  Cluster baseline(baseline_options);
  Cluster variant(variant_options);
  const std::string window = std::to_string(plan.window);
  if (plan.warmup_s > 0) {
    say("  warm-up of each: " + fixed(plan.warmup_s) + " s, " + window + " sagas in flight");
    baseline.drive("warmup", {"--window", window}, plan.warmup_s, false);
    variant.drive("warmup", {"--window", window}, plan.warmup_s, false);
  }
  const std::size_t rounds = std::max<std::size_t>(plan.rounds, 1);
  const double seconds = plan.saturation_s / static_cast<double>(rounds);
  say("  saturation, " + window + " sagas in flight, " + std::to_string(rounds) +
      " alternating rounds of " + fixed(seconds) + " s on each");
  std::vector<PhaseResult> baseline_rounds, variant_rounds;
  Comparison result;
  for (std::size_t round = 1; round <= rounds; ++round) {
    const std::string label = "saturation-" + std::to_string(round);
    auto drive = [&](Cluster& cluster, std::vector<PhaseResult>& into) {
      into.push_back(cluster.drive(label, {"--window", window}, seconds, plan.check_invariants));
    };
    // A figure measured beside the rounds sits between the two clusters' runs, next to both.
    if (round % 2 == 1) {
      drive(baseline, baseline_rounds);
      if (plan.beside_saturation_round) plan.beside_saturation_round(round);
      drive(variant, variant_rounds);
    } else {
      drive(variant, variant_rounds);
      if (plan.beside_saturation_round) plan.beside_saturation_round(round);
      drive(baseline, baseline_rounds);
    }
    const double ratio = variant_rounds.back().engine.sagas_per_s() /
                         std::max(baseline_rounds.back().engine.sagas_per_s(), 1e-9);
    result.round_ratios.push_back(ratio);
    say("    round " + std::to_string(round) + ": baseline " +
        fixed(baseline_rounds.back().engine.sagas_per_s()) + ", variant " +
        fixed(variant_rounds.back().engine.sagas_per_s()) + " sagas/s (" + fixed(ratio, 3) + " x)");
  }
  result.ratio = median(result.round_ratios);
  result.baseline = median_phase(std::move(baseline_rounds));
  result.variant = median_phase(std::move(variant_rounds));
  return result;
}

InFlightResult measure_in_flight(const ClusterOptions& options, std::size_t sagas,
                                 double warmup_s) {
  say("  starting a fresh cluster in " + options.work_dir);
  Cluster cluster(options);
  cluster.drive("warmup", {"--window", "200"}, warmup_s, false);
  InFlightResult result;
  result.sagas = sagas;
  Child& inventory = cluster.service("inventory");
  inventory.signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  const nlohmann::json before = cluster.client().stats();
  result.rss_before_kib = sample_process(cluster.orchestrator().pid()).rss_kib;
  say("  inventory service stopped (SIGSTOP); starting " + std::to_string(sagas) + " sagas");
  IntakeClient& client = cluster.client();
  for (std::size_t placed = 0; placed < sagas;) {
    nlohmann::json orders = nlohmann::json::array();
    for (std::size_t i = 0; i < 256 && placed < sagas; ++i, ++placed) {
      const int n = 900000000 + static_cast<int>(placed);
      orders.push_back({{"order_id", "order-" + std::to_string(n)},
                        {"customer_id", "customer-" + std::to_string(n % 97)},
                        {"address", std::to_string(1 + n % 200) + " Main St"},
                        {"items",
                         {{{"sku", "sku-book"}, {"quantity", 2}, {"unit_price_cents", 1800}},
                          {{"sku", "sku-lamp"}, {"quantity", 1}, {"unit_price_cents", 4500}}}}});
    }
    client.call({{"op", "start_many"}, {"orders", orders}});
  }
  const auto started_before = before.at("sagas_started").get<std::uint64_t>();
  const auto deadline = Clock::now() + std::chrono::seconds{120};
  while (client.stats().at("sagas_started").get<std::uint64_t>() < started_before + sagas) {
    if (Clock::now() > deadline) throw std::runtime_error("the sagas were not all started");
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds{500});  // sends and dispatch marks settle
  result.rss_after_kib = sample_process(cluster.orchestrator().pid()).rss_kib;
  result.bytes_per_saga =
      (result.rss_after_kib - result.rss_before_kib) * 1024.0 / static_cast<double>(sagas);
  say("  orchestrator RSS " + fixed(result.rss_before_kib / 1024) + " MiB -> " +
      fixed(result.rss_after_kib / 1024) + " MiB with " + std::to_string(sagas) +
      " sagas in flight; continuing the inventory service");
  inventory.signal(SIGCONT);
  const auto ended_before = before.at("sagas_completed").get<std::uint64_t>();
  const auto drain_deadline = Clock::now() + std::chrono::seconds{180};
  while (Clock::now() < drain_deadline) {
    if (client.stats().at("sagas_completed").get<std::uint64_t>() >= ended_before + sagas) {
      result.all_completed = true;
      break;
    }
    cluster.check_alive();
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  return result;
}

}  // namespace bench
