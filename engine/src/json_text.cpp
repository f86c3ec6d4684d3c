#include "saga/detail/json_text.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace saga::detail {
namespace {

using nlohmann::json;

template <class Integer>
void append_integer(std::string& out, Integer value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return is_plain_json_char(c); })) {
    out += '"';
    out += text;
    out += '"';
  } else {
    out += json(std::string(text)).dump();
  }
}

void append_json_text(std::string& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.get_ref<const json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, key);
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
      append_json_string(out, value.get_ref<const std::string&>());
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
      break;
  }
  out += value.dump();
}

std::string json_text(const json& value) {
  // Written into a buffer kept per thread, then copied once at its final size: growing the
  // result by doubling cost several allocations and copies for every saga write.
  constexpr std::size_t kept_capacity = 64 * 1024;
  thread_local std::string scratch;
  scratch.clear();
  append_json_text(scratch, value);
  std::string out(scratch);
  if (scratch.capacity() > kept_capacity) std::string().swap(scratch);
  return out;
}

}  // namespace saga::detail
