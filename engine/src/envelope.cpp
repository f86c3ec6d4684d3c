#include "saga/envelope.hpp"

#include "saga/detail/envelope_document.hpp"
#include "saga/detail/json_text.hpp"

#include <pthread.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>

namespace saga {
namespace {

using nlohmann::json;

constexpr std::size_t kQuotedValueLimit = 64;
constexpr std::size_t kParserMessageLimit = 200;

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr bool is_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

constexpr char to_lower_ascii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// A bounded, JSON-quoted rendering of a bad value for an error message. Cut on a UTF-8 character
// boundary so the message stays valid UTF-8.
std::string quote(std::string_view value) {
  const bool truncated = value.size() > kQuotedValueLimit;
  if (truncated) {
    std::size_t n = kQuotedValueLimit;
    while (n > 0 && (static_cast<unsigned char>(value[n]) & 0xC0) == 0x80) --n;
    value = value.substr(0, n);
  }
  std::string out = json(std::string(value)).dump(-1, ' ', false, json::error_handler_t::replace);
  if (truncated) out += "...";
  return out;
}

// Printable ASCII only; anything else as \xNN. Used for parser diagnostics, which may echo
// arbitrary input bytes.
std::string printable(std::string_view text, std::size_t limit) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : text) {
    if (out.size() >= limit) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

// Recovers the parser's diagnostic for bytes that failed to parse, without exceptions.
class ParseErrorSax final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const json::exception& ex) override {
    message_ = ex.what();
    return false;
  }

  std::string message() const {
    std::string_view text = message_;
    if (auto end = text.find("] ");
        !text.empty() && text.front() == '[' && end != std::string_view::npos) {
      text.remove_prefix(end + 2);
    }
    return printable(text, kParserMessageLimit);
  }

 private:
  std::string message_;
};

std::string describe_parse_failure(std::string_view bytes) {
  ParseErrorSax sax;
  try {
    json::sax_parse(bytes.data(), bytes.data() + bytes.size(), &sax);
  } catch (const json::exception& ex) {
    return printable(ex.what(), kParserMessageLimit);
  }
  return sax.message();
}

// How many times `c` occurs in `text`, counting no further than limit + 1 (memchr: vectorized).
std::size_t occurrences(std::string_view text, char c, std::size_t limit) noexcept {
  std::size_t found = 0;
  const char* at = text.data();
  const char* const end = text.data() + text.size();
  while (found <= limit && at < end) {
    at = static_cast<const char*>(std::memchr(at, c, static_cast<std::size_t>(end - at)));
    if (at == nullptr) break;
    ++found;
    ++at;
  }
  return found;
}

// Walks the arrays and objects of JSON text from `at`, outside strings (malformed text is left to
// the parser), to the first byte that opens level `limit` + 1 or, with `stop_when_closed`, that
// closes the level opened at `at`: one past that byte. npos when there is none.
std::size_t walk_nesting(std::string_view text, std::size_t at, std::size_t limit,
                         bool stop_when_closed) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = at; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i + 1;
    } else if ((c == ']' || c == '}') && depth > 0) {
      if (--depth == 0 && stop_when_closed) return i + 1;
    }
  }
  return std::string_view::npos;
}

// Whether arrays and objects nest deeper than `limit` in JSON text, found without parsing it.
bool nests_deeper_than(std::string_view text, std::size_t limit) noexcept {
  // Fewer opening brackets than the limit cannot nest deeper: counting them settles the usual
  // envelope, and only bracket-heavy text is walked byte by byte.
  if (occurrences(text, '[', limit) + occurrences(text, '{', limit) <= limit) return false;
  return walk_nesting(text, 0, limit, false) != std::string_view::npos;
}

enum class TimeParse { ok, syntax, out_of_range };

struct ParsedTime {
  TimeParse status = TimeParse::syntax;
  Timestamp at{};
};

