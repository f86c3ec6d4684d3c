#include "raw_limits.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "report.hpp"
#include "saga/sqlite_store.hpp"

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

volatile std::size_t g_sink = 0;  // keeps the codec work observable

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

const char* name_of(saga::Durability durability) {
  return durability == saga::Durability::full     ? "full"
         : durability == saga::Durability::normal ? "normal"
                                                  : "off";
}

std::uintmax_t size_or_zero(const std::filesystem::path& path) {
  std::error_code error;
  auto size = std::filesystem::file_size(path, error);
  return error ? 0 : size;
}

}  // namespace

double percentile(const std::vector<double>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<std::size_t>(fraction * static_cast<double>(sorted.size() - 1))];
}

struct KeepCoresAwake::Impl {
  std::atomic<bool> stop{false};
  std::vector<std::thread> spinners;
};

KeepCoresAwake::KeepCoresAwake(bool enabled) : impl_(std::make_unique<Impl>()) {
  if (!enabled) return;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < cores; ++i)
    impl_->spinners.emplace_back([stop = &impl_->stop] {
      sched_param none{};
      ::sched_setscheduler(0, SCHED_IDLE, &none);  // this thread only (Linux)
      while (!stop->load(std::memory_order_relaxed)) {
      }
    });
}

KeepCoresAwake::~KeepCoresAwake() {
  impl_->stop.store(true);
  for (auto& spinner : impl_->spinners) spinner.join();
}

namespace {

// A new database under `directory` for replayed order sagas, removed again on destruction.
class ReplayDatabase {
 public:
  ReplayDatabase(const CapturedSaga& captured, saga::Durability durability,
                 const std::string& directory, const std::string& name)
      : path_(std::filesystem::path(directory) / (name + ".db")),
        durability_(durability),
        replayer_(captured) {
    remove_files();
    saga::StoreOptions options;
    options.path = path_.string();
    options.durability = durability;
    auto opened = saga::SqliteStore::open(options);
    if (!opened) throw std::runtime_error(name + ": " + opened.error().message);
    store_ = std::move(opened.value());
  }
  ~ReplayDatabase() {
    store_.reset();
    remove_files();
  }
  ReplayDatabase(const ReplayDatabase&) = delete;
  ReplayDatabase& operator=(const ReplayDatabase&) = delete;

  std::size_t steps_per_saga() const { return replayer_.steps_per_saga(); }

  // Step `step` of the next `batch` replayed sagas; `timed` (may be null) measures the commit.
  void commit_step(std::size_t step, std::size_t batch, StoreFigure* timed) {
    saga::WriteBatch writes;
    for (std::size_t i = 0; i < batch; ++i) replayer_.append(sagas_ + i, step, writes);
    const auto start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    saga::StoreStatus status = store_->commit(writes);
    // With FULL the store's COMMIT leaves the fsync to sync() (StoreOptions::sync_in_background):
    // a durable step includes it, as when the engine syncs after a turn on its own thread.
    if (status && durability_ == saga::Durability::full) status = store_->sync();
    if (timed) {
      timed->cpu_seconds += thread_cpu_seconds() - cpu_start;
      timed->seconds += seconds_since(start);
      timed->steps += batch;
      ++timed->commits;
    }
    if (!status) throw std::runtime_error("commit failed: " + status.error->message);
  }
  void next_sagas(std::size_t batch) { sagas_ += batch; }
  std::size_t sagas() const { return sagas_; }

  // Untimed: a new database's WAL grows with every commit, and fsync of a growing file also
  // commits file-system metadata. A running engine reuses its WAL after each checkpoint, so
  // commit until the WAL's size has not changed for 20 commits in a row (or `limit_s` passed).
  void warm_up(std::size_t batch, double limit_s) {
    const std::string wal = path_.string() + "-wal";
    const auto start = Clock::now();
    std::uintmax_t last_size = 0;
    int unchanged = 0;
    while (unchanged < 20 && seconds_since(start) < limit_s) {
      for (std::size_t step = 0; step < steps_per_saga(); ++step) {
        commit_step(step, batch, nullptr);
        const std::uintmax_t size = size_or_zero(wal);
        unchanged = size == last_size ? unchanged + 1 : 0;
        last_size = size;
      }
      next_sagas(batch);
    }
  }

  std::uintmax_t bytes_on_disk() const {
    return size_or_zero(path_) + size_or_zero(path_.string() + "-wal");
  }

 private:
  void remove_files() {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"})
      std::filesystem::remove(path_.string() + suffix);
  }

