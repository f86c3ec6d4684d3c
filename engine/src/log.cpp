#include "saga/log.hpp"

#include <mutex>
#include <ostream>

#include <nlohmann/json.hpp>

namespace saga {
namespace {

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};

std::string json_string(std::string_view text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool needs_quotes(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
      return true;
  return false;
}

std::string console_value(const LogValue& value) {
  if (const auto* text = std::get_if<std::string>(&value))
    return needs_quotes(*text) ? json_string(*text) : *text;
  if (const auto* number = std::get_if<std::int64_t>(&value)) return std::to_string(*number);
  if (const auto* real = std::get_if<double>(&value)) return nlohmann::json(*real).dump();
  return std::get<bool>(value) ? "true" : "false";
}

class StreamLogger final : public Logger {
 public:
  StreamLogger(std::ostream& out, LogFormat format, LogLevel threshold)
      : out_(out), format_(format), threshold_(threshold) {}

  bool enabled(LogLevel level) const noexcept override {
    return level != LogLevel::off && level >= threshold_;
  }

  void write(const LogRecord& record) noexcept override { write_all({&record, 1}); }

  // One write and one flush for all of them: a flush is a system call.
  void write_all(std::span<const LogRecord> records) noexcept override {
    try {
      std::string lines;
      for (const LogRecord& record : records) {
        if (!enabled(record.level)) continue;
        lines += format_log_line(record, format_);
        lines.push_back('\n');
      }
      if (lines.empty()) return;
      std::lock_guard lock(mutex_);
      out_.write(lines.data(), static_cast<std::streamsize>(lines.size()));
      out_.flush();
    } catch (...) {
      // Lines that cannot be written are dropped; logging never stops the caller.
    }
  }

 private:
  std::ostream& out_;
  LogFormat format_;
  LogLevel threshold_;
  std::mutex mutex_;
};

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
  return kLevelNames[static_cast<int>(level)];
}

std::optional<LogLevel> log_level_from_string(std::string_view text) noexcept {
  for (int i = 0; i <= static_cast<int>(LogLevel::off); ++i)
    if (kLevelNames[i] == text) return static_cast<LogLevel>(i);
  if (text == "warning") return LogLevel::warn;
  return std::nullopt;
}

std::optional<LogFormat> log_format_from_string(std::string_view text) noexcept {
  if (text == "json") return LogFormat::json;
  if (text == "console") return LogFormat::console;
  return std::nullopt;
}

const LogValue* LogRecord::field(std::string_view key) const noexcept {
  for (const auto& entry : fields)
    if (entry.key == key) return &entry.value;
  return nullptr;
}

std::string format_log_line(const LogRecord& record, LogFormat format) {
  if (format == LogFormat::json) {
    nlohmann::ordered_json line;
    line["ts"] = format_rfc3339(record.at);
    line["level"] = to_string(record.level);
    line["msg"] = record.message;
    for (const auto& [key, value] : record.fields) {
      std::string name = line.contains(key) ? "field." + key : key;
      std::visit([&](const auto& v) { line[name] = v; }, value);
    }
    return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string level(to_string(record.level));
  for (char& c : level) c = static_cast<char>(c - 'a' + 'A');
  level.resize(5, ' ');
  std::string line = format_rfc3339(record.at) + " " + level + " " + record.message;
  for (const auto& [key, value] : record.fields) line += " " + key + "=" + console_value(value);
  return line;
}

std::shared_ptr<Logger> make_stream_logger(std::ostream& out, LogFormat format,
                                           LogLevel threshold) {
  return std::make_shared<StreamLogger>(out, format, threshold);
}

}  // namespace saga