// Parses exactly `width` decimal digits at s[pos].
bool digits(std::string_view s, std::size_t pos, std::size_t width, int& value) noexcept {
  if (pos + width > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (!is_digit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  value = v;
  return true;
}

// date-time per RFC 3339 section 5.6, with 't' and 'z' accepted as the RFC's note allows.
ParsedTime parse_time(std::string_view s) noexcept {
  using namespace std::chrono;
  ParsedTime result;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, month) ||
      s[7] != '-' || !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
      !digits(s, 11, 2, hour) || s[13] != ':' || !digits(s, 14, 2, minute) || s[16] != ':' ||
      !digits(s, 17, 2, second)) {
    return result;
  }
  const year_month_day ymd{std::chrono::year{year},
                           std::chrono::month{static_cast<unsigned>(month)},
                           std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 60) return result;

  std::size_t pos = 19;
  std::int64_t nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    int kept = 0;
    while (pos < s.size() && is_digit(s[pos])) {
      if (kept < 9) {
        nanos = nanos * 10 + (s[pos] - '0');
        ++kept;
      }
      ++pos;
    }
    if (pos == start) return result;
    for (; kept < 9; ++kept) nanos *= 10;
  }

  std::int64_t offset_seconds = 0;
  if (pos >= s.size()) return result;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int off_hour = 0, off_minute = 0;
    if (!digits(s, pos + 1, 2, off_hour) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, off_minute) || off_hour > 23 || off_minute > 59) {
      return result;
    }
    offset_seconds = (off_hour * 3600 + off_minute * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return result;
  }
  if (pos != s.size()) return result;

  const std::int64_t total =
      static_cast<std::int64_t>(sys_days{ymd}.time_since_epoch().count()) * 86400 + hour * 3600 +
      minute * 60 + second - offset_seconds;
  constexpr std::int64_t kLimit = duration_cast<seconds>(Timestamp::duration::max()).count() - 1;
  if (total >= kLimit || total <= -kLimit) {
    result.status = TimeParse::out_of_range;
    return result;
  }
  result.at = Timestamp{duration_cast<Timestamp::duration>(seconds{total}) +
                        duration_cast<Timestamp::duration>(nanoseconds{nanos})};
  result.status = TimeParse::ok;
  return result;
}

// "<major>" or "<major>.<minor>", digits only, 1 <= major <= INT_MAX.
std::optional<int> parse_version(std::string_view s) noexcept {
  const std::size_t dot = s.find('.');
  const std::string_view major = s.substr(0, dot);
  if (major.empty()) return std::nullopt;
  for (char c : major) {
    if (!is_digit(c)) return std::nullopt;
  }
  if (dot != std::string_view::npos) {
    const std::string_view minor = s.substr(dot + 1);
    if (minor.empty()) return std::nullopt;
    for (char c : minor) {
      if (!is_digit(c)) return std::nullopt;
    }
  }
  int value = 0;
  const auto [end, ec] = std::from_chars(major.data(), major.data() + major.size(), value);
  if (ec != std::errc{} || end != major.data() + major.size() || value < 1) return std::nullopt;
  return value;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = to_lower_ascii(c);
  return out;
}

EnvelopeError fail(EnvelopeErrorCode code, std::string field, std::string message) {
  return EnvelopeError{code, std::move(field), std::move(message)};
}

EnvelopeError wrong_type(const char* field, const char* expected, const char* type_name) {
  return fail(EnvelopeErrorCode::wrong_type, field,
              std::string("field '") + field + "' must be " + expected + ", got " + type_name);
}

// A top-level member the envelope defines, as decoding found it.
struct Field {
  bool present = false;
  bool is_string = false;
  std::string_view text;       // is_string: the value, unescaped
  const char* type_name = "";  // present but not a string: its JSON type, for the message
};

// The members decode_envelope() reads. The text of each Field stays valid while whatever it was
// found in (the parsed document, or the bytes) does.
struct Members {
  Field event_id, event_type, timestamp, version, source, correlation_id, causation_id, compensates,
      kind;
  bool data_present = false;
  json data;  // when data_present: the value (any JSON type; validation requires an object)
};

