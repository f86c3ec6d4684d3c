#include "saga/participant.hpp"

#include <iostream>
#include <stdexcept>

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
  std::atomic<std::uint64_t> handled{0}, duplicates{0}, failures{0}, errors{0};

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
    return encode_envelope(envelope);
  }

  // The reply to send for `command`, or nullopt when it cannot be answered now.
  std::optional<std::string> handle(const Envelope& command) {
    auto registration = handlers.find(command.event_type);
    if (registration == handlers.end()) {
      report("no handler for command '" + command.event_type + "' (" + command.event_id + ")");
      return std::nullopt;
    }
    auto upgraded = upcasters.upgrade(command.event_type, command.version,
                                      registration->second.version, command.data);
    if (auto* refusal = std::get_if<Upcasters::Refusal>(&upgraded)) {
      report(refusal->reason + " (" + command.event_id + ")");
      return std::nullopt;
    }
    const nlohmann::json& payload = std::get<nlohmann::json>(upgraded);
    std::string last_error;
    for (int attempt = 1; attempt <= std::max(1, options.handler_attempts); ++attempt) {
      try {
        auto result = ledger.process_once(command.event_id, [&](ParticipantLedger::Unit& unit) {
          return encode_reply(command, registration->second.handler(payload, unit));
        });
        if (!result) {
          last_error = result.error().message;
          continue;
        }
        (result.value().duplicate ? duplicates : handled).fetch_add(1, std::memory_order_relaxed);
        return result.value().reply;
      } catch (const std::exception& error) {
        last_error = error.what();
      } catch (...) {
        last_error = "unknown exception";
      }
    }
    failures.fetch_add(1, std::memory_order_relaxed);
    if (!registration->second.failure) {
      report("handling '" + command.event_type + "' failed, no reply sent: " + last_error);
      return std::nullopt;
    }
    try {
      // The failure reply is recorded like any other, so a duplicate gets the same answer.
      auto result = ledger.process_once(command.event_id, [&](ParticipantLedger::Unit&) {
        return encode_reply(command, registration->second.failure(payload, last_error));
      });
      if (result) return result.value().reply;
      report("recording the failure of '" + command.event_type + "': " + result.error().message);
    } catch (const std::exception& error) {
      report("building the failure reply of '" + command.event_type + "': " + error.what());
    }
    return std::nullopt;
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

bool Participant::poll(std::chrono::milliseconds wait) {
  auto bytes = impl_->connection.receive(wait);
  if (!bytes) return false;
  DecodeResult decoded = decode_envelope(*bytes);
  if (auto* error = std::get_if<EnvelopeError>(&decoded)) {
    impl_->report("undecodable command: " + error->message);
    return false;
  }
  const Envelope& command = std::get<Envelope>(decoded);
  if (auto reply = impl_->handle(command)) {
    detail::crash_point("participant.after_commit");
    if (!impl_->connection.send(*reply))
      impl_->report("could not queue the reply to " + command.event_id);
    return true;
  }
  return false;
}

void Participant::run() {
  while (!impl_->stopping.load()) poll(std::chrono::milliseconds{100});
}

void Participant::stop() {
  impl_->stopping.store(true);
}

Participant::Stats Participant::stats() const {
  return {impl_->handled.load(), impl_->duplicates.load(), impl_->failures.load(),
          impl_->errors.load()};
}

}  // namespace saga
