#include "engine_metrics.hpp"

namespace saga::detail {

EngineMetrics::EngineMetrics(Metrics& r)
    : published(r.counter("saga_messages_published_total",
                          "Messages handed to the transport: commands (kind=command, re-sends "
                          "included) and saga lifecycle events (kind=event), by message type.",
                          {"kind", "type"})),
      consumed(r.counter("saga_messages_consumed_total",
                         "Inbound messages handled, by message type, consumer (the service that "
                         "replied: the envelope's source) and result (applied, duplicate, "
                         "dead_lettered). Type and consumer are empty when the bytes did not "
                         "decode.",
                         {"type", "consumer", "result"})),
      processing(r.histogram("saga_message_processing_seconds",
                             "Time from taking an inbound message off the transport until its "
                             "turn committed, by message type.",
                             {"type"}, Metrics::seconds_buckets())),
      reply_wait(r.histogram("saga_command_reply_seconds",
                             "Time from a command's commit until its reply was applied, by "
                             "command type.",
                             {"type"}, Metrics::long_seconds_buckets())),
      resends(r.counter("saga_command_resends_total",
                        "Commands re-sent because their reply did not come in time, by type.",
                        {"type"})),
      timeouts(r.counter("saga_command_timeouts_total",
                         "Commands given up on (retry policy ran out), by type.", {"type"})),
      send_refusals(r.counter("saga_send_refusals_total",
                              "Sends the transport refused (back-pressure, no live peer); the "
                              "command stays pending. By destination.",
                              {"destination"})),
      dead_letters(r.counter("saga_dead_letters_total", "Messages dead-lettered, by reason code.",
                             {"reason"})),
      dead_letter_depth(r.gauge("saga_dead_letter_queue_depth",
                                "Dead letters not yet replayed (read from the store at start, "
                                "then kept current).")
                            .with({})),
      user_errors(r.counter("saga_user_code_errors_total",
                            "Exceptions from saga user code (command builders, reply handlers), "
                            "by saga type.",
                            {"saga_type"})),
      started(r.counter("saga_sagas_started_total", "Sagas started, by saga type.", {"saga_type"})),
      sagas(r.gauge("saga_sagas",
                    "Sagas in the store by saga type and status (counted at start, then kept "
                    "current).",
                    {"saga_type", "status"})),
      saga_duration(r.histogram("saga_duration_seconds",
                                "Time from a saga's start to its end, by saga type and outcome "
                                "(Completed, Compensated, Failed).",
                                {"saga_type", "outcome"}, Metrics::long_seconds_buckets())),
      commits(
          r.counter("saga_commits_total", "Store transactions committed by the loop.").with({})),
      commit_failures(r.counter("saga_commit_failures_total",
                                "Loop turns whose store transaction or read failed (retried after "
                                "a backoff), by error code.",
                                {"code"})),
      commit_duration(r.histogram("saga_commit_duration_seconds",
                                  "Time to write one turn's transaction (with the store's sync "
                                  "thread, without its fsync: see saga_commit_durable_seconds).",
                                  {}, Metrics::seconds_buckets())
                          .with({})),
      durable_after(r.histogram("saga_commit_durable_seconds",
                                "Time from the start of a turn's commit until it was durable and "
                                "handed out (its commands sent, its outcomes reported).",
                                {}, Metrics::seconds_buckets())
                        .with({})),
      batch_size(r.histogram("saga_commit_batch_size",
                             "Inputs (messages, saga starts, operator actions, timeouts) per "
                             "committed transaction.",
                             {}, Metrics::power_of_two_buckets(4096))
                     .with({})),
      outbox_pending(r.gauge("saga_outbox_pending_messages",
                             "Committed commands not yet handed to the transport (in the send "
                             "queue or left in the outbox).")
                         .with({})),
      backlogged_commands(r.gauge("saga_outbox_backlog_messages",
                                  "Committed commands left in the outbox only, not in memory: "
                                  "their destination's send queue was full "
                                  "(Options::max_queued_commands), or they were pending at start; "
                                  "read back as it drains.")
                              .with({})),
      awaiting_reply(r.gauge("saga_commands_awaiting_reply",
                             "Commands handed to the transport whose reply has not been applied.")
                         .with({})),
      oldest_pending_age(r.gauge("saga_oldest_pending_age_seconds",
                                 "Age of the oldest command not yet handed to the transport "
                                 "(0 when none).")
                             .with({})),
      oldest_awaiting_age(r.gauge("saga_oldest_awaiting_reply_age_seconds",
                                  "Age of the oldest command still awaiting its reply (0 when "
                                  "none).")
                              .with({})),
      cached_sagas(
          r.gauge("saga_cached_sagas", "Sagas held in memory (the saga cache) after the last turn.")
              .with({})),
      cache_evictions(r.counter("saga_cache_evictions_total",
                                "Sagas not ended that left the cache because it was full "
                                "(Options::max_cached_sagas); read back when next needed.")
                          .with({})),
      cache_loads(r.counter("saga_cache_loads_total",
                            "Sagas read from the store into the cache: after a restart or an "
                            "eviction, or an ended saga to journal a late or duplicate reply.")
                      .with({})),
      lag_alert_level(r.gauge("saga_lag_alert_level",
                              "Consumer lag alert: 0 ok, 1 warning, 2 critical. kind=pending: "
                              "pending plus awaiting commands; kind=delay: age of the oldest.",
                              {"kind"})),
      lag_alert_threshold(r.gauge("saga_lag_alert_threshold",
                                  "The configured lag alert thresholds (messages for "
                                  "kind=pending, seconds for kind=delay).",
                                  {"kind", "level"})) {}

}  // namespace saga::detail