// Optional string member: absent => nullptr; present but not a string => `error`.
const std::string_view* string_field(const Field& field, const char* name,
                                     std::optional<EnvelopeError>& error) {
  if (!field.present) return nullptr;
  if (!field.is_string) {
    error = wrong_type(name, "a string", field.type_name);
    return nullptr;
  }
  return &field.text;
}

// Required string member: absent => missing_field, wrong type => wrong_type, "" => empty_field.
const std::string_view* required_string(const Field& field, const char* name,
                                        std::optional<EnvelopeError>& error) {
  const std::string_view* value = string_field(field, name, error);
  if (error) return nullptr;
  if (value == nullptr) {
    error = fail(EnvelopeErrorCode::missing_field, name,
                 std::string("required field '") + name + "' is missing");
    return nullptr;
  }
  if (value->empty()) {
    error = fail(EnvelopeErrorCode::empty_field, name,
                 std::string("field '") + name + "' must not be empty");
    return nullptr;
  }
  return value;
}

EnvelopeError bad_uuid(const char* field, std::string_view value) {
  return fail(EnvelopeErrorCode::bad_uuid, field,
              std::string("field '") + field + "' must be a UUID (8-4-4-4-12 hex digits), got " +
                  quote(value));
}

void append_member(std::string& out, std::string_view key, std::string_view value) {
  out += '"';
  out += key;
  out += "\":";
  detail::append_json_string(out, value);
  out += ',';
}

std::atomic<unsigned> g_fork_generation{0};

void after_fork_in_child() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

// Per-thread generator, reseeded in a forked child so parent and child never share a stream.
class UuidGenerator {
 public:
  UuidGenerator() {
    static const bool registered = (pthread_atfork(nullptr, nullptr, &after_fork_in_child), true);
    (void)registered;
    reseed();
  }

  std::string next() {
    if (generation_ != g_fork_generation.load(std::memory_order_relaxed)) reseed();
    // RFC 9562 version 7: 48 bits of Unix time in milliseconds, the version, 12 bits of the
    // sub-millisecond fraction (the RFC's "increased clock precision"), the variant, 62 random
    // bits. Ids made later sort later, so the store's indexes grow at their right edge.
    const auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    const auto now_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(since_epoch, 0));
    const std::uint64_t millis = now_ns / 1'000'000;
    const std::uint64_t fraction = (now_ns % 1'000'000) * 4096 / 1'000'000;
    std::uint64_t hi = ((millis & 0xFFFF'FFFF'FFFFULL) << 16) | std::uint64_t{0x7000} | fraction;
    std::uint64_t lo = engine_();
    lo = (lo & ~(std::uint64_t{0xC} << 60)) | (std::uint64_t{0x8} << 60);

    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(36, '-');
    std::size_t pos = 0;
    auto put = [&](std::uint64_t bits, int nibbles, int from) {
      for (int i = from; i < from + nibbles; ++i) {
        out[pos++] = kHex[(bits >> (60 - 4 * i)) & 0xF];
      }
    };
    put(hi, 8, 0);
    ++pos;
    put(hi, 4, 8);
    ++pos;
    put(hi, 4, 12);
    ++pos;
    put(lo, 4, 0);
    ++pos;
    put(lo, 12, 4);
    return out;
  }

 private:
  void reseed() {
    generation_ = g_fork_generation.load(std::memory_order_relaxed);
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device(),
                      device(), device(), device(), device()};
    engine_.seed(seq);
  }

  std::mt19937_64 engine_;
  unsigned generation_ = 0;
};

}  // namespace

std::string_view to_string(MessageKind kind) noexcept {
  switch (kind) {
    case MessageKind::unspecified:
      return "unspecified";
    case MessageKind::command:
      return "command";
    case MessageKind::reply:
      return "reply";
    case MessageKind::event:
      return "event";
  }
  return "unknown";
}

