#include "saga/upcaster.hpp"

#include <gtest/gtest.h>

namespace {

saga::Upcasters charged_v1_to_v3() {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 1, [](nlohmann::json v1) {
    v1["currency"] = "EUR";
    return v1;
  });
  upcasters.add("payment.Charged", 2, [](nlohmann::json v2) {
    v2["amount"] = {{"cents", v2["cents"]}, {"currency", v2["currency"]}};
    v2.erase("cents");
    v2.erase("currency");
    return v2;
  });
  return upcasters;
}

TEST(Upcasters, UpgradeStepByStepFromVersionOneToThree) {
  auto result = charged_v1_to_v3().upgrade("payment.Charged", 1, 3, {{"cents", 500}});
  ASSERT_EQ(result.index(), 0u);
  EXPECT_EQ(std::get<nlohmann::json>(result),
            (nlohmann::json{{"amount", {{"cents", 500}, {"currency", "EUR"}}}}));
}

TEST(Upcasters, UpgradeFromTheMiddleOfTheChain) {
  auto result =
      charged_v1_to_v3().upgrade("payment.Charged", 2, 3, {{"cents", 7}, {"currency", "USD"}});
  ASSERT_EQ(result.index(), 0u);
  EXPECT_EQ(std::get<nlohmann::json>(result)["amount"]["currency"], "USD");
}

TEST(Upcasters, SameVersionIsReturnedUnchanged) {
  nlohmann::json v3 = {{"amount", {{"cents", 1}}}};
  EXPECT_EQ(std::get<nlohmann::json>(charged_v1_to_v3().upgrade("payment.Charged", 3, 3, v3)), v3);
}

TEST(Upcasters, NewerVersionThanTheReaderKnowsIsRefused) {
  auto result = charged_v1_to_v3().upgrade("payment.Charged", 4, 3, nlohmann::json::object());
  auto& refusal = std::get<saga::Upcasters::Refusal>(result);
  EXPECT_EQ(refusal.code, "unsupported_version");
  EXPECT_NE(refusal.reason.find("newer"), std::string::npos);
}

TEST(Upcasters, GapInTheChainIsRefusedNamingTheMissingStep) {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 2, [](nlohmann::json v) { return v; });
  auto result = upcasters.upgrade("payment.Charged", 1, 3, nlohmann::json::object());
  auto& refusal = std::get<saga::Upcasters::Refusal>(result);
  EXPECT_EQ(refusal.code, "unsupported_version");
  EXPECT_NE(refusal.reason.find("no upcaster from version 1 to 2"), std::string::npos);
}

TEST(Upcasters, ThrowingUpcasterIsReportedNotPropagated) {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 1,
                [](nlohmann::json) -> nlohmann::json { throw std::runtime_error("bad v1"); });
  auto result = upcasters.upgrade("payment.Charged", 1, 2, nlohmann::json::object());
  auto& refusal = std::get<saga::Upcasters::Refusal>(result);
  EXPECT_EQ(refusal.code, "upcaster_failed");
  EXPECT_NE(refusal.reason.find("bad v1"), std::string::npos);
}

// A throw of anything else used to escape upgrade(), and with it a participant's poll().
TEST(Upcasters, UpcasterThrowingSomethingElseThanAnExceptionIsReportedToo) {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 1, [](nlohmann::json) -> nlohmann::json { throw 42; });
  auto result = upcasters.upgrade("payment.Charged", 1, 2, nlohmann::json::object());
  auto& refusal = std::get<saga::Upcasters::Refusal>(result);
  EXPECT_EQ(refusal.code, "upcaster_failed");
  EXPECT_NE(refusal.reason.find("not a std::exception"), std::string::npos) << refusal.reason;
}

TEST(Upcasters, UpcasterMustProduceAnObject) {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 1, [](nlohmann::json) { return nlohmann::json::array(); });
  auto result = upcasters.upgrade("payment.Charged", 1, 2, nlohmann::json::object());
  EXPECT_EQ(std::get<saga::Upcasters::Refusal>(result).code, "upcaster_failed");
}

TEST(Upcasters, RegisteringTheSameStepTwiceIsAnError) {
  saga::Upcasters upcasters;
  upcasters.add("payment.Charged", 1, [](nlohmann::json v) { return v; });
  EXPECT_THROW(upcasters.add("payment.Charged", 1, [](nlohmann::json v) { return v; }),
               std::logic_error);
  EXPECT_THROW(upcasters.add("payment.Charged", 0, [](nlohmann::json v) { return v; }),
               std::invalid_argument);
}

}  // namespace
