// JSON text the engine writes (saga data, command payloads, journal details, envelope data):
// exactly the text nlohmann::json::dump() gives — compact, object keys in order, UTF-8 as is, and
// the same nlohmann::json::type_error (316) for a string that is not valid UTF-8 — with less work
// for what such values are mostly made of: strings that need no escaping, integers, booleans,
// null, and the objects and arrays around them are written here; anything else (floating-point
// numbers, strings with escapes or non-ASCII text, binary) is written by nlohmann::json::dump(),
// value by value.
//
// Thread safety: free functions without shared state.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace saga::detail {

// Whether `c` stands for itself inside a JSON string, both in the text dump() writes and in
// strict JSON: ASCII other than control characters, the quote and the backslash.
constexpr bool is_plain_json_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
}

// Appends `text` as a JSON string, exactly as dump() writes it (and throws as dump() does for
// text that is not UTF-8).
void append_json_string(std::string& out, std::string_view text);

// Appends the compact JSON text of `value` to `out`.
void append_json_text(std::string& out, const nlohmann::json& value);

// The compact JSON text of `value`: value.dump(), faster.
std::string json_text(const nlohmann::json& value);

}  // namespace saga::detail