std::string_view to_string(EnvelopeErrorCode code) noexcept {
  switch (code) {
    case EnvelopeErrorCode::too_large:
      return "too_large";
    case EnvelopeErrorCode::not_json:
      return "not_json";
    case EnvelopeErrorCode::not_object:
      return "not_object";
    case EnvelopeErrorCode::missing_field:
      return "missing_field";
    case EnvelopeErrorCode::wrong_type:
      return "wrong_type";
    case EnvelopeErrorCode::empty_field:
      return "empty_field";
    case EnvelopeErrorCode::bad_uuid:
      return "bad_uuid";
    case EnvelopeErrorCode::bad_timestamp:
      return "bad_timestamp";
    case EnvelopeErrorCode::bad_version:
      return "bad_version";
    case EnvelopeErrorCode::unknown_kind:
      return "unknown_kind";
    case EnvelopeErrorCode::data_not_object:
      return "data_not_object";
    case EnvelopeErrorCode::too_deep:
      return "too_deep";
  }
  return "unknown";
}

bool is_uuid(std::string_view text) noexcept {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : !is_hex(text[i])) return false;
  }
  return true;
}

std::optional<Timestamp> parse_rfc3339(std::string_view text) noexcept {
  const ParsedTime parsed = parse_time(text);
  if (parsed.status != TimeParse::ok) return std::nullopt;
  return parsed.at;
}

std::string new_uuid() {
  thread_local UuidGenerator generator;
  return generator.next();
}

