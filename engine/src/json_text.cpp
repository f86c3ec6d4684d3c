#include "saga/detail/json_text.hpp"

#include <charconv>
#include <string_view>

namespace saga::detail {
namespace {

using nlohmann::json;

// Printable ASCII other than the quote and the backslash: written as is by dump() too.
bool needs_no_escaping(std::string_view text) noexcept {
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x80 || c == '"' || c == '\\') return false;
  }
  return true;
}

void append_string(std::string& out, const std::string& text, const json* node) {
  if (needs_no_escaping(text)) {
    out += '"';
    out += text;
    out += '"';
  } else if (node != nullptr) {
    out += node->dump();
  } else {
    out += json(text).dump();
  }
}

template <class Integer>
void append_integer(std::string& out, Integer value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

}  // namespace

void append_json_text(std::string& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.get_ref<const json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        append_string(out, key, nullptr);
        out += ':';
        append_json_text(out, member);
      }
      out += '}';
      return;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value.get_ref<const json::array_t&>()) {
        if (!first) out += ',';
        first = false;
        append_json_text(out, element);
      }
      out += ']';
      return;
    }
    case json::value_t::string:
      append_string(out, value.get_ref<const std::string&>(), &value);
      return;
    case json::value_t::number_integer:
      append_integer(out, value.get<json::number_integer_t>());
      return;
    case json::value_t::number_unsigned:
      append_integer(out, value.get<json::number_unsigned_t>());
      return;
    case json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case json::value_t::null:
      out += "null";
      return;
    case json::value_t::number_float:
    case json::value_t::binary:
    case json::value_t::discarded:
      out += value.dump();
      return;
  }
  out += value.dump();
}

std::string json_text(const json& value) {
  std::string out;
  append_json_text(out, value);
  return out;
}

}  // namespace saga::detail
