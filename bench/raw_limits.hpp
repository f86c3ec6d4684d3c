// The raw limits of this machine, measured with the engine's own statements and messages:
//   S(B)  store steps per second, B engine steps per transaction (SqliteStore::commit with the
//         WriteBatches the engine committed for a real order saga, ids refreshed per saga; with
//         Durability::full each commit is followed by SqliteStore::sync(), its fsync)
//   Z     ZeroMQ DEALER/ROUTER round trips per second over tcp://127.0.0.1 with the engine's
//         framing and a real command out, a real reply back; and the unpipelined round-trip time
//   J     envelope decode (a real reply) + encode (a real command) per second on one core
//   L     the latency of one durable commit when commits come one at a time, paced, as at low
//         load; with Z's round-trip times, the floor a saga's latency has on this machine
// Each function runs for about `seconds` and never throws for slow results; it throws
// std::runtime_error when the resource cannot be used (cannot open a database, bind a socket).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "engine_capture.hpp"
#include "saga/options.hpp"

namespace bench {

// While alive, one SCHED_IDLE thread per core spins, so no core halts. On a virtual machine a
// halted vCPU takes milliseconds to wake for an I/O completion: a lone process waiting on fsync
// then measures the wake-up, not the disk (on the machine this was written on, S(1) FULL went
// from ~270 to thousands of commits/s). The E runs keep the cores busy by themselves; the raw
// measurements use this to see the same machine. SCHED_IDLE threads only run when a core has
// nothing else to do.
class KeepCoresAwake {
 public:
  explicit KeepCoresAwake(bool enabled);
  ~KeepCoresAwake();
  KeepCoresAwake(const KeepCoresAwake&) = delete;
  KeepCoresAwake& operator=(const KeepCoresAwake&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether keeping the cores awake raises this machine's raw limits. It depends on the
// hypervisor: where a halted vCPU wakes slowly it does, and where the spinning vCPUs take host
// time from the virtual disk and network it lowers them (on the Firecracker VM the benchmark was
// later run on, F fell by a fifth and Z's round trip doubled). S(1) FULL, a lone process waiting
// on fsync, is measured `pairs` times each way, alternating, `seconds` each; the cores are kept
// awake if that gave the higher median.
struct KeepAwakeCalibration {
  std::vector<double> awake_steps_per_s, asleep_steps_per_s;
  bool keep_awake = false;
};
KeepAwakeCalibration calibrate_keep_awake(const CapturedSaga& captured, double seconds,
                                          std::size_t pairs, const std::string& directory);

// The value at `fraction` (0.5: the median) of ascending `sorted`, nearest rank below; 0 when
// empty.
double percentile(const std::vector<double>& sorted, double fraction);

struct StoreFigure {
  saga::Durability durability = saga::Durability::full;
  std::size_t batch = 1;  // engine steps per transaction
  std::size_t steps = 0;
  std::size_t commits = 0;
  double seconds = 0;      // time inside SqliteStore::commit (and sync() with full) only
  double cpu_seconds = 0;  // CPU time (user + system) of those commits
  double steps_per_s = 0;
  double commits_per_s = 0;
  double cpu_us_per_step = 0;
  double db_bytes_per_saga = 0;  // database + WAL size after the run, per replayed saga
  std::size_t warmup_sagas = 0;  // replayed before timing, until the WAL was being reused
};

// Commits replayed order sagas into a new database under `directory`: waves of `batch` sagas,
// one transaction per step of the wave (the starts, then the first replies, ...).
StoreFigure measure_store(const CapturedSaga& saga, saga::Durability durability, std::size_t batch,
                          double seconds, const std::string& directory);

struct ZmqFigure {
  std::size_t window = 0;        // round trips outstanding at once in the pipelined run
  double round_trips_per_s = 0;  // pipelined
  double rtt_p50_us = 0;         // unpipelined
  double rtt_p99_us = 0;
  std::vector<double> rtt_samples_us;  // unpipelined, sorted
  std::size_t command_bytes = 0;       // frame sizes used
  std::size_t reply_bytes = 0;
};

struct CommitLatencyFigure {
  double interval_us = 0;          // one commit started every interval (or when the last ended)
  std::vector<double> samples_us;  // each commit's time inside commit() and sync(), sorted
  double p50_us = 0;
  double p99_us = 0;
};

// One engine step per transaction, paced: the disk is idle between commits, as it is between
// the small turns of a lightly loaded engine (back to back, an fsync is cheaper on some disks).
CommitLatencyFigure measure_commit_latency(const CapturedSaga& saga, saga::Durability durability,
                                           std::chrono::microseconds interval, double seconds,
                                           const std::string& directory);

ZmqFigure measure_zmq(const std::string& command, const std::string& reply, std::size_t window,
                      double seconds);

struct CodecFigure {
  double ops_per_s = 0;  // one decode + one encode
  double decode_per_s = 0;
  double encode_per_s = 0;
};

CodecFigure measure_codec(const CapturedSaga& saga, double seconds);

// What a saga's latency cannot go below on this machine: `commits` durable commits and
// `round_trips` round trips one after the other, nothing else (no CPU work, no queueing, no
// wake-ups beyond the measured ones), each drawn independently from the measured samples.
// Percentiles of the sum over a fixed-seed set of draws; 0 when a sample set is empty.
struct LatencyFloor {
  std::size_t commits = 0, round_trips = 0;
  double p50_ms = 0, p99_ms = 0;
};

LatencyFloor latency_floor(const std::vector<double>& commit_samples_us, std::size_t commits,
                           const std::vector<double>& rtt_samples_us, std::size_t round_trips);

}  // namespace bench
