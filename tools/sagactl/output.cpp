#include "output.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ostream>

#include "saga/clock.hpp"

namespace sagactl {
namespace {

// Decodes one UTF-8 sequence at the start of `text`. Returns its code point and length, or
// length 0 for an invalid sequence (overlong forms, surrogates and values past U+10FFFF too).
std::pair<char32_t, std::size_t> decode_utf8(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {lead, 1};
  std::size_t length = 0;
  char32_t cp = 0;
  char32_t minimum = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, cp = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, cp = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, cp = lead & 0x07, minimum = 0x10000;
  } else {
    return {0, 0};
  }
  if (text.size() < length) return {0, 0};
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return {0, 0};
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < minimum || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
  return {cp, length};
}

bool needs_escape(char32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
         cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void append_hex_byte(std::string& out, unsigned char value) {
  char buffer[5];
  std::snprintf(buffer, sizeof buffer, "\\x%02x", value);
  out += buffer;
}

std::string escape(std::string_view text, bool escape_backslash) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    auto [cp, length] = decode_utf8(text);
    if (length == 0) {
      append_hex_byte(out, static_cast<unsigned char>(text[0]));
      text.remove_prefix(1);
      continue;
    }
    if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\\' && escape_backslash) {
      out += "\\\\";
    } else if (cp < 0x80 && needs_escape(cp)) {
      append_hex_byte(out, static_cast<unsigned char>(cp));
    } else if (needs_escape(cp)) {
      char buffer[16];
      std::snprintf(buffer, sizeof buffer, "\\u{%04x}", static_cast<unsigned>(cp));
      out += buffer;
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
  return out;
}

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80 ? 1 : 0;
  return width;
}

}  // namespace

std::int64_t now_micros() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_time(std::int64_t micros) {
  return saga::format_rfc3339(saga::Timestamp{
      std::chrono::duration_cast<saga::Timestamp::duration>(std::chrono::microseconds{micros})});
}

nlohmann::json json_time(std::optional<std::int64_t> micros) {
  return micros ? nlohmann::json(format_time(*micros)) : nlohmann::json(nullptr);
}

double seconds(std::int64_t micros) {
  return static_cast<double>(micros) / 1e6;
}

std::string format_duration(std::int64_t micros) {
  if (micros < 0) return "-" + format_duration(-micros);
  if (micros == 0) return "0ms";
  if (micros < 1000) return "<1ms";
  char buffer[32];
  constexpr std::int64_t kSecond = 1'000'000, kMinute = 60 * kSecond, kHour = 60 * kMinute,
                         kDay = 24 * kHour;
  if (micros < kSecond) {
    std::snprintf(buffer, sizeof buffer, "%lldms", static_cast<long long>(micros / 1000));
  } else if (micros < kMinute) {
    std::snprintf(buffer, sizeof buffer, "%.2fs", seconds(micros));
  } else if (micros < kHour) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(micros / kMinute),
                  static_cast<long long>(micros % kMinute / kSecond));
  } else if (micros < kDay) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(micros / kHour),
                  static_cast<long long>(micros % kHour / kMinute));
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldd%02lldh", static_cast<long long>(micros / kDay),
                  static_cast<long long>(micros % kDay / kHour));
  }
  return buffer;
}

std::optional<std::int64_t> parse_age(std::string_view text) {
  if (text.size() < 2 || text.size() > 10) return std::nullopt;
  std::int64_t count = 0;
  std::string_view digits = text.substr(0, text.size() - 1);
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
  if (error != std::errc{} || end != digits.data() + digits.size() || count <= 0)
    return std::nullopt;
  constexpr std::int64_t kSecond = 1'000'000;
  switch (text.back()) {
    case 's':
      return count * kSecond;
    case 'm':
      return count * 60 * kSecond;
    case 'h':
      return count * 3600 * kSecond;
    case 'd':
      return count * 86400 * kSecond;
    default:
      return std::nullopt;
  }
}

std::string printable(std::string_view text) {
  return escape(text, false);
}

std::string escaped_bytes(std::string_view bytes) {
  return escape(bytes, true);
}

bool is_valid_utf8(std::string_view bytes) {
  while (!bytes.empty()) {
    auto [cp, length] = decode_utf8(bytes);
    if (length == 0) return false;
    bytes.remove_prefix(length);
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned value = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(value >> shift) & 0x3F];
  }
  if (std::size_t rest = bytes.size() - i; rest > 0) {
    unsigned value = at(i) << 16;
    if (rest == 2) value |= at(i + 1) << 8;
    out += kAlphabet[(value >> 18) & 0x3F];
    out += kAlphabet[(value >> 12) & 0x3F];
    out += rest == 2 ? kAlphabet[(value >> 6) & 0x3F] : '=';
    out += '=';
  }
  return out;
}

void print_json(std::ostream& out, const nlohmann::json& value) {
  out << value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

nlohmann::json parse_json_or_null(std::string_view text) {
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), right_(headers_.size(), false) {}

void Table::right_align(std::size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void Table::add(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& cell : cells) cell = printable(cell);
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> widths(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = display_width(headers_[c]);
    for (const auto& row : rows_) widths[c] = std::max(widths[c], display_width(row[c]));
  }
  const auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      std::size_t pad = widths[c] - display_width(cells[c]);
      bool last = c + 1 == cells.size();
      if (right_[c]) line.append(pad, ' ');
      line += cells[c];
      if (!right_[c] && !last) line.append(pad, ' ');
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

}  // namespace sagactl
