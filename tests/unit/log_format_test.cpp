// Log line formats and the stream logger (saga/log.hpp).
#include "saga/log.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

saga::LogRecord a_record() {
  saga::LogRecord record(saga::LogLevel::warn, "message dead-lettered",
                         saga::Timestamp{std::chrono::milliseconds{1577836800123}});
  record.with("sagaId", "s-1")
      .with("correlationId", "c-1")
      .with("causationId", "")
      .with("attempt", 3)
      .with("durationSeconds", 0.25)
      .with("compensation", true)
      .with("reason", "no saga with id 'x'");
  return record;
}

TEST(LogFormat, JsonLineHasTimeLevelMessageThenFieldsInOrder) {
  std::string line = saga::format_log_line(a_record(), saga::LogFormat::json);
  EXPECT_EQ(line,
            R"({"ts":"2020-01-01T00:00:00.123Z","level":"warn","msg":"message dead-lettered",)"
            R"("sagaId":"s-1","correlationId":"c-1","causationId":"","attempt":3,)"
            R"("durationSeconds":0.25,"compensation":true,"reason":"no saga with id 'x'"})");
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LogFormat, JsonLineKeepsAFieldNamedLikeABuiltInOne) {
  saga::LogRecord record(saga::LogLevel::info, "m", saga::Timestamp{});
  record.with("level", "mine");
  auto parsed = nlohmann::json::parse(saga::format_log_line(record, saga::LogFormat::json));
  EXPECT_EQ(parsed["level"], "info");
  EXPECT_EQ(parsed["field.level"], "mine");
}

TEST(LogFormat, JsonLineSurvivesInvalidUtf8AndNewlines) {
  saga::LogRecord record(saga::LogLevel::error, "bad\nbytes", saga::Timestamp{});
  record.with("raw", std::string("\xff\xfe", 2));
  std::string line = saga::format_log_line(record, saga::LogFormat::json);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_TRUE(nlohmann::json::accept(line)) << line;
}

TEST(LogFormat, ConsoleLineIsReadableAndQuotesValuesWithSpaces) {
  EXPECT_EQ(saga::format_log_line(a_record(), saga::LogFormat::console),
            "2020-01-01T00:00:00.123Z WARN  message dead-lettered sagaId=s-1 correlationId=c-1 "
            "causationId= attempt=3 durationSeconds=0.25 compensation=true "
            "reason=\"no saga with id 'x'\"");
}

TEST(StreamLogger, WritesOneLinePerRecordAtOrAboveItsThreshold) {
  std::ostringstream out;
  auto logger = saga::make_stream_logger(out, saga::LogFormat::json, saga::LogLevel::info);
  EXPECT_FALSE(logger->enabled(saga::LogLevel::debug));
  EXPECT_TRUE(logger->enabled(saga::LogLevel::error));
  logger->write(saga::LogRecord(saga::LogLevel::debug, "hidden"));
  logger->write(saga::LogRecord(saga::LogLevel::info, "shown"));
  logger->write(saga::LogRecord(saga::LogLevel::error, "also shown"));
  std::istringstream lines(out.str());
  std::string line;
  std::vector<std::string> messages;
  while (std::getline(lines, line)) messages.push_back(nlohmann::json::parse(line)["msg"]);
  EXPECT_EQ(messages, (std::vector<std::string>{"shown", "also shown"}));
}

// A stream buffer that counts the flushes a stream asks of it (each one a system call on a file).
class CountingBuffer : public std::stringbuf {
 public:
  int flushes = 0;

 protected:
  int sync() override {
    ++flushes;
    return std::stringbuf::sync();
  }
};

TEST(StreamLogger, WriteAllWritesItsLinesInOrderAndFlushesOnce) {
  CountingBuffer buffer;
  std::ostream out(&buffer);
  auto logger = saga::make_stream_logger(out, saga::LogFormat::json, saga::LogLevel::info);
  const std::vector<saga::LogRecord> records{saga::LogRecord(saga::LogLevel::info, "first"),
                                             saga::LogRecord(saga::LogLevel::debug, "hidden"),
                                             saga::LogRecord(saga::LogLevel::warn, "second"),
                                             saga::LogRecord(saga::LogLevel::info, "third")};
  logger->write_all(records);
  EXPECT_EQ(buffer.flushes, 1);
  std::istringstream lines(buffer.str());
  std::string line;
  std::vector<std::string> messages;
  while (std::getline(lines, line)) messages.push_back(nlohmann::json::parse(line)["msg"]);
  EXPECT_EQ(messages, (std::vector<std::string>{"first", "second", "third"}));
  logger->write_all({});
  EXPECT_EQ(buffer.flushes, 1) << "nothing to write, nothing flushed";
  logger->write(records[0]);
  EXPECT_EQ(buffer.flushes, 2) << "a single write is flushed at once";
}

// A logger that only implements write() gets write_all() for free, record by record in order.
TEST(Logger, WriteAllDefaultsToWriteForEachRecordInOrder) {
  struct Recording : saga::Logger {
    std::vector<std::string> messages;
    bool enabled(saga::LogLevel) const noexcept override { return true; }
    void write(const saga::LogRecord& record) noexcept override {
      messages.push_back(record.message);
    }
  } logger;
  const std::vector<saga::LogRecord> records{saga::LogRecord(saga::LogLevel::info, "a"),
                                             saga::LogRecord(saga::LogLevel::error, "b")};
  logger.write_all(records);
  EXPECT_EQ(logger.messages, (std::vector<std::string>{"a", "b"}));
}

TEST(LogLevels, ParseTheirNames) {
  EXPECT_EQ(saga::log_level_from_string("debug"), saga::LogLevel::debug);
  EXPECT_EQ(saga::log_level_from_string("warn"), saga::LogLevel::warn);
  EXPECT_EQ(saga::log_level_from_string("warning"), saga::LogLevel::warn);
  EXPECT_EQ(saga::log_level_from_string("loud"), std::nullopt);
  EXPECT_EQ(saga::log_format_from_string("json"), saga::LogFormat::json);
  EXPECT_EQ(saga::log_format_from_string("xml"), std::nullopt);
}

}  // namespace
