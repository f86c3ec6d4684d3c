#include "saga/participant.hpp"

#include <algorithm>
#include <cstddef>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <vector>

#include "saga/detail/crash_point.hpp"
#include "saga/envelope.hpp"

namespace saga {

struct Participant::Impl {
  Impl(ParticipantOptions options_in, ParticipantLedger& ledger_in)
      : options(std::move(options_in)), ledger(ledger_in), connection(options.connection) {}

  struct Registration {
    int version;
    Handler handler;
    FailureBuilder failure;
  };

  ParticipantOptions options;
  ParticipantLedger& ledger;
  ZmqParticipantConnection connection;
  std::map<std::string, Registration, std::less<>> handlers;
  Upcasters upcasters;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> handled{0}, duplicates{0}, failures{0}, errors{0},
      compensated_first{0};

  void report(const std::string& what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (options.on_error)
      options.on_error(what);
    else
      std::cerr << options.connection.service << ": " << what << "\n";
  }

  std::string encode_reply(const Envelope& command, const Reply& reply) const {
    Envelope envelope;
    envelope.event_id = new_uuid();
    envelope.event_type = reply.type;
    envelope.timestamp = std::chrono::system_clock::now();
    envelope.version = reply.version;
    envelope.source = options.connection.service;
    envelope.correlation_id = command.correlation_id;
    envelope.causation_id = command.event_id;
    envelope.kind = MessageKind::reply;
    envelope.data = reply.data;
    std::string bytes = encode_envelope(envelope);
    if (bytes.size() > options.max_reply_bytes)
      throw std::length_error("the reply '" + reply.type + "' is " + std::to_string(bytes.size()) +
                              " bytes encoded, more than max_reply_bytes (" +
                              std::to_string(options.max_reply_bytes) + ")");
    return bytes;
  }

  // The reply to send for a command, and whether it comes from the ledger (a duplicate).
  struct Answer {
    std::string reply;
    bool duplicate = false;
  };

