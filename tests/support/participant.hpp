// Test support: plays the participant services against an engine on a MemoryTransport.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "saga/envelope.hpp"
#include "saga/memory_transport.hpp"

namespace saga::test {

struct SentCommand {
  std::string destination;
  Envelope envelope;
  std::string bytes;
};

// Decodes everything the engine sent since the last call.
inline std::vector<SentCommand> take_commands(MemoryTransport& transport) {
  std::vector<SentCommand> commands;
  for (auto& sent : transport.take_sent()) {
    auto decoded = decode_envelope(sent.bytes);
    if (auto* error = std::get_if<EnvelopeError>(&decoded)) {
      ADD_FAILURE() << "engine sent an invalid envelope: " << error->message;
      continue;
    }
    commands.push_back({sent.destination, std::get<Envelope>(decoded), sent.bytes});
  }
  return commands;
}

// The encoded reply a participant sends for `command`.
inline std::string reply_bytes(const Envelope& command, std::string type, nlohmann::json data,
                               std::optional<std::string> event_id = std::nullopt,
                               int version = 1) {
  Envelope reply;
  reply.event_id = event_id ? *event_id : new_uuid();
  reply.event_type = std::move(type);
  reply.timestamp = std::chrono::system_clock::now();
  reply.version = version;
  reply.source = "test-participant";
  reply.correlation_id = command.correlation_id;
  reply.causation_id = command.event_id;
  reply.kind = MessageKind::reply;
  reply.data = std::move(data);
  return encode_envelope(reply);
}

}  // namespace saga::test
