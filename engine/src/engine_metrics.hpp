// The engine's metric families (the README's "Monitoring" section lists them). Internal.
#pragma once

#include "saga/metrics.hpp"

namespace saga::detail {

struct EngineMetrics {
  explicit EngineMetrics(Metrics& registry);

  Family<Counter>& published;      // kind, type
  Family<Counter>& consumed;       // type, consumer, result
  Family<Histogram>& processing;   // type
  Family<Histogram>& reply_wait;   // type (of the command)
  Family<Counter>& resends;        // type
  Family<Counter>& timeouts;       // type
  Family<Counter>& send_refusals;  // destination
  Family<Counter>& dead_letters;   // reason
  Gauge& dead_letter_depth;
  Family<Counter>& user_errors;      // saga_type
  Family<Counter>& started;          // saga_type
  Family<Gauge>& sagas;              // saga_type, status
  Family<Histogram>& saga_duration;  // saga_type, outcome
  Counter& commits;
  Family<Counter>& commit_failures;  // code
  Histogram& commit_duration;
  Histogram& durable_after;
  Histogram& batch_size;
  Gauge& outbox_pending;
  Gauge& backlogged_commands;
  Gauge& awaiting_reply;
  Gauge& oldest_pending_age;
  Gauge& oldest_awaiting_age;
  Gauge& cached_sagas;
  Counter& cache_evictions;
  Counter& cache_loads;
  Family<Gauge>& lag_alert_level;      // kind
  Family<Gauge>& lag_alert_threshold;  // kind, level
};

}  // namespace saga::detail
