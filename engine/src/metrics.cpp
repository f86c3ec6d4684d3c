#include "saga/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace saga {
namespace {

bool valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  auto letter = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (allow_colon && c == ':');
  };
  if (!letter(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

void check_label_names(const std::string& metric, const std::vector<std::string>& labels,
                       bool histogram) {
  for (const auto& label : labels) {
    if (!valid_name(label, false) || label.starts_with("__"))
      throw std::invalid_argument("metric " + metric + ": invalid label name '" + label + "'");
    if (histogram && label == "le")
      throw std::invalid_argument("metric " + metric + ": a histogram may not use the label 'le'");
    if (std::count(labels.begin(), labels.end(), label) > 1)
      throw std::invalid_argument("metric " + metric + ": label '" + label + "' given twice");
  }
}

// name{a="x",b="y"} (or just name), with an optional extra label last (le for buckets).
void write_series(std::string& out, std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& names, const std::vector<std::string>& values,
                  std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out.append(name).append(suffix);
  if (!names.empty() || !extra_name.empty()) {
    out.push_back('{');
    bool first = true;
    auto label = [&](std::string_view key, std::string_view value) {
      if (!first) out.push_back(',');
      first = false;
      out.append(key).append("=\"").append(escape_label_value(value)).push_back('"');
    };
    for (std::size_t i = 0; i < names.size(); ++i) label(names[i], values[i]);
    if (!extra_name.empty()) label(extra_name, extra_value);
    out.push_back('}');
  }
  out.push_back(' ');
}

void write_sample(std::string& out, const Counter& counter) {
  out.append(format_metric_value(counter.value()));
}
void write_sample(std::string& out, const Gauge& gauge) {
  out.append(format_metric_value(gauge.value()));
}

}  // namespace

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Shortest round-trip digits; plain decimals between 1e-4 and 1e21 ("0.0005", not "5e-04").
  char buffer[64];
  double magnitude = std::fabs(value);
  auto result = magnitude == 0.0 || (magnitude >= 1e-4 && magnitude < 1e21)
                    ? std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed)
                    : std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void Counter::inc(double by) {
  if (!(by >= 0.0)) throw std::invalid_argument("a counter only goes up");
  value_.fetch_add(by, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  if (!bounds_.empty() && std::isinf(bounds_.back()) && bounds_.back() > 0) bounds_.pop_back();
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]))
      throw std::invalid_argument("histogram bucket bounds must be finite");
    if (i > 0 && !(bounds_[i - 1] < bounds_[i]))
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
  }
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double value) {
  auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  std::lock_guard lock(mutex_);
  ++counts_[static_cast<std::size_t>(bucket)];
  sum_ += value;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  snapshot.upper_bounds = bounds_;
  std::lock_guard lock(mutex_);
  std::uint64_t running = 0;
  for (auto count : counts_) snapshot.cumulative.push_back(running += count);
  snapshot.sum = sum_;
  snapshot.count = running;
  return snapshot;
}

template <class Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> buckets)
    : detail::FamilyBase(std::move(name), std::move(help), std::move(label_names)),
      buckets_(std::move(buckets)) {
  if constexpr (std::is_same_v<Metric, Histogram>) (void)Histogram(buckets_);  // validates
  if (label_names_.empty()) child({});
}

template <class Metric>
Metric& Family<Metric>::with(std::initializer_list<std::string_view> label_values) {
  return child(std::vector<std::string>(label_values.begin(), label_values.end()));
}

template <class Metric>
Metric& Family<Metric>::with(const std::vector<std::string>& label_values) {
  return child(label_values);
}

template <class Metric>
Metric& Family<Metric>::child(std::vector<std::string> label_values) {
  if (label_values.size() != label_names_.size())
    throw std::invalid_argument("metric " + name_ + ": " + std::to_string(label_names_.size()) +
                                " label value(s) expected, got " +
                                std::to_string(label_values.size()));
  std::lock_guard lock(mutex_);
  auto found = children_.find(label_values);
  if (found != children_.end()) return *found->second;
  std::unique_ptr<Metric> metric;
  if constexpr (std::is_same_v<Metric, Histogram>)
    metric = std::make_unique<Histogram>(buckets_);
  else
    metric = std::make_unique<Metric>();
  return *children_.emplace(std::move(label_values), std::move(metric)).first->second;
}