namespace {

Field* field_named(Members& members, std::string_view name) noexcept {
  if (name == "eventId") return &members.event_id;
  if (name == "eventType") return &members.event_type;
  if (name == "timestamp") return &members.timestamp;
  if (name == "version") return &members.version;
  if (name == "source") return &members.source;
  if (name == "correlationId") return &members.correlation_id;
  if (name == "causationId") return &members.causation_id;
  if (name == "compensates") return &members.compensates;
  if (name == "kind") return &members.kind;
  return nullptr;
}

// The members of a parsed envelope object; their text points into `doc`.
void members_of_document(json& doc, Members& members) {
  for (auto& [name, value] : doc.items()) {
    if (name == "data") {
      members.data_present = true;
      members.data = std::move(value);
    } else if (Field* field = field_named(members, name)) {
      field->present = true;
      field->is_string = value.is_string();
      if (field->is_string)
        field->text = value.get_ref<const std::string&>();
      else
        field->type_name = value.type_name();
    }
  }
}

// JSON text parsed, or a discarded value when it is not JSON. Never throws for bad input.
json parse_or_discarded(std::string_view text) {
  try {
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  } catch (const json::exception&) {
    return json(json::value_t::discarded);
  }
}

bool is_json_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// A JSON string at bytes[at] (the opening quote) of ASCII without control characters or escapes:
// its text, and `at` moved past the closing quote. nullopt for any other string, or none.
std::optional<std::string_view> plain_string(std::string_view bytes, std::size_t& at) noexcept {
  if (at >= bytes.size() || bytes[at] != '"') return std::nullopt;
  const std::size_t begin = at + 1;
  for (std::size_t i = begin; i < bytes.size(); ++i) {
    if (bytes[i] == '"') {
      at = i + 1;
      return bytes.substr(begin, i - begin);
    }
    if (!detail::is_plain_json_char(bytes[i])) return std::nullopt;
  }
  return std::nullopt;
}

// The usual envelope, without a JSON tree for the envelope itself: an object whose members are
// strings of ASCII without control characters or escapes, each at most once, and `data`, an object
// handed to the parser on its own. Returns false for anything else, malformed input included, which
// decode_envelope() then parses whole: this accepts nothing that path rejects, and finds the
// same members in what it accepts. The members' text points into `bytes`.
bool scan_plain_envelope(std::string_view bytes, Members& members) {
  std::size_t at = 0;
  auto skip_space = [&] {
    while (at < bytes.size() && is_json_space(bytes[at])) ++at;
  };
  skip_space();
  if (at >= bytes.size() || bytes[at] != '{') return false;
  ++at;
  for (;;) {
    skip_space();
    const std::optional<std::string_view> name = plain_string(bytes, at);
    if (!name) return false;
    skip_space();
    if (at >= bytes.size() || bytes[at] != ':') return false;
    ++at;
    skip_space();
    if (*name == "data") {
      if (members.data_present || at >= bytes.size() || bytes[at] != '{') return false;
      const std::size_t end = walk_nesting(bytes, at, kMaxEnvelopeDepth, true);
      if (end == std::string_view::npos) return false;
      json data = parse_or_discarded(bytes.substr(at, end - at));
      if (data.is_discarded()) return false;
      members.data_present = true;
      members.data = std::move(data);
      at = end;
    } else {
      const std::optional<std::string_view> value = plain_string(bytes, at);
      if (!value) return false;
      if (Field* field = field_named(members, *name)) {
        if (field->present) return false;
        field->present = true;
        field->is_string = true;
        field->text = *value;
      }
    }
    skip_space();
    if (at >= bytes.size()) return false;
    if (bytes[at] == '}') break;
    if (bytes[at] != ',') return false;
    ++at;
  }
  ++at;
  skip_space();
  return at == bytes.size();
}

// An optional member that holds a UUID when not empty (causationId, compensates): into `out` in
// lower case.
std::optional<EnvelopeError> optional_uuid(const Field& field, const char* name, std::string& out) {
  std::optional<EnvelopeError> error;
  const std::string_view* value = string_field(field, name, error);
  if (error || value == nullptr || value->empty()) return error;
  if (!is_uuid(*value)) return bad_uuid(name, *value);
  out = lower(*value);
  return std::nullopt;
}

DecodeResult envelope_of(Members& members) {
  using Code = EnvelopeErrorCode;
  Envelope env;
  std::optional<EnvelopeError> error;

  const std::string_view* event_id = required_string(members.event_id, "eventId", error);
  if (error) return std::move(*error);
  if (!is_uuid(*event_id)) return bad_uuid("eventId", *event_id);
  env.event_id = lower(*event_id);

  const std::string_view* event_type = required_string(members.event_type, "eventType", error);
  if (error) return std::move(*error);
  env.event_type = *event_type;

  const std::string_view* timestamp = required_string(members.timestamp, "timestamp", error);
  if (error) return std::move(*error);
  const ParsedTime parsed = parse_time(*timestamp);
  if (parsed.status == TimeParse::syntax) {
    return fail(Code::bad_timestamp, "timestamp",
                "field 'timestamp' must be an RFC 3339 date-time, got " + quote(*timestamp));
  }
  if (parsed.status == TimeParse::out_of_range) {
    return fail(Code::bad_timestamp, "timestamp",
                "field 'timestamp' is outside the representable range (1677-09-21T00:12:46Z to "
                "2262-04-11T23:47:14Z), got " +
                    quote(*timestamp));
  }
  env.timestamp = parsed.at;

  if (!members.data_present) {
    return fail(Code::missing_field, "data", "required field 'data' is missing");
  }
  if (!members.data.is_object()) {
    return fail(Code::data_not_object, "data",
                std::string("field 'data' must be an object, got ") + members.data.type_name());
  }

  if (members.version.present) {
    if (!members.version.is_string) {
      return wrong_type("version", "a string such as \"1\" or \"2.1\"", members.version.type_name);
    }
    const std::string_view text = members.version.text;
    const std::optional<int> major = parse_version(text);
    if (!major) {
      return fail(Code::bad_version, "version",
                  "field 'version' must be \"<major>\" or \"<major>.<minor>\" (digits, major >= "
                  "1), got " +
                      quote(text));
    }
    env.version = *major;
  }

  if (const std::string_view* source = string_field(members.source, "source", error))
    env.source = *source;
  if (error) return std::move(*error);

  if (const std::string_view* correlation =
          string_field(members.correlation_id, "correlationId", error)) {
    env.correlation_id = *correlation;
  }
  if (error) return std::move(*error);

  if (auto uuid_error = optional_uuid(members.causation_id, "causationId", env.causation_id))
    return std::move(*uuid_error);
  if (auto uuid_error = optional_uuid(members.compensates, "compensates", env.compensates))
    return std::move(*uuid_error);

  if (const std::string_view* kind = string_field(members.kind, "kind", error)) {
    if (*kind == "command") {
      env.kind = MessageKind::command;
    } else if (*kind == "reply") {
      env.kind = MessageKind::reply;
    } else if (*kind == "event") {
      env.kind = MessageKind::event;
    } else {
      return fail(Code::unknown_kind, "kind",
                  "field 'kind' must be \"command\", \"reply\" or \"event\", got " + quote(*kind));
    }
  }
  if (error) return std::move(*error);

  env.data = std::move(members.data);
  return env;
}

}  // namespace

