// Time as the engine sees it. Every time-dependent decision asks a Clock, so tests and the
// simulation run on simulated time and never sleep.
//
// Thread safety: SystemClock is stateless. ManualClock is safe to read and advance from any
// thread.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

namespace saga {

using Timestamp = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp now() const = 0;
};

class SystemClock final : public Clock {
 public:
  Timestamp now() const override { return std::chrono::system_clock::now(); }
};

// A clock that only moves when told to. Starts at the given time (default: 2020-01-01T00:00Z).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start = Timestamp{std::chrono::seconds{1577836800}})
      : now_(start.time_since_epoch().count()) {}
  Timestamp now() const override {
    return Timestamp{Timestamp::duration{now_.load(std::memory_order_acquire)}};
  }
  void advance(Timestamp::duration by) { now_.fetch_add(by.count(), std::memory_order_acq_rel); }
  void set(Timestamp to) { now_.store(to.time_since_epoch().count(), std::memory_order_release); }

 private:
  std::atomic<Timestamp::rep> now_;
};

// RFC 3339 UTC with millisecond precision, e.g. "2020-07-06T10:30:00.123Z".
std::string format_rfc3339(Timestamp at);

}  // namespace saga
