// The metrics registry and its Prometheus text exposition (saga/metrics.hpp).
#include "saga/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

TEST(MetricsRegistry, CounterRendersHelpTypeAndOneLinePerLabelSet) {
  saga::Metrics metrics;
  auto& sent = metrics.counter("saga_sent_total", "Messages sent.", {"type", "kind"});
  sent.with({"b.Two", "command"}).inc();
  sent.with({"a.One", "command"}).inc(2);
  sent.with({"a.One", "command"}).inc();
  EXPECT_EQ(metrics.render(),
            "# HELP saga_sent_total Messages sent.\n"
            "# TYPE saga_sent_total counter\n"
            "saga_sent_total{type=\"a.One\",kind=\"command\"} 3\n"
            "saga_sent_total{type=\"b.Two\",kind=\"command\"} 1\n");
}

TEST(MetricsRegistry, FamilyWithoutLabelsIsRenderedAsZeroBeforeItsFirstUpdate) {
  saga::Metrics metrics;
  metrics.gauge("saga_depth", "Depth.");
  EXPECT_EQ(metrics.render(), "# HELP saga_depth Depth.\n# TYPE saga_depth gauge\nsaga_depth 0\n");
}

TEST(MetricsRegistry, GaugeGoesUpAndDownAndIsSet) {
  saga::Metrics metrics;
  auto& depth = metrics.gauge("saga_depth", "Depth.").with({});
  depth.inc(5);
  depth.dec(2);
  EXPECT_EQ(depth.value(), 3);
  depth.set(-1.5);
  EXPECT_NE(metrics.render().find("saga_depth -1.5\n"), std::string::npos);
}

TEST(MetricsRegistry, LabelValuesEscapeBackslashQuoteAndNewline) {
  saga::Metrics metrics;
  metrics.counter("saga_x_total", "X.", {"reason"}).with({"a\\b \"c\"\nd"}).inc();
  EXPECT_NE(metrics.render().find("saga_x_total{reason=\"a\\\\b \\\"c\\\"\\nd\"} 1\n"),
            std::string::npos)
      << metrics.render();
}

TEST(MetricsRegistry, HelpEscapesBackslashAndNewlineButNotQuotes) {
  saga::Metrics metrics;
  metrics.counter("saga_x_total", "Line one\nsays \"C:\\temp\".");
  EXPECT_NE(metrics.render().find("# HELP saga_x_total Line one\\nsays \"C:\\\\temp\".\n"),
            std::string::npos)
      << metrics.render();
}

TEST(MetricsRegistry, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  saga::Metrics metrics;
  auto& took = metrics.histogram("saga_took_seconds", "Took.", {"type"}, {0.25, 0.5, 1});
  for (double value : {0.125, 0.25, 0.375, 0.75, 2.0}) took.with({"a"}).observe(value);
  EXPECT_EQ(metrics.render(),
            "# HELP saga_took_seconds Took.\n"
            "# TYPE saga_took_seconds histogram\n"
            "saga_took_seconds_bucket{type=\"a\",le=\"0.25\"} 2\n"  // upper bounds are inclusive
            "saga_took_seconds_bucket{type=\"a\",le=\"0.5\"} 3\n"
            "saga_took_seconds_bucket{type=\"a\",le=\"1\"} 4\n"
            "saga_took_seconds_bucket{type=\"a\",le=\"+Inf\"} 5\n"
            "saga_took_seconds_sum{type=\"a\"} 3.5\n"
            "saga_took_seconds_count{type=\"a\"} 5\n");
}

TEST(MetricsRegistry, HistogramWithoutLabelsPutsOnlyLeInBraces) {
  saga::Metrics metrics;
  metrics.histogram("saga_size", "Size.", {}, {1, 2}).with({}).observe(2);
  std::string text = metrics.render();
  EXPECT_NE(text.find("saga_size_bucket{le=\"1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("saga_size_bucket{le=\"2\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("saga_size_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("saga_size_sum 2\nsaga_size_count 1\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, ValuesUseShortestRoundTripAndSpecialNames) {
  EXPECT_EQ(saga::format_metric_value(3), "3");
  EXPECT_EQ(saga::format_metric_value(0.1), "0.1");
  EXPECT_EQ(saga::format_metric_value(0.0005), "0.0005");
  EXPECT_EQ(saga::format_metric_value(1e-5), "1e-05");
  EXPECT_EQ(saga::format_metric_value(123456789), "123456789");
  EXPECT_EQ(saga::format_metric_value(-2.5), "-2.5");
  EXPECT_EQ(saga::format_metric_value(1e21), "1e+21");
  EXPECT_EQ(saga::format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(saga::format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(saga::format_metric_value(std::nan("")), "NaN");
}

TEST(MetricsRegistry, FamiliesRenderInRegistrationOrder) {
  saga::Metrics metrics;
  metrics.gauge("saga_b", "B.");
  metrics.counter("saga_a_total", "A.");
  std::string text = metrics.render();
  EXPECT_LT(text.find("saga_b"), text.find("saga_a_total"));
}

TEST(MetricsRegistry, InvalidNamesAndLabelsAreRefused) {
  saga::Metrics metrics;
  EXPECT_THROW(metrics.counter("9lives_total", "x"), std::invalid_argument);
  EXPECT_THROW(metrics.counter("saga-x_total", "x"), std::invalid_argument);
  EXPECT_THROW(metrics.counter("saga_x_total", "x", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(metrics.counter("saga_x_total", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(metrics.counter("saga_x_total", "x", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("saga_h", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(metrics.histogram("saga_h", "x", {}, {2, 1}), std::invalid_argument);
  EXPECT_NO_THROW(metrics.counter("saga:recorded_total", "colons are allowed in names"));
}

TEST(MetricsRegistry, WrongNumberOfLabelValuesIsRefused) {
  saga::Metrics metrics;
  auto& family = metrics.counter("saga_x_total", "x", {"a", "b"});
  EXPECT_THROW(family.with({"only-one"}), std::invalid_argument);
}

TEST(MetricsRegistry, CounterRefusesToGoDown) {
  saga::Metrics metrics;
  EXPECT_THROW(metrics.counter("saga_x_total", "x").with({}).inc(-1), std::invalid_argument);
}

TEST(MetricsRegistry, SameDefinitionReturnsTheSameFamilyADifferentOneIsRefused) {
  saga::Metrics metrics;
  auto& first = metrics.counter("saga_x_total", "x", {"a"});
  EXPECT_EQ(&metrics.counter("saga_x_total", "x", {"a"}), &first);
  EXPECT_THROW(metrics.counter("saga_x_total", "x", {"b"}), std::logic_error);
  EXPECT_THROW(metrics.gauge("saga_x_total", "x", {"a"}), std::logic_error);
}

TEST(MetricsRegistry, ConcurrentUpdatesAreAllCounted) {
  saga::Metrics metrics;
  auto& counter = metrics.counter("saga_x_total", "x", {"t"});
  auto& histogram = metrics.histogram("saga_h", "h", {"t"}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        counter.with({t % 2 ? "odd" : "even"}).inc();
        histogram.with({"all"}).observe(0.5);
        if (i % 1000 == 0) (void)metrics.render();
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.with({"odd"}).value() + counter.with({"even"}).value(), 40000);
  EXPECT_EQ(histogram.with({"all"}).snapshot().count, 40000u);
  EXPECT_EQ(histogram.with({"all"}).snapshot().cumulative.front(), 40000u);
}

}  // namespace
