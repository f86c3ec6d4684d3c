#include "saga/detail/json_text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace saga::detail {
namespace {

using nlohmann::json;

// Strings of every kind dump() treats differently: plain, escaped, control characters, DEL,
// multi-byte UTF-8, and bytes that are not UTF-8 (dump() throws for those).
const std::vector<std::string>& strings() {
  static const std::vector<std::string> list = {"",
                                                "order-1",
                                                "a\"b",
                                                "back\\slash",
                                                "line\nbreak",
                                                "tab\t",
                                                "\x01\x1f",
                                                "del\x7f",
                                                "/slash",
                                                "caf\xC3\xA9",
                                                "\xE2\x82\xAC",
                                                "\xF0\x9F\x98\x80",
                                                "\xC3",
                                                "\xFF",
                                                "ok\xC3(",
                                                "sku-pen",
                                                "{\"x\":1}",
                                                "   ",
                                                "\x1f",
                                                std::string("a\0b", 3)};
  return list;
}

json random_value(std::mt19937_64& rng, int depth) {
  const auto& texts = strings();
  switch (rng() % (depth > 3 ? 6 : 8)) {
    case 0:
      return texts[rng() % texts.size()];
    case 1:
      return static_cast<std::int64_t>(rng()) >> (rng() % 64);
    case 2:
      return std::uint64_t{rng()};
    case 3: {
      const double choices[] = {0.0, -0.0, 1.5, 1e300, -2.5e-8, 3.0, 0.1};
      return choices[rng() % 7];
    }
    case 4:
      return rng() % 2 == 0;
    case 5:
      return nullptr;
    case 6: {
      json object = json::object();
      for (int n = static_cast<int>(rng() % 5); n > 0; --n)
        object[texts[rng() % texts.size()]] = random_value(rng, depth + 1);
      return object;
    }
    default: {
      json array = json::array();
      for (int n = static_cast<int>(rng() % 5); n > 0; --n)
        array.push_back(random_value(rng, depth + 1));
      return array;
    }
  }
}

// What dump() gives, or the id of the exception it throws.
std::string dumped(const json& value) {
  try {
    return value.dump();
  } catch (const json::exception& error) {
    return "exception " + std::to_string(error.id);
  }
}

std::string written(const json& value) {
  try {
    return json_text(value);
  } catch (const json::exception& error) {
    return "exception " + std::to_string(error.id);
  }
}

TEST(JsonText, WritesWhatDumpWritesForTwentyThousandRandomValues) {
  std::mt19937_64 rng(11);
  int thrown = 0;
  for (int i = 0; i < 20000; ++i) {
    const json value = random_value(rng, 0);
    const std::string expected = dumped(value);
    ASSERT_EQ(written(value), expected) << "value " << i;
    thrown += expected.rfind("exception", 0) == 0 ? 1 : 0;
  }
  // Both outcomes are exercised in numbers.
  EXPECT_GT(thrown, 1000);
  EXPECT_LT(thrown, 15000);
}

TEST(JsonText, WritesTheExtremesOfEachNumberTypeAsDumpDoes) {
  for (const json& value :
       {json(std::numeric_limits<std::int64_t>::min()),
        json(std::numeric_limits<std::int64_t>::max()),
        json(std::numeric_limits<std::uint64_t>::max()), json(0), json(-1),
        json(std::numeric_limits<double>::max()), json(std::numeric_limits<double>::denorm_min()),
        json(std::numeric_limits<double>::quiet_NaN()),
        json(std::numeric_limits<double>::infinity()), json::binary({1, 2, 3}), json::object(),
        json::array()})
    EXPECT_EQ(written(value), dumped(value)) << dumped(value);
}

TEST(JsonText, AppendsToWhatIsThere) {
  std::string out = "prefix:";
  append_json_text(out, json{{"a", 1}, {"b", json::array({true, nullptr, "x"})}});
  EXPECT_EQ(out, R"(prefix:{"a":1,"b":[true,null,"x"]})");
}

}  // namespace
}  // namespace saga::detail