  std::filesystem::path path_;
  saga::Durability durability_;
  StepReplayer replayer_;
  std::unique_ptr<saga::SqliteStore> store_;
  std::size_t sagas_ = 0;
};

}  // namespace

StoreFigure measure_store(const CapturedSaga& captured, saga::Durability durability,
                          std::size_t batch, double seconds, const std::string& directory) {
  StoreFigure figure;
  figure.durability = durability;
  figure.batch = batch;
  ReplayDatabase database(
      captured, durability, directory,
      "store-" + std::string(name_of(durability)) + "-" + std::to_string(batch));
  database.warm_up(batch, 3 * seconds + 0.2);
  figure.warmup_sagas = database.sagas();
  while (figure.seconds < seconds) {
    for (std::size_t step = 0; step < database.steps_per_saga(); ++step)
      database.commit_step(step, batch, &figure);
    database.next_sagas(batch);
  }
  figure.steps_per_s = static_cast<double>(figure.steps) / figure.seconds;
  figure.commits_per_s = static_cast<double>(figure.commits) / figure.seconds;
  figure.cpu_us_per_step = 1e6 * figure.cpu_seconds / static_cast<double>(figure.steps);
  figure.db_bytes_per_saga =
      static_cast<double>(database.bytes_on_disk()) /
      static_cast<double>(std::max<std::size_t>(database.sagas(), 1));  // warm-up included
  return figure;
}

KeepAwakeCalibration calibrate_keep_awake(const CapturedSaga& captured, double seconds,
                                          std::size_t pairs, const std::string& directory) {
  KeepAwakeCalibration calibration;
  for (std::size_t pair = 0; pair < pairs; ++pair)
    for (const bool awake : {pair % 2 == 0, pair % 2 != 0}) {
      KeepCoresAwake cores(awake);
      const double rate =
          measure_store(captured, saga::Durability::full, 1, seconds, directory).steps_per_s;
      (awake ? calibration.awake_steps_per_s : calibration.asleep_steps_per_s).push_back(rate);
    }
  calibration.keep_awake =
      median(calibration.awake_steps_per_s) > median(calibration.asleep_steps_per_s);
  return calibration;
}

CommitLatencyFigure measure_commit_latency(const CapturedSaga& captured,
                                           saga::Durability durability,
                                           std::chrono::microseconds interval, double seconds,
                                           const std::string& directory) {
  CommitLatencyFigure figure;
  figure.interval_us = static_cast<double>(interval.count());
  ReplayDatabase database(captured, durability, directory,
                          "paced-" + std::string(name_of(durability)));
  database.warm_up(1, 3 * seconds + 0.2);
  const auto start = Clock::now();
  auto next = start;
  while (seconds_since(start) < seconds || figure.samples_us.size() < 100) {
    for (std::size_t step = 0; step < database.steps_per_saga(); ++step) {
      std::this_thread::sleep_until(next);
      StoreFigure one;
      database.commit_step(step, 1, &one);
      figure.samples_us.push_back(1e6 * one.seconds);
      next = std::max(next + interval, Clock::now());
    }
    database.next_sagas(1);
  }
  std::sort(figure.samples_us.begin(), figure.samples_us.end());
  figure.p50_us = percentile(figure.samples_us, 0.50);
  figure.p99_us = percentile(figure.samples_us, 0.99);
  return figure;
}

