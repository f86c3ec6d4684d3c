// Structured logging: the seam through which the engine (and a service around it) reports what
// it does, as records with a level, a short constant message and key-value fields.
//
//   auto logger = saga::make_stream_logger(std::cerr, saga::LogFormat::json, saga::LogLevel::info);
//   options.logger = logger;                       // the engine logs through it
//   logger->write(saga::LogRecord(saga::LogLevel::info, "listening").with("port", 9464));
//
// Two line formats (format_log_line):
//   json     one JSON object per line: {"ts":"<RFC 3339>","level":"info","msg":"...", fields...}
//            (fields in the order given; a field named ts, level or msg is written as field.ts,
//            ...)
//   console  2020-07-06T10:30:00.123Z INFO  saga ended sagaId=... status=Completed reason="a b"
//            (values with spaces, quotes or '=' are quoted with JSON string escaping)
//
// Every engine line about a message or a saga carries the fields sagaId, correlationId and
// causationId (empty when there is none, e.g. the causation of a saga start), plus messageId and
// messageType when it is about one message. What the engine logs, by level: debug — saga
// started, transitions, commands queued, messages applied; info — saga ended, commands re-sent,
// operator actions, a lag alert back to normal; warn — dead letters, timeouts, user code errors,
// a saga parked as Failed, lag warnings; error — failed commits or store reads, critical lag.
//
// Default when embedding: Options::logger is null and the engine logs nothing.
//
// Ownership: loggers are shared (std::shared_ptr); the stream of a stream logger must outlive it.
// Thread safety: a Logger is called from any thread (the engine loop, a service's threads);
// implementations serialize their output. write() must not throw; enabled() must be cheap, since
// callers skip building records below the threshold.
#pragma once

#include <concepts>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "saga/clock.hpp"

namespace saga {

enum class LogLevel { debug, info, warn, error, off };

std::string_view to_string(LogLevel level) noexcept;  // "debug", "info", "warn", "error", "off"
std::optional<LogLevel> log_level_from_string(std::string_view text) noexcept;

using LogValue = std::variant<std::string, std::int64_t, double, bool>;

struct LogField {
  std::string key;
  LogValue value;
};

struct LogRecord {
  LogRecord() = default;
  LogRecord(LogLevel level_in, std::string message_in,
            Timestamp at_in = std::chrono::system_clock::now())
      : at(at_in), level(level_in), message(std::move(message_in)) {}

  Timestamp at{};
  LogLevel level = LogLevel::info;
  std::string message;  // short and constant ("saga ended"); the details go in fields
  std::vector<LogField> fields;

  // Appends a field: integers become int64, floating point double, text a string.
  template <class T>
  LogRecord& with(std::string key, const T& value) {
    if constexpr (std::same_as<T, bool>)
      fields.push_back({std::move(key), value});
    else if constexpr (std::integral<T>)
      fields.push_back({std::move(key), static_cast<std::int64_t>(value)});
    else if constexpr (std::floating_point<T>)
      fields.push_back({std::move(key), static_cast<double>(value)});
    else
      fields.push_back({std::move(key), std::string(std::string_view(value))});
    return *this;
  }
  // The value of a field, or nullptr.
  const LogValue* field(std::string_view key) const noexcept;
};

class Logger {
 public:
  virtual ~Logger() = default;
  virtual bool enabled(LogLevel level) const noexcept = 0;
  virtual void write(const LogRecord& record) noexcept = 0;
  // Writes several records, in order, as write() would one by one (the default does just that).
  // The engine hands over the lines of one committed turn this way, so a logger may write them
  // out at once: the stream logger below formats them all and writes and flushes once.
  virtual void write_all(std::span<const LogRecord> records) noexcept {
    for (const LogRecord& record : records) write(record);
  }
};

enum class LogFormat { json, console };

std::optional<LogFormat> log_format_from_string(std::string_view text) noexcept;  // json|console

// One line, without the trailing newline. Never throws for invalid UTF-8 (it is replaced).
std::string format_log_line(const LogRecord& record, LogFormat format);

// Writes records at `threshold` or above to `out`, one line each, flushed after each write()
// (after all of them for write_all()), under a mutex.
std::shared_ptr<Logger> make_stream_logger(std::ostream& out, LogFormat format, LogLevel threshold);

}  // namespace saga
