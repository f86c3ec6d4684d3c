#include "saga/clock.hpp"

#include <chrono>
#include <ctime>

namespace saga {
namespace {

char* put_digits(char* out, long value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return out + width;
}

}  // namespace

std::string format_rfc3339(Timestamp at) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(at.time_since_epoch());
  const auto secs = floor<seconds>(ms);
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);

  // "YYYY-MM-DDTHH:MM:SS.mmmZ"
  char buf[24];
  char* p = buf;
  p = put_digits(p, tm.tm_year + 1900L, 4);
  *p++ = '-';
  p = put_digits(p, tm.tm_mon + 1L, 2);
  *p++ = '-';
  p = put_digits(p, tm.tm_mday, 2);
  *p++ = 'T';
  p = put_digits(p, tm.tm_hour, 2);
  *p++ = ':';
  p = put_digits(p, tm.tm_min, 2);
  *p++ = ':';
  p = put_digits(p, tm.tm_sec, 2);
  *p++ = '.';
  p = put_digits(p, static_cast<long>((ms - secs).count()), 3);
  *p++ = 'Z';
  return std::string(buf, p);
}

}  // namespace saga