namespace {

std::optional<EnvelopeError> beyond_limits(std::string_view bytes, std::size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    return fail(EnvelopeErrorCode::too_large, "",
                "envelope is " + std::to_string(bytes.size()) + " bytes, more than the limit of " +
                    std::to_string(max_bytes));
  }
  if (nests_deeper_than(bytes, kMaxEnvelopeDepth)) {
    return fail(EnvelopeErrorCode::too_deep, "",
                "envelope nests arrays and objects more than " + std::to_string(kMaxEnvelopeDepth) +
                    " levels deep");
  }
  return std::nullopt;
}

// Bytes within the limits, parsed whole.
DecodeResult decode_document(std::string_view bytes) {
  json doc = parse_or_discarded(bytes);
  if (doc.is_discarded()) {
    return fail(EnvelopeErrorCode::not_json, "",
                "envelope is not valid JSON: " + describe_parse_failure(bytes));
  }
  if (!doc.is_object()) {
    return fail(EnvelopeErrorCode::not_object, "",
                std::string("envelope must be a JSON object, got ") + doc.type_name());
  }
  Members members;
  members_of_document(doc, members);
  return envelope_of(members);
}

}  // namespace

namespace detail {

DecodeResult decode_envelope_document(std::string_view bytes, std::size_t max_bytes) {
  if (auto error = beyond_limits(bytes, max_bytes)) return std::move(*error);
  return decode_document(bytes);
}

}  // namespace detail

DecodeResult decode_envelope(std::string_view bytes, std::size_t max_bytes) {
  if (auto error = beyond_limits(bytes, max_bytes)) return std::move(*error);
  Members members;
  if (scan_plain_envelope(bytes, members)) return envelope_of(members);
  return decode_document(bytes);
}

std::string encode_envelope(const Envelope& envelope) {
  return encode_envelope(envelope, detail::json_text(envelope.data));
}

std::string encode_envelope(const Envelope& envelope, std::string_view data) {
  std::string out;
  // Keys, quotes, the timestamp and the version take about 200 bytes; the ids are the rest.
  out.reserve(224 + envelope.event_id.size() + envelope.event_type.size() + envelope.source.size() +
              envelope.correlation_id.size() + envelope.causation_id.size() +
              envelope.compensates.size() + data.size());
  out += '{';
  append_member(out, "eventId", envelope.event_id);
  append_member(out, "eventType", envelope.event_type);
  append_member(out, "timestamp", format_rfc3339(envelope.timestamp));
  std::array<char, 16> version{};
  const char* version_end =
      std::to_chars(version.data(), version.data() + version.size(), envelope.version).ptr;
  append_member(out, "version", std::string_view(version.data(), version_end));
  if (!envelope.source.empty()) append_member(out, "source", envelope.source);
  if (!envelope.correlation_id.empty()) {
    append_member(out, "correlationId", envelope.correlation_id);
  }
  if (!envelope.causation_id.empty()) append_member(out, "causationId", envelope.causation_id);
  if (!envelope.compensates.empty()) append_member(out, "compensates", envelope.compensates);
  if (envelope.kind != MessageKind::unspecified) {
    append_member(out, "kind", to_string(envelope.kind));
  }
  out += "\"data\":";
  out += data;
  out += '}';
  return out;
}

}  // namespace saga