template <class Metric>
void Family<Metric>::render(std::string& out) const {
  std::string_view type = std::is_same_v<Metric, Counter> ? "counter"
                          : std::is_same_v<Metric, Gauge> ? "gauge"
                                                          : "histogram";
  out.append("# HELP ").append(name_).append(" ").append(escape_help(help_)).append("\n");
  out.append("# TYPE ").append(name_).append(" ").append(type).append("\n");
  std::lock_guard lock(mutex_);
  for (const auto& [values, metric] : children_) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      Histogram::Snapshot snapshot = metric->snapshot();
      for (std::size_t i = 0; i <= snapshot.upper_bounds.size(); ++i) {
        std::string le = i < snapshot.upper_bounds.size()
                             ? format_metric_value(snapshot.upper_bounds[i])
                             : std::string("+Inf");
        write_series(out, name_, "_bucket", label_names_, values, "le", le);
        out.append(std::to_string(snapshot.cumulative[i])).push_back('\n');
      }
      write_series(out, name_, "_sum", label_names_, values);
      out.append(format_metric_value(snapshot.sum)).push_back('\n');
      write_series(out, name_, "_count", label_names_, values);
      out.append(std::to_string(snapshot.count)).push_back('\n');
    } else {
      write_series(out, name_, "", label_names_, values);
      write_sample(out, *metric);
      out.push_back('\n');
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <class Metric>
Family<Metric>& Metrics::add(std::string name, std::string help,
                             std::vector<std::string> label_names, std::vector<double> buckets,
                             std::string_view kind) {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid metric name '" + name + "'");
  check_label_names(name, label_names, std::is_same_v<Metric, Histogram>);
  std::lock_guard lock(mutex_);
  if (auto known = kinds_.find(name); known != kinds_.end()) {
    auto same = [&](const detail::FamilyBase& family) { return family.name() == name; };
    auto found = std::find_if(families_.begin(), families_.end(),
                              [&](const auto& family) { return same(*family); });
    auto* existing = known->second == kind ? dynamic_cast<Family<Metric>*>(found->get()) : nullptr;
    if (existing && existing->label_names_ == label_names && existing->buckets_ == buckets)
      return *existing;
    throw std::logic_error("metric " + name + " is already registered differently");
  }
  auto family = std::unique_ptr<Family<Metric>>(
      new Family<Metric>(name, std::move(help), std::move(label_names), std::move(buckets)));
  Family<Metric>& result = *family;
  families_.push_back(std::move(family));
  kinds_.emplace(std::move(name), std::string(kind));
  return result;
}

Family<Counter>& Metrics::counter(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return add<Counter>(std::move(name), std::move(help), std::move(label_names), {}, "counter");
}

Family<Gauge>& Metrics::gauge(std::string name, std::string help,
                              std::vector<std::string> label_names) {
  return add<Gauge>(std::move(name), std::move(help), std::move(label_names), {}, "gauge");
}

Family<Histogram>& Metrics::histogram(std::string name, std::string help,
                                      std::vector<std::string> label_names,
                                      std::vector<double> buckets) {
  return add<Histogram>(std::move(name), std::move(help), std::move(label_names),
                        std::move(buckets), "histogram");
}

std::string Metrics::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& family : families_) family->render(out);
  return out;
}

std::vector<double> Metrics::seconds_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> Metrics::long_seconds_buckets() {
  return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600};
}

std::vector<double> Metrics::power_of_two_buckets(double max) {
  std::vector<double> buckets;
  for (double bound = 1; bound <= max; bound *= 2) buckets.push_back(bound);
  return buckets;
}

}  // namespace saga
