// The message envelope: one JSON object per message, the seed's "Event Schema" plus the fields a
// saga needs. See docs/wire-protocol.md for the format of every field.
//
//   {"eventId": "<uuid>", "eventType": "inventory.Reserve", "timestamp": "<RFC 3339 UTC>",
//    "version": "1", "source": "orchestrator", "correlationId": "<saga id>",
//    "causationId": "<eventId of the message that caused this one>", "kind": "command",
//    "data": {...}}
//
// Required: eventId, eventType, timestamp, data. Optional: version (default "1"), source,
// correlationId, causationId, compensates, kind (default: unspecified, the receiver decides).
//
// Errors: decode_envelope() never throws for bad input; it returns an EnvelopeError naming the
// defect. Thread safety: free functions without shared state; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "saga/clock.hpp"

namespace saga {

enum class MessageKind { unspecified, command, reply, event };

std::string_view to_string(MessageKind kind) noexcept;

struct Envelope {
  std::string event_id;        // UUID, lower-case canonical 8-4-4-4-12 form
  std::string event_type;      // stable type name, e.g. "inventory.Reserve"
  Timestamp timestamp;         // when the message was created
  int version = 1;             // major version of the payload schema; "2.1" decodes as 2
  std::string source;          // sending service name; may be empty
  std::string correlation_id;  // the saga id; may be empty for events not about a saga
  std::string causation_id;    // eventId of the message that caused this one; may be empty
  // On a compensating command: the eventId of the step command it undoes, which the participant
  // may never have received (the step timed out). Empty otherwise.
  std::string compensates;
  MessageKind kind = MessageKind::unspecified;
  nlohmann::json data = nlohmann::json::object();  // always a JSON object
};

// Every defect decode_envelope() can report. Stable names (to_string) are used as dead-letter
// reason codes and metric labels.
enum class EnvelopeErrorCode {
  too_large,        // more bytes than the receiver's limit
  too_deep,         // arrays and objects nested deeper than kMaxEnvelopeDepth
  not_json,         // the bytes do not parse as JSON
  not_object,       // valid JSON, but not an object
  missing_field,    // a required field is absent
  wrong_type,       // a field has the wrong JSON type
  empty_field,      // a required string field is empty
  bad_uuid,         // eventId (or causationId, compensates) is not a UUID
  bad_timestamp,    // timestamp is not RFC 3339 date-time
  bad_version,      // version is not "<major>" or "<major>.<minor>" with major >= 1
  unknown_kind,     // kind is not command, reply or event
  data_not_object,  // data is present but not an object
};

std::string_view to_string(EnvelopeErrorCode code) noexcept;

struct EnvelopeError {
  EnvelopeErrorCode code;
  std::string field;    // the offending field, empty when not about one field
  std::string message;  // human-readable, names the field and what was expected
};

using DecodeResult = std::variant<Envelope, EnvelopeError>;

// Default limit on an encoded envelope; transports and the engine may configure their own.
inline constexpr std::size_t kDefaultMaxMessageBytes = 1024 * 1024;

// The deepest nesting of arrays and objects an envelope may have, counting the envelope itself
// as 1 (so `data` holds 63 levels). Checked before parsing: nlohmann::json copies and serializes
// values recursively, and a message a few hundred thousand levels deep would overflow the stack
// of whatever later copied or journaled its data.
inline constexpr std::size_t kMaxEnvelopeDepth = 64;

// Parses and validates. Bytes longer than max_bytes are rejected before parsing.
DecodeResult decode_envelope(std::string_view bytes,
                             std::size_t max_bytes = kDefaultMaxMessageBytes);

// Serializes to compact JSON. Optional fields that are empty (source, correlationId,
// causationId, compensates, unspecified kind) are omitted. Never fails for a well-formed Envelope.
std::string encode_envelope(const Envelope& envelope);
// The same with the data member already serialized: `data_json` (the compact JSON text of an
// object, e.g. from nlohmann::json::dump) is written as is and envelope.data is ignored. For a
// caller that needs the data's text anyway, so the payload is serialized once.
std::string encode_envelope(const Envelope& envelope, std::string_view data_json);

// A new time-ordered UUID (RFC 9562 version 7: Unix milliseconds, then random bits) in canonical
// lower-case form: ids made later sort later, which keeps the store's id indexes compact and
// their writes local. Unique across threads and forked processes. Thread-safe.
std::string new_uuid();
bool is_uuid(std::string_view text) noexcept;

// Strict RFC 3339 date-time ("2020-07-06T10:30:00Z", fractions and offsets allowed).
std::optional<Timestamp> parse_rfc3339(std::string_view text) noexcept;

}  // namespace saga
