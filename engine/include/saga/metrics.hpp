// A small Prometheus metrics registry: counters, gauges and histograms, each a family with a
// fixed list of label names and one child per set of label values, rendered in the Prometheus
// text exposition format 0.0.4 (what a scraper expects at GET /metrics).
//
//   auto metrics = std::make_shared<saga::Metrics>();
//   auto& sent = metrics->counter("saga_messages_published_total", "Messages sent.", {"type"});
//   sent.with({"inventory.Reserve"}).inc();
//   auto& took = metrics->histogram("saga_commit_duration_seconds", "Commit time.", {},
//                                   saga::Metrics::seconds_buckets());
//   took.with({}).observe(0.004);
//   std::string text = metrics->render();   // serve with Content-Type kMetricsContentType
//
// Naming (Prometheus conventions, checked only for syntax): a prefix per library ("saga_"),
// base units (seconds, bytes), "_total" for counters, the unit as suffix ("_seconds").
// Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and do not start
// with "__"; a histogram may not use the label "le".
//
// Output: families in registration order, each with "# HELP" and "# TYPE" lines, children
// sorted by label values. Label values escape backslash, double quote and newline; HELP text
// escapes backslash and newline. A histogram child writes cumulative "_bucket{le="..."}" lines
// ending with le="+Inf", then "_sum" and "_count" (= the +Inf bucket). A family without labels
// has its single child from the start, so it is rendered (as 0) before the first update.
//
// Ownership: families and children live as long as the registry; the references returned stay
// valid, so hot paths may look a child up once and keep it.
// Thread safety: every method is safe from any thread. Counter and gauge updates are atomic;
// a histogram observation and with() take a short lock; render() sees each child consistently.
// Errors: a bad name, a label count that does not match, a negative counter increment or bad
// buckets throw std::invalid_argument; registering a name again with a different kind, labels
// or buckets throws std::logic_error (the same definition returns the existing family).
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace saga {

class Metrics;

// The Content-Type of render()'s output.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Only goes up (or is reset by a restart).
class Counter {
 public:
  void inc(double by = 1.0);
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Goes up and down.
class Gauge {
 public:
  void set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
  void inc(double by = 1.0) noexcept { value_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1.0) noexcept { value_.fetch_sub(by, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets by upper bound (inclusive), plus their sum.
class Histogram {
 public:
  // Upper bounds strictly increasing and finite; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;       // without +Inf
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0.0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;  // per bucket (not cumulative), +Inf last
  double sum_ = 0.0;
};

namespace detail {
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  virtual void render(std::string& out) const = 0;
  const std::string& name() const noexcept { return name_; }

 protected:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}
  std::string name_, help_;
  std::vector<std::string> label_names_;
};
}  // namespace detail

// All children of one metric name. Metric is Counter, Gauge or Histogram.
template <class Metric>
class Family final : public detail::FamilyBase {
 public:
  // The child for these label values (in the order of the family's label names), created at its
  // first use. Throws std::invalid_argument when the number of values is wrong.
  Metric& with(std::initializer_list<std::string_view> label_values);
  Metric& with(const std::vector<std::string>& label_values);

  const std::vector<std::string>& label_names() const noexcept { return label_names_; }
  void render(std::string& out) const override;

 private:
  friend class saga::Metrics;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> buckets);
  Metric& child(std::vector<std::string> label_values);

  std::vector<double> buckets_;  // histograms only
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

class Metrics {
 public:
  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  Family<Counter>& counter(std::string name, std::string help,
                           std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(std::string name, std::string help,
                       std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(std::string name, std::string help,
                               std::vector<std::string> label_names, std::vector<double> buckets);

  // The whole registry in the text exposition format (ends with a newline when not empty).
  std::string render() const;

  // 0.5 ms .. 10 s: handling times and commits.
  static std::vector<double> seconds_buckets();
  // 10 ms .. 1 h: things that wait on other services (sagas, replies).
  static std::vector<double> long_seconds_buckets();
  // Powers of two from 1 to `max`: sizes and counts.
  static std::vector<double> power_of_two_buckets(double max);

 private:
  template <class Metric>
  Family<Metric>& add(std::string name, std::string help, std::vector<std::string> label_names,
                      std::vector<double> buckets, std::string_view kind);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<detail::FamilyBase>> families_;
  std::map<std::string, std::string, std::less<>> kinds_;  // name -> "counter" | ...
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Exposition-format helpers, public for tests and other exporters.
// A sample value: shortest round-trip decimal, "+Inf", "-Inf" or "NaN".
std::string format_metric_value(double value);
// A label value with backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view value);
// HELP text with backslash and newline escaped.
std::string escape_help(std::string_view help);

}  // namespace saga