ZmqFigure measure_zmq(const std::string& command, const std::string& reply, std::size_t window,
                      double seconds) {
  ZmqFigure figure;
  figure.window = window;
  figure.command_bytes = command.size();
  figure.reply_bytes = reply.size();

  // Two contexts, as in two processes: the orchestrator's ROUTER and a participant's DEALER.
  zmq::context_t orchestrator_context(1), participant_context(1);
  zmq::socket_t router(orchestrator_context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::router_mandatory, 1);
  router.set(zmq::sockopt::sndhwm, 10000);
  router.set(zmq::sockopt::rcvhwm, 10000);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);

  std::thread participant([&participant_context, endpoint, reply] {
    zmq::socket_t dealer(participant_context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::sndhwm, 10000);
    dealer.set(zmq::sockopt::rcvhwm, 10000);
    dealer.connect(endpoint);
    dealer.send(zmq::str_buffer("ANNOUNCE"), zmq::send_flags::none);
    for (;;) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(dealer, std::back_inserter(frames))) continue;
      if (frames.empty() || frames[0].to_string_view() != "MESSAGE") break;
      std::array<zmq::const_buffer, 2> answer = {zmq::str_buffer("MESSAGE"), zmq::buffer(reply)};
      zmq::send_multipart(dealer, answer);
    }
  });

  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(router, std::back_inserter(frames)) || frames.size() != 2)
    throw std::runtime_error("Z: the DEALER did not announce itself");
  const std::string identity = frames[0].to_string();
  auto send_command = [&] {
    std::array<zmq::const_buffer, 3> message = {zmq::buffer(identity), zmq::str_buffer("MESSAGE"),
                                                zmq::buffer(command)};
    zmq::send_multipart(router, message);
  };
  auto receive_reply = [&] {
    frames.clear();
    if (!zmq::recv_multipart(router, std::back_inserter(frames)) || frames.size() != 3)
      throw std::runtime_error("Z: unexpected reply framing");
  };

  // Unpipelined: one command, wait for its reply, again. Half of the time budget.
  std::vector<double> rtts;
  {
    const auto start = Clock::now();
    while (seconds_since(start) < seconds / 2 || rtts.size() < 100) {
      const auto sent = Clock::now();
      send_command();
      receive_reply();
      rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
    }
  }
  std::sort(rtts.begin(), rtts.end());
  figure.rtt_p50_us = percentile(rtts, 0.50);
  figure.rtt_p99_us = percentile(rtts, 0.99);
  figure.rtt_samples_us = std::move(rtts);

  // Pipelined: `window` commands outstanding; each reply releases the next command.
  {
    std::size_t outstanding = 0, done = 0;
    const auto start = Clock::now();
    for (; outstanding < window; ++outstanding) send_command();
    double elapsed = 0;
    while (outstanding > 0) {
      receive_reply();
      --outstanding;
      ++done;
      if ((done & 63) == 0) elapsed = seconds_since(start);
      if (elapsed < seconds / 2) {
        send_command();
        ++outstanding;
      }
    }
    figure.round_trips_per_s = static_cast<double>(done) / seconds_since(start);
  }

  std::array<zmq::const_buffer, 2> stop = {zmq::buffer(identity), zmq::str_buffer("STOP")};
  zmq::send_multipart(router, stop);
  participant.join();
  return figure;
}

CodecFigure measure_codec(const CapturedSaga& captured, double seconds) {
  std::vector<saga::Envelope> commands;
  for (const auto& bytes : captured.commands) {
    auto decoded = saga::decode_envelope(bytes);
    commands.push_back(std::get<saga::Envelope>(decoded));
  }
  std::size_t sink = 0;
  auto run = [&](auto&& operation) {
    std::size_t operations = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < seconds / 3) {
      for (std::size_t i = 0; i < commands.size(); ++i) sink += operation(i);
      operations += commands.size();
    }
    return static_cast<double>(operations) / seconds_since(start);
  };
  auto decode = [&](std::size_t i) {
    auto decoded = saga::decode_envelope(captured.replies[i]);
    const auto* envelope = std::get_if<saga::Envelope>(&decoded);
    if (!envelope) throw std::runtime_error("J: a captured reply does not decode");
    return envelope->event_id.size();
  };
  auto encode = [&](std::size_t i) { return saga::encode_envelope(commands[i]).size(); };
  CodecFigure figure;
  figure.ops_per_s = run([&](std::size_t i) { return decode(i) + encode(i); });
  figure.decode_per_s = run(decode);
  figure.encode_per_s = run(encode);
  g_sink = sink;
  return figure;
}

LatencyFloor latency_floor(const std::vector<double>& commit_samples_us, std::size_t commits,
                           const std::vector<double>& rtt_samples_us, std::size_t round_trips) {
  LatencyFloor floor;
  floor.commits = commits;
  floor.round_trips = round_trips;
  if (commit_samples_us.empty() || rtt_samples_us.empty()) return floor;
  std::mt19937_64 random(20261127);
  auto draw = [&random](const std::vector<double>& samples) {
    return samples[std::uniform_int_distribution<std::size_t>(0, samples.size() - 1)(random)];
  };
  std::vector<double> sums(100000);
  for (double& sum : sums) {
    sum = 0;
    for (std::size_t i = 0; i < commits; ++i) sum += draw(commit_samples_us);
    for (std::size_t i = 0; i < round_trips; ++i) sum += draw(rtt_samples_us);
  }
  std::sort(sums.begin(), sums.end());
  floor.p50_ms = percentile(sums, 0.50) / 1000;
  floor.p99_ms = percentile(sums, 0.99) / 1000;
  return floor;
}

}  // namespace bench