  // The answer to a command the ledger recorded before: a duplicate answered again, or none for
  // a command compensated before it arrived (an empty reply): the orchestrator gave up on it.
  std::optional<Answer> answer_again(std::string reply) {
    if (reply.empty()) {
      compensated_first.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    duplicates.fetch_add(1, std::memory_order_relaxed);
    return Answer{std::move(reply), true};
  }

  // A decoded command with its handler and its payload upcast to the handler's version; or, for
  // a command this build cannot route but handled before, the reply recorded then.
  struct Routed {
    Envelope command;
    const Registration* registration = nullptr;
    nlohmann::json payload;
    std::optional<std::string> recorded_reply = std::nullopt;
  };

  // A command this participant cannot route any more (no handler, no upcaster for its version)
  // may be the re-send of one it handled before, whose reply was lost: it is answered from the
  // ledger. Anything else is reported and not answered.
  std::optional<Routed> refuse_unless_answered(Routed routed, const std::string& refusal) {
    auto recorded = ledger.recorded_reply(routed.command.event_id);
    if (recorded && recorded.value()) {
      routed.recorded_reply = std::move(recorded.value());
      return routed;
    }
    if (!recorded)
      report("looking up " + routed.command.event_id + ": " + recorded.error().message);
    report(refusal);
    return std::nullopt;
  }

  std::optional<Routed> route(const std::string& bytes) {
    DecodeResult decoded = decode_envelope(bytes);
    if (auto* error = std::get_if<EnvelopeError>(&decoded)) {
      report("undecodable command: " + error->message);
      return std::nullopt;
    }
    Routed routed{std::move(std::get<Envelope>(decoded)), nullptr, {}};
    const Envelope& command = routed.command;
    auto registration = handlers.find(command.event_type);
    if (registration == handlers.end()) {
      std::string refusal =
          "no handler for command '" + command.event_type + "' (" + command.event_id + ")";
      return refuse_unless_answered(std::move(routed), refusal);
    }
    routed.registration = &registration->second;
    auto upgraded = upcasters.upgrade(command.event_type, command.version,
                                      registration->second.version, command.data);
    if (auto* refusal = std::get_if<Upcasters::Refusal>(&upgraded)) {
      std::string why = refusal->reason + " (" + command.event_id + ")";
      return refuse_unless_answered(std::move(routed), why);
    }
    routed.payload = std::move(std::get<nlohmann::json>(upgraded));
    return routed;
  }

  std::string run_handler(const Routed& routed, ParticipantLedger::Unit& unit) const {
    std::string reply =
        encode_reply(routed.command, routed.registration->handler(routed.payload, unit));
    note_compensated(routed.command, unit);
    return reply;
  }

  // A compensating command names the step command it undoes: that one, if it arrives later, is
  // not handled (ParticipantLedger::record_compensated).
  void note_compensated(const Envelope& command, ParticipantLedger::Unit& unit) const {
    if (!command.compensates.empty() && command.compensates != command.event_id)
      ledger.record_compensated(unit, command.compensates);
  }

  // Handles one command in transactions of its own: attempts `first_attempt` to
  // handler_attempts, then the failure reply. The reply to send, or nullopt when it cannot be
  // answered now.
  std::optional<Answer> handle_alone(const Routed& routed, int first_attempt,
                                     std::string last_error) {
    const Envelope& command = routed.command;
    for (int attempt = first_attempt; attempt <= std::max(1, options.handler_attempts); ++attempt) {
      try {
        auto result = ledger.process_once(command.event_id, [&](ParticipantLedger::Unit& unit) {
          return run_handler(routed, unit);
        });
        if (!result) {
          // The store failed, not the handler: nothing was recorded, and a failure reply now
          // would be a business answer to an infrastructure problem. Not answered; the
          // orchestrator re-sends the command after its timeout.
          report("storing '" + command.event_type + "' (" + command.event_id +
                 ") failed, not answered: " + result.error().message);
          return std::nullopt;
        }
        if (result.value().duplicate) return answer_again(std::move(result.value().reply));
        handled.fetch_add(1, std::memory_order_relaxed);
        return Answer{std::move(result.value().reply), false};
      } catch (const std::exception& error) {
        last_error = error.what();
      } catch (...) {
        last_error = "unknown exception";
      }
    }
    failures.fetch_add(1, std::memory_order_relaxed);
    if (!routed.registration->failure) {
      report("handling '" + command.event_type + "' failed, no reply sent: " + last_error);
      return std::nullopt;
    }
    try {
      // The failure reply is recorded like any other, so a duplicate gets the same answer.
      auto result = ledger.process_once(command.event_id, [&](ParticipantLedger::Unit& unit) {
        std::string reply =
            encode_reply(command, routed.registration->failure(routed.payload, last_error));
        note_compensated(command, unit);
        return reply;
      });
      if (result && result.value().duplicate) return answer_again(std::move(result.value().reply));
      if (result) return Answer{std::move(result.value().reply), false};
      report("recording the failure of '" + command.event_type + "': " + result.error().message);
    } catch (const std::exception& error) {
      report("building the failure reply of '" + command.event_type + "': " + error.what());
    } catch (...) {
      report("building the failure reply of '" + command.event_type +
             "': an exception that is not a std::exception");
    }
    return std::nullopt;
  }

  // Handles the commands together: one transaction for all of them (group commit). A command
  // whose handler threw, or all of them when the batch could not be committed, go on alone.
  std::vector<std::optional<Answer>> handle_batch(const std::vector<Routed>& batch) {
    std::vector<std::optional<Answer>> replies(batch.size());
    std::vector<std::size_t> to_handle;
    for (std::size_t index = 0; index < batch.size(); ++index) {
      if (batch[index].recorded_reply)
        replies[index] = answer_again(*batch[index].recorded_reply);
      else
        to_handle.push_back(index);
    }
    if (to_handle.size() <= 1) {
      for (std::size_t index : to_handle) replies[index] = handle_alone(batch[index], 1, "");
      return replies;
    }
    std::vector<std::string> ids;
    ids.reserve(to_handle.size());
    for (std::size_t index : to_handle) ids.push_back(batch[index].command.event_id);
    StoreResult<std::vector<ParticipantLedger::Outcome>> outcomes =
        ledger.process_batch(ids, [&](std::size_t position, ParticipantLedger::Unit& unit) {
          return run_handler(batch[to_handle[position]], unit);
        });
    if (!outcomes && outcomes.error().code == StoreErrorCode::busy) {
      // Locked by another connection past its busy timeout: one by one, each command would
      // wait as long again. Not answered; the orchestrator re-sends them.
      report("storing " + std::to_string(to_handle.size()) +
             " commands failed, not answered: " + outcomes.error().message);
      return replies;
    }
    for (std::size_t position = 0; position < to_handle.size(); ++position) {
      const std::size_t index = to_handle[position];
      if (!outcomes) {
        replies[index] = handle_alone(batch[index], 1, "");
        continue;
      }
      ParticipantLedger::Outcome& outcome = outcomes.value()[position];
      using Kind = ParticipantLedger::Outcome::Kind;
      if (outcome.kind == Kind::failed) {
        replies[index] = handle_alone(batch[index], 2, outcome.error);
        continue;
      }
      if (outcome.kind == Kind::duplicate) {
        replies[index] = answer_again(std::move(outcome.reply));
        continue;
      }
      handled.fetch_add(1, std::memory_order_relaxed);
      replies[index] = Answer{std::move(outcome.reply), false};
    }
    return replies;
  }
};

Participant::Participant(ParticipantOptions options, ParticipantLedger& ledger)
    : impl_(std::make_unique<Impl>(std::move(options), ledger)) {}

Participant::~Participant() = default;

void Participant::add(std::string_view type, int version, Handler handler, FailureBuilder failure) {
  if (!impl_->handlers
           .emplace(std::string(type),
                    Impl::Registration{version, std::move(handler), std::move(failure)})
           .second)
    throw std::logic_error("a handler for '" + std::string(type) + "' is already registered");
}

void Participant::register_upcaster(std::string_view command_type, int from_version,
                                    Upcaster upcaster) {
  impl_->upcasters.add(command_type, from_version, std::move(upcaster));
}

std::size_t Participant::poll(std::chrono::milliseconds wait) {
  Impl& s = *impl_;
  auto first = s.connection.receive(wait);
  if (!first) return 0;
  std::vector<Impl::Routed> batch;
  if (auto routed = s.route(*first)) batch.push_back(std::move(*routed));
  const std::size_t limit = std::max<std::size_t>(1, s.options.max_batch);
  std::size_t bytes = first->size();
  for (std::size_t received = 1; received < limit && bytes < s.options.max_batch_bytes;
       ++received) {
    auto more = s.connection.receive(std::chrono::milliseconds{0});
    if (!more) break;
    bytes += more->size();
    if (auto routed = s.route(*more)) batch.push_back(std::move(*routed));
  }
  if (batch.empty()) return 0;
  std::vector<std::optional<Impl::Answer>> replies = s.handle_batch(batch);
  if (std::any_of(replies.begin(), replies.end(), [](const auto& reply) { return reply; }))
    detail::crash_point("participant.after_commit");  // committed, nothing sent yet
  std::size_t answered = 0;
  for (std::size_t index = 0; index < batch.size(); ++index) {
    if (!replies[index]) continue;
    ++answered;
    if (!s.connection.send(replies[index]->reply))
      s.report("could not queue the reply to " + batch[index].command.event_id);
    if (s.options.on_answered)
      s.options.on_answered(batch[index].command, replies[index]->duplicate);
  }
  return answered;
}

void Participant::run() {
  while (!impl_->stopping.load()) poll(std::chrono::milliseconds{100});
}

void Participant::stop() {
  impl_->stopping.store(true);
}

Participant::Stats Participant::stats() const {
  return {impl_->handled.load(), impl_->duplicates.load(), impl_->failures.load(),
          impl_->errors.load(), impl_->compensated_first.load()};
}

}  // namespace saga
