// Output helpers of sagactl: aligned tables, times and durations, and text from the database
// made safe for a terminal.
//
// Everything printed comes from a database whose text partly comes from the network (message
// types, reasons, dead-letter bytes): table cells go through printable(), which escapes control
// characters (ANSI escape sequences included), bidirectional overrides and invalid UTF-8, so a
// hostile message cannot rewrite the operator's terminal.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sagactl {

// Times in the database are integer microseconds since the Unix epoch (UTC).
std::int64_t now_micros();
// RFC 3339 UTC with milliseconds, e.g. "2024-05-01T12:00:03.250Z".
std::string format_time(std::int64_t micros);
// A JSON time field: the RFC 3339 string, or null.
nlohmann::json json_time(std::optional<std::int64_t> micros);
// Seconds as a JSON number (durations in --json are in seconds).
double seconds(std::int64_t micros);
// Compact human duration: "0ms", "350ms", "4.25s", "3m12s", "2h05m", "3d04h".
std::string format_duration(std::int64_t micros);

// Parses "90s", "10m", "2h", "3d" (a positive whole number and one unit) into microseconds.
std::optional<std::int64_t> parse_age(std::string_view text);

// Text safe to print on a terminal: valid UTF-8 is kept except control characters, bidi
// controls and line separators, which become \n, \t, \r, \xNN or \u{NNNN}; invalid bytes
// become \xNN. Backslashes are kept as they are.
std::string printable(std::string_view text);
// Bytes as an unambiguous escaped string: like printable(), and backslash becomes "\\".
std::string escaped_bytes(std::string_view bytes);
bool is_valid_utf8(std::string_view bytes);
std::string base64(std::string_view bytes);

// Pretty JSON for --json output; invalid UTF-8 in strings is replaced, never thrown on.
void print_json(std::ostream& out, const nlohmann::json& value);
// Compact JSON text of a stored JSON detail, or the text itself when it is not JSON.
nlohmann::json parse_json_or_null(std::string_view text);

// A table with a header row, columns separated by two spaces, padded to the widest cell. The
// last column is not padded. Cells go through printable().
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void right_align(std::size_t column);
  void add(std::vector<std::string> cells);
  bool empty() const noexcept { return rows_.empty(); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace sagactl
