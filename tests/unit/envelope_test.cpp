#include "saga/envelope.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "saga/clock.hpp"
#include "saga/detail/envelope_document.hpp"
#include "saga/status.hpp"
#include "saga/store.hpp"
#include "saga/transport.hpp"

namespace saga {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kId = "550e8400-e29b-41d4-a716-446655440000";
constexpr const char* kOtherId = "6fa459ea-ee8a-4ca4-894e-db77e160355e";

json valid_doc() {
  return json{{"eventId", kId},
              {"eventType", "inventory.Reserve"},
              {"timestamp", "2020-07-06T10:30:00Z"},
              {"data", {{"orderId", "123"}}}};
}

DecodeResult decode(const json& doc) {
  return decode_envelope(doc.dump());
}

Timestamp utc(int y, unsigned m, unsigned d, int hh = 0, int mm = 0, int ss = 0,
              std::chrono::milliseconds ms = 0ms) {
  using namespace std::chrono;
  return sys_days{year{y} / month{m} / day{d}} + hours{hh} + minutes{mm} + seconds{ss} + ms;
}

// Returns the decoded envelope, or fails the test with the error.
Envelope expect_ok(const DecodeResult& result) {
  if (const auto* error = std::get_if<EnvelopeError>(&result)) {
    ADD_FAILURE() << "unexpected " << to_string(error->code) << ": " << error->message;
    return Envelope{};
  }
  return std::get<Envelope>(result);
}

EnvelopeError expect_error(const DecodeResult& result, EnvelopeErrorCode code,
                           const std::string& field) {
  if (std::holds_alternative<Envelope>(result)) {
    ADD_FAILURE() << "expected " << to_string(code) << " but decoding succeeded";
    return EnvelopeError{code, field, ""};
  }
  const auto& error = std::get<EnvelopeError>(result);
  EXPECT_EQ(to_string(error.code), to_string(code)) << error.message;
  EXPECT_EQ(error.field, field) << error.message;
  EXPECT_FALSE(error.message.empty());
  return error;
}

void expect_same(const Envelope& a, const Envelope& b) {
  EXPECT_EQ(a.event_id, b.event_id);
  EXPECT_EQ(a.event_type, b.event_type);
  EXPECT_EQ(a.timestamp, b.timestamp);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.correlation_id, b.correlation_id);
  EXPECT_EQ(a.causation_id, b.causation_id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.data, b.data);
}

Envelope full_envelope() {
  Envelope e;
  e.event_id = kId;
  e.event_type = "inventory.Reserve";
  e.timestamp = utc(2020, 7, 6, 10, 30, 0, 123ms);
  e.version = 3;
  e.source = "orchestrator";
  e.correlation_id = "saga-42";
  e.causation_id = kOtherId;
  e.kind = MessageKind::command;
  e.data =
      json{{"orderId", "123"}, {"items", json::array({1, 2, 3})}, {"nested", {{"a", nullptr}}}};
  return e;
}

// --- Round trip and encoding ---------------------------------------------------------------

TEST(EnvelopeRoundTrip, DecodeOfEncodePreservesEveryField) {
  for (auto kind :
       {MessageKind::unspecified, MessageKind::command, MessageKind::reply, MessageKind::event}) {
    Envelope original = full_envelope();
    original.kind = kind;
    expect_same(expect_ok(decode_envelope(encode_envelope(original))), original);
  }
}

TEST(EnvelopeRoundTrip, EmptyOptionalFieldsAreOmittedAndStayEmpty) {
  Envelope original;
  original.event_id = new_uuid();
  original.event_type = "payment.Charged";
  original.timestamp = utc(2021, 1, 2, 3, 4, 5, 6ms);
  const std::string encoded = encode_envelope(original);
  EXPECT_EQ(encoded.find("source"), std::string::npos);
  EXPECT_EQ(encoded.find("correlationId"), std::string::npos);
  EXPECT_EQ(encoded.find("causationId"), std::string::npos);
  EXPECT_EQ(encoded.find("kind"), std::string::npos);
  expect_same(expect_ok(decode_envelope(encoded)), original);
}

TEST(EnvelopeRoundTrip, TimestampIsKeptAtMillisecondPrecision) {
  Envelope original = full_envelope();
  original.timestamp = utc(2020, 7, 6, 10, 30, 0, 123ms) + 456789ns;
  const Envelope decoded = expect_ok(decode_envelope(encode_envelope(original)));
  EXPECT_EQ(decoded.timestamp, utc(2020, 7, 6, 10, 30, 0, 123ms));
}

TEST(EnvelopeRoundTrip, StringsNeedingEscapesSurvive) {
  Envelope original = full_envelope();
  original.event_type = "type \"quoted\" \\ back\tslash\n";
  original.source = "s\xc3\xa9rvice \xe2\x82\xac";  // "sérvice €"
  original.correlation_id = std::string("nul\0byte", 8);
  original.data = json{{"k\"ey", "v\x01"}};
  expect_same(expect_ok(decode_envelope(encode_envelope(original))), original);
}

TEST(EnvelopeEncode, ProducesCompactJsonWithFieldsInStableOrder) {
  const std::string encoded = encode_envelope(full_envelope());
  EXPECT_EQ(encoded,
            "{\"eventId\":\"550e8400-e29b-41d4-a716-446655440000\","
            "\"eventType\":\"inventory.Reserve\","
            "\"timestamp\":\"2020-07-06T10:30:00.123Z\","
            "\"version\":\"3\","
            "\"source\":\"orchestrator\","
            "\"correlationId\":\"saga-42\","
            "\"causationId\":\"6fa459ea-ee8a-4ca4-894e-db77e160355e\","
            "\"kind\":\"command\","
            "\"data\":{\"items\":[1,2,3],\"nested\":{\"a\":null},\"orderId\":\"123\"}}");
}

TEST(EnvelopeEncode, DefaultVersionIsEncodedAsStringOne) {
  Envelope e = full_envelope();
  e.version = 1;
  const json doc = json::parse(encode_envelope(e));
  EXPECT_EQ(doc.at("version"), "1");
}

TEST(EnvelopeEncode, EmptyDataIsEncodedAsEmptyObject) {
  Envelope e = full_envelope();
  e.data = json::object();
  const std::string encoded = encode_envelope(e);
  EXPECT_NE(encoded.find("\"data\":{}"), std::string::npos) << encoded;
  expect_same(expect_ok(decode_envelope(encoded)), e);
}

TEST(EnvelopeEncode, PreSerializedDataIsWrittenAsGivenAndEnvelopeDataIgnored) {
  const Envelope e = full_envelope();
  EXPECT_EQ(encode_envelope(e, e.data.dump()), encode_envelope(e));
  Envelope other = full_envelope();
  other.data = json{{"ignored", true}};
  const Envelope decoded = expect_ok(decode_envelope(encode_envelope(other, R"({"orderId":"9"})")));
  EXPECT_EQ(decoded.data, (json{{"orderId", "9"}}));
}

// --- A valid envelope in its minimal and full forms ------------------------------------------

TEST(EnvelopeDecode, MinimalEnvelopeGetsDefaults) {
  const Envelope e = expect_ok(decode(valid_doc()));
  EXPECT_EQ(e.event_id, kId);
  EXPECT_EQ(e.event_type, "inventory.Reserve");
  EXPECT_EQ(e.timestamp, utc(2020, 7, 6, 10, 30));
  EXPECT_EQ(e.version, 1);
  EXPECT_EQ(e.source, "");
  EXPECT_EQ(e.correlation_id, "");
  EXPECT_EQ(e.causation_id, "");
  EXPECT_EQ(e.kind, MessageKind::unspecified);
  EXPECT_EQ(e.data, (json{{"orderId", "123"}}));
}

TEST(EnvelopeDecode, SeedEnvelopeExampleDecodes) {
  const Envelope e = expect_ok(decode_envelope(R"({
    "eventId": "550e8400-e29b-41d4-a716-446655440000",
    "eventType": "com.company.orders.OrderCreated",
    "timestamp": "2020-07-06T10:30:00Z",
    "version": "1.0",
    "source": "orders-service",
    "correlationId": "request-12345",
    "data": {"orderId": "123", "customerId": "456", "items": []}
  })"));
  EXPECT_EQ(e.event_type, "com.company.orders.OrderCreated");
  EXPECT_EQ(e.version, 1);
  EXPECT_EQ(e.source, "orders-service");
  EXPECT_EQ(e.correlation_id, "request-12345");
  EXPECT_EQ(e.data.at("customerId"), "456");
}

TEST(EnvelopeDecode, UnknownExtraFieldsAreIgnored) {
  json doc = valid_doc();
  doc["$schema"] = "whatever";
  doc["traceparent"] = json::array({1, 2});
  doc["EventId"] = 42;  // keys are case-sensitive; this is just another unknown field
  doc["extra"] = {{"nested", true}};
  const Envelope e = expect_ok(decode(doc));
  EXPECT_EQ(e.event_id, kId);
  EXPECT_EQ(e.data, (json{{"orderId", "123"}}));
}

// --- Sizes and non-JSON / non-object input ---------------------------------------------------

TEST(EnvelopeDecode, InputLargerThanLimitIsTooLarge) {
  const std::string bytes = valid_doc().dump();
  expect_error(decode_envelope(bytes, bytes.size() - 1), EnvelopeErrorCode::too_large, "");
  expect_ok(decode_envelope(bytes, bytes.size()));
}

TEST(EnvelopeDecode, SizeIsCheckedBeforeParsing) {
  const std::string junk(kDefaultMaxMessageBytes + 1, '{');
  const auto error = expect_error(decode_envelope(junk), EnvelopeErrorCode::too_large, "");
  EXPECT_NE(error.message.find(std::to_string(kDefaultMaxMessageBytes)), std::string::npos);
}

// The envelope with `levels` arrays nested in data's "deep" field: the envelope is one level and
// data another, so the whole document nests levels + 2 deep.
std::string envelope_nesting(std::size_t levels) {
  json doc = valid_doc();
  doc["data"]["deep"] = "here";
  std::string bytes = doc.dump();
  const std::string placeholder = "\"here\"";
  bytes.replace(bytes.find(placeholder), placeholder.size(),
                std::string(levels, '[') + std::string(levels, ']'));
  return bytes;
}

TEST(EnvelopeDecode, NestingUpToTheLimitDecodes) {
  const Envelope e = expect_ok(decode_envelope(envelope_nesting(kMaxEnvelopeDepth - 2)));
  EXPECT_TRUE(e.data.at("deep").is_array());
}

TEST(EnvelopeDecode, NestingPastTheLimitIsTooDeep) {
  const auto error = expect_error(decode_envelope(envelope_nesting(kMaxEnvelopeDepth - 1)),
                                  EnvelopeErrorCode::too_deep, "");
  EXPECT_EQ(error.message, "envelope nests arrays and objects more than 64 levels deep");
}

// Serializing or copying such data recurses once per level: 200,000 levels used to decode, then
// crash the process with a stack overflow when the engine journaled the reply.
TEST(EnvelopeDecode, HugelyNestedDataIsRefusedBeforeParsing) {
  const std::string bytes = envelope_nesting(200000);
  ASSERT_LT(bytes.size(), kDefaultMaxMessageBytes);
  expect_error(decode_envelope(bytes), EnvelopeErrorCode::too_deep, "");
}

TEST(EnvelopeDecode, BracketsInsideStringsDoNotCountAsNesting) {
  json doc = valid_doc();
  doc["data"]["text"] = std::string(500, '[') + "\"" + std::string(500, '{');
  const Envelope e = expect_ok(decode(doc));
  EXPECT_EQ(e.data.at("text").get<std::string>().size(), 1001u);
}

TEST(EnvelopeDecode, DefaultLimitAcceptsLargeButAllowedEnvelope) {
  json doc = valid_doc();
  doc["data"]["blob"] = std::string(kDefaultMaxMessageBytes / 2, 'x');
  expect_ok(decode(doc));
}

class NotJson : public ::testing::TestWithParam<std::string> {};

TEST_P(NotJson, IsRejectedAsNotJson) {
  const auto error = expect_error(decode_envelope(GetParam()), EnvelopeErrorCode::not_json, "");
  for (char c : error.message) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u >= 0x20 && u < 0x7F) << "message should be printable ASCII: " << error.message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    EnvelopeDecode, NotJson,
    ::testing::Values(std::string(""), std::string("   "), std::string("{"),
                      std::string(R"({"eventId": "550e8400-e29b-41d4-a716-446655440000", "data")"),
                      std::string("{'eventId': 'x'}"), std::string("{} trailing"),
                      std::string("{\"data\": {}} // comment"), std::string("not json at all"),
                      std::string("{\"eventType\": \"bad \xff\xfe utf8\"}"),
                      std::string("{\"eventType\": \"overlong \xc0\xaf\"}"),
                      std::string("\x80\x81\x82"), std::string("{\"a\":1,}"),
                      std::string("\0{}", 3), std::string("[1, 2")));

class NotObject : public ::testing::TestWithParam<std::string> {};

TEST_P(NotObject, IsRejectedAsNotObject) {
  const auto error = expect_error(decode_envelope(GetParam()), EnvelopeErrorCode::not_object, "");
  EXPECT_NE(error.message.find("object"), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(EnvelopeDecode, NotObject,
                         ::testing::Values("[]", "[{\"eventId\": \"x\"}]", "42", "-1.5",
                                           "\"a string\"", "null", "true"));

// --- Required fields --------------------------------------------------------------------------

class MissingRequiredField : public ::testing::TestWithParam<std::string> {};

TEST_P(MissingRequiredField, IsReportedWithTheFieldName) {
  json doc = valid_doc();
  doc.erase(GetParam());
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::missing_field, GetParam());
  EXPECT_NE(error.message.find("'" + GetParam() + "'"), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(EnvelopeDecode, MissingRequiredField,
                         ::testing::Values("eventId", "eventType", "timestamp", "data"));

TEST(EnvelopeDecode, RequiredFieldsAreCheckedInDocumentedOrder) {
  expect_error(decode_envelope("{}"), EnvelopeErrorCode::missing_field, "eventId");
  expect_error(decode(json{{"eventId", kId}}), EnvelopeErrorCode::missing_field, "eventType");
  expect_error(decode(json{{"eventId", kId}, {"eventType", "t"}}), EnvelopeErrorCode::missing_field,
               "timestamp");
  expect_error(
      decode(json{{"eventId", kId}, {"eventType", "t"}, {"timestamp", "2020-01-01T00:00:00Z"}}),
      EnvelopeErrorCode::missing_field, "data");
  // A defect in an earlier field is reported before a later missing one.
  expect_error(decode(json{{"eventId", "nope"}}), EnvelopeErrorCode::bad_uuid, "eventId");
}

TEST(EnvelopeDecode, RequiredFieldsAreCheckedBeforeOptionalOnes) {
  json doc = valid_doc();
  doc.erase("data");
  doc["kind"] = "bogus";
  expect_error(decode(doc), EnvelopeErrorCode::missing_field, "data");
}

struct WrongTypeCase {
  std::string field;
  json value;
  EnvelopeErrorCode code;
};

void PrintTo(const WrongTypeCase& c, std::ostream* os) {
  *os << c.field << " = " << c.value.dump();
}

class WrongType : public ::testing::TestWithParam<WrongTypeCase> {};

TEST_P(WrongType, IsReportedWithTheFieldName) {
  json doc = valid_doc();
  doc[GetParam().field] = GetParam().value;
  const auto error = expect_error(decode(doc), GetParam().code, GetParam().field);
  EXPECT_NE(error.message.find("'" + GetParam().field + "'"), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(
    EnvelopeDecode, WrongType,
    ::testing::Values(WrongTypeCase{"eventId", 42, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"eventId", nullptr, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"eventType", true, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"eventType", json::array({"a"}), EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"timestamp", 1594031400, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"timestamp", json::object(), EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"version", 2, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"version", 1.0, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"version", nullptr, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"source", 7, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"source", nullptr, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"correlationId", json::object(), EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"correlationId", 12345, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"causationId", json::array(), EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"kind", 3, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"kind", false, EnvelopeErrorCode::wrong_type},
                      WrongTypeCase{"data", json::array({1, 2}),
                                    EnvelopeErrorCode::data_not_object},
                      WrongTypeCase{"data", "a string", EnvelopeErrorCode::data_not_object},
                      WrongTypeCase{"data", nullptr, EnvelopeErrorCode::data_not_object},
                      WrongTypeCase{"data", 5, EnvelopeErrorCode::data_not_object},
                      WrongTypeCase{"data", true, EnvelopeErrorCode::data_not_object}));

TEST(EnvelopeDecode, WrongTypeMessageNamesTheActualType) {
  json doc = valid_doc();
  doc["eventId"] = 42;
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::wrong_type, "eventId");
  EXPECT_NE(error.message.find("string"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("number"), std::string::npos) << error.message;
}

TEST(EnvelopeDecode, EmptyEventTypeIsEmptyField) {
  json doc = valid_doc();
  doc["eventType"] = "";
  expect_error(decode(doc), EnvelopeErrorCode::empty_field, "eventType");
}

TEST(EnvelopeDecode, EmptyEventIdAndTimestampAreEmptyField) {
  json doc = valid_doc();
  doc["eventId"] = "";
  expect_error(decode(doc), EnvelopeErrorCode::empty_field, "eventId");
  doc = valid_doc();
  doc["timestamp"] = "";
  expect_error(decode(doc), EnvelopeErrorCode::empty_field, "timestamp");
}

// --- UUIDs ------------------------------------------------------------------------------------

class BadUuid : public ::testing::TestWithParam<std::string> {};

TEST_P(BadUuid, EventIdIsRejected) {
  json doc = valid_doc();
  doc["eventId"] = GetParam();
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_uuid, "eventId");
  EXPECT_NE(error.message.find("'eventId'"), std::string::npos) << error.message;
}

TEST_P(BadUuid, NonEmptyCausationIdIsRejected) {
  json doc = valid_doc();
  doc["causationId"] = GetParam();
  expect_error(decode(doc), EnvelopeErrorCode::bad_uuid, "causationId");
}

TEST_P(BadUuid, NonEmptyCompensatesIsRejected) {
  json doc = valid_doc();
  doc["compensates"] = GetParam();
  expect_error(decode(doc), EnvelopeErrorCode::bad_uuid, "compensates");
}

TEST_P(BadUuid, IsUuidRejects) {
  EXPECT_FALSE(is_uuid(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    EnvelopeDecode, BadUuid,
    ::testing::Values("550e8400-e29b-41d4-a716-44665544000",     // too short
                      "550e8400-e29b-41d4-a716-4466554400000",   // too long
                      "550e8400",                                // far too short
                      "550e8400-e29b-41d4-a716-44665544000g",    // non-hex
                      "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",    // non-hex
                      "550e840-0e29b-41d4-a716-446655440000",    // misplaced dash
                      "550e8400-e29b-41d4-a7164-46655440000",    // misplaced dash
                      "550e8400e29b41d4a716446655440000",        // no dashes
                      "550e8400-e29b-41d4-a716_446655440000",    // wrong separator
                      "{550e8400-e29b-41d4-a716-446655440000}",  // braces
                      " 550e8400-e29b-41d4-a716-446655440000",   // leading space
                      "550e8400-e29b-41d4-a716-446655440000\n",  // trailing newline
                      "request-12345"));

TEST(EnvelopeDecode, UpperCaseEventIdIsAcceptedAndStoredLowerCase) {
  json doc = valid_doc();
  doc["eventId"] = "550E8400-E29B-41D4-A716-446655440000";
  EXPECT_EQ(expect_ok(decode(doc)).event_id, kId);
}

TEST(EnvelopeDecode, CausationIdMayBeEmptyAndIsStoredLowerCase) {
  json doc = valid_doc();
  doc["causationId"] = "";
  EXPECT_EQ(expect_ok(decode(doc)).causation_id, "");
  doc["causationId"] = "6FA459EA-EE8A-4CA4-894E-DB77E160355E";
  EXPECT_EQ(expect_ok(decode(doc)).causation_id, kOtherId);
}

TEST(EnvelopeCodec, CompensatesRoundTripsAndIsOmittedWhenEmpty) {
  json doc = valid_doc();
  EXPECT_EQ(expect_ok(decode(doc)).compensates, "");
  doc["compensates"] = "6FA459EA-EE8A-4CA4-894E-DB77E160355E";
  Envelope decoded = expect_ok(decode(doc));
  EXPECT_EQ(decoded.compensates, kOtherId);
  EXPECT_EQ(expect_ok(decode_envelope(encode_envelope(decoded))).compensates, kOtherId);
  decoded.compensates.clear();
  EXPECT_EQ(encode_envelope(decoded).find("compensates"), std::string::npos);
  doc["compensates"] = 7;
  expect_error(decode(doc), EnvelopeErrorCode::wrong_type, "compensates");
}

TEST(EnvelopeDecode, CorrelationIdNeedNotBeAUuid) {
  json doc = valid_doc();
  doc["correlationId"] = "request-12345";
  EXPECT_EQ(expect_ok(decode(doc)).correlation_id, "request-12345");
}

TEST(IsUuid, AcceptsLowerUpperAndMixedCaseAndNonV4) {
  EXPECT_TRUE(is_uuid(kId));
  EXPECT_TRUE(is_uuid("550E8400-E29B-41D4-A716-446655440000"));
  EXPECT_TRUE(is_uuid("550e8400-E29B-41d4-A716-446655440000"));
  EXPECT_TRUE(is_uuid("00000000-0000-0000-0000-000000000000"));
  EXPECT_TRUE(is_uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8"));  // version 1
  EXPECT_FALSE(is_uuid(""));
}

// --- Timestamps -------------------------------------------------------------------------------

class BadTimestamp : public ::testing::TestWithParam<std::string> {};

TEST_P(BadTimestamp, IsRejectedWithTheValueQuoted) {
  json doc = valid_doc();
  doc["timestamp"] = GetParam();
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_timestamp, "timestamp");
  EXPECT_NE(error.message.find("'timestamp'"), std::string::npos) << error.message;
  EXPECT_FALSE(parse_rfc3339(GetParam()).has_value());
}

INSTANTIATE_TEST_SUITE_P(EnvelopeDecode, BadTimestamp,
                         ::testing::Values("2020-07-06T10:30:00",          // no zone
                                           "2020-13-01T00:00:00Z",         // month 13
                                           "2020-00-10T00:00:00Z",         // month 0
                                           "2020-01-00T00:00:00Z",         // day 0
                                           "2020-02-30T00:00:00Z",         // Feb 30
                                           "2021-02-29T00:00:00Z",         // not a leap year
                                           "1900-02-29T00:00:00Z",         // century, not leap
                                           "2020-04-31T00:00:00Z",         // April has 30
                                           "2020-07-06T24:00:00Z",         // hour 24
                                           "2020-07-06T10:60:00Z",         // minute 60
                                           "2020-07-06T10:30:61Z",         // second 61
                                           "yesterday",                    // garbage
                                           "2020-07-06",                   // date only
                                           "10:30:00Z",                    // time only
                                           "2020-07-06 10:30:00Z",         // space separator
                                           "2020-07-06X10:30:00Z",         // bad separator
                                           "2020-7-6T10:30:00Z",           // short fields
                                           "20-07-06T10:30:00Z",           // two-digit year
                                           "2020-07-06T10:30Z",            // no seconds
                                           "2020-07-06T10:30:00.Z",        // empty fraction
                                           "2020-07-06T10:30:00,5Z",       // comma fraction
                                           "2020-07-06T10:30:00+0100",     // offset w/o colon
                                           "2020-07-06T10:30:00+01",       // short offset
                                           "2020-07-06T10:30:00+24:00",    // offset hour 24
                                           "2020-07-06T10:30:00+01:60",    // offset minute 60
                                           "2020-07-06T10:30:00UTC",       // zone name
                                           "2020-07-06T10:30:00Z ",        // trailing space
                                           "2020-07-06T10:30:00ZZ",        // trailing junk
                                           "+2020-07-06T10:30:00Z",        // sign
                                           "2020-07-06T10:30:00\xc3\xa9",  // non-ASCII
                                           "9999-12-31T23:59:59Z"));       // out of range

TEST(EnvelopeDecode, OutOfRangeTimestampSaysSo) {
  json doc = valid_doc();
  doc["timestamp"] = "9999-12-31T23:59:59Z";
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_timestamp, "timestamp");
  EXPECT_NE(error.message.find("range"), std::string::npos) << error.message;
}

TEST(EnvelopeDecode, BadTimestampMessageQuotesTheValue) {
  json doc = valid_doc();
  doc["timestamp"] = "yesterday";
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_timestamp, "timestamp");
  EXPECT_EQ(error.message, "field 'timestamp' must be an RFC 3339 date-time, got \"yesterday\"");
}

TEST(EnvelopeDecode, LongBadValuesAreTruncatedInMessages) {
  json doc = valid_doc();
  doc["timestamp"] = std::string(10000, '9');
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_timestamp, "timestamp");
  EXPECT_LT(error.message.size(), 200u) << error.message;
  EXPECT_NE(error.message.find("..."), std::string::npos) << error.message;
}

TEST(EnvelopeDecode, TruncatedValueInMessageStaysValidUtf8) {
  json doc = valid_doc();
  doc["kind"] = std::string(63, 'a') + "\xe2\x82\xac\xe2\x82\xac";  // euro signs across byte 64
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::unknown_kind, "kind");
  EXPECT_NO_THROW((void)json(error.message).dump()) << "message is not valid UTF-8";
}

TEST(ParseRfc3339, Feb29IsAcceptedOnLeapYears) {
  EXPECT_EQ(parse_rfc3339("2020-02-29T00:00:00Z"), utc(2020, 2, 29));
  EXPECT_EQ(parse_rfc3339("2000-02-29T12:00:00Z"), utc(2000, 2, 29, 12));
  json doc = valid_doc();
  doc["timestamp"] = "2024-02-29T23:59:59Z";
  EXPECT_EQ(expect_ok(decode(doc)).timestamp, utc(2024, 2, 29, 23, 59, 59));
}

TEST(ParseRfc3339, OffsetsAreNormalizedToUtc) {
  const Timestamp expected = utc(2020, 7, 6, 10, 30);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00Z"), expected);
  EXPECT_EQ(parse_rfc3339("2020-07-06T12:30:00+02:00"), expected);
  EXPECT_EQ(parse_rfc3339("2020-07-06T05:00:00-05:30"), expected);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00+00:00"), expected);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00-00:00"), expected);
  // Crossing day, month and year boundaries.
  EXPECT_EQ(parse_rfc3339("2020-12-31T23:30:00-01:00"), utc(2021, 1, 1, 0, 30));
  EXPECT_EQ(parse_rfc3339("2021-03-01T01:00:00+02:00"), utc(2021, 2, 28, 23));
}

TEST(EnvelopeDecode, TimestampWithOffsetIsNormalizedToUtc) {
  json doc = valid_doc();
  doc["timestamp"] = "2020-07-06T12:30:00.250+02:00";
  EXPECT_EQ(expect_ok(decode(doc)).timestamp, utc(2020, 7, 6, 10, 30, 0, 250ms));
}

TEST(ParseRfc3339, LowerCaseSeparatorAndZoneAreAccepted) {
  EXPECT_EQ(parse_rfc3339("2020-07-06t10:30:00z"), utc(2020, 7, 6, 10, 30));
}

TEST(ParseRfc3339, FractionsOfAnyLengthAreAccepted) {
  const Timestamp base = utc(2020, 7, 6, 10, 30);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00.5Z"), base + 500ms);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00.123Z"), base + 123ms);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00.000001Z"), base + 1us);
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00.123456789Z"),
            base + std::chrono::duration_cast<Timestamp::duration>(123456789ns));
  // Digits beyond nanoseconds are accepted and truncated.
  EXPECT_EQ(parse_rfc3339("2020-07-06T10:30:00.1234567891234Z"),
            base + std::chrono::duration_cast<Timestamp::duration>(123456789ns));
}

TEST(ParseRfc3339, LeapSecondIsAcceptedAndRollsIntoTheNextMinute) {
  EXPECT_EQ(parse_rfc3339("2016-12-31T23:59:60Z"), utc(2017, 1, 1));
}

TEST(ParseRfc3339, PreEpochTimesAreSupported) {
  EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59.999Z"), Timestamp{} - 1ms);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), Timestamp{});
}

TEST(FormatRfc3339, IsUtcWithMillisecondsAndTrailingZ) {
  EXPECT_EQ(format_rfc3339(utc(2020, 7, 6, 10, 30, 0, 123ms)), "2020-07-06T10:30:00.123Z");
  EXPECT_EQ(format_rfc3339(Timestamp{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(utc(2024, 2, 29, 23, 59, 59, 999ms) + 999us),
            "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339(Timestamp{} - 1ms), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339(Timestamp{} - 1ns), "1969-12-31T23:59:59.999Z");
}

TEST(FormatRfc3339, ParseOfFormatRoundTripsAtMillisecondPrecision) {
  std::mt19937_64 rng(12345);
  // 1900 .. 2200, nanosecond resolution.
  std::uniform_int_distribution<std::int64_t> dist(-2208988800LL * 1'000'000'000LL,
                                                   7258118400LL * 1'000'000'000LL);
  for (int i = 0; i < 5000; ++i) {
    const Timestamp t{
        std::chrono::duration_cast<Timestamp::duration>(std::chrono::nanoseconds{dist(rng)})};
    const std::string text = format_rfc3339(t);
    const auto parsed = parse_rfc3339(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    EXPECT_EQ(*parsed, std::chrono::floor<std::chrono::milliseconds>(t)) << text;
    EXPECT_EQ(format_rfc3339(*parsed), text);
  }
  const Timestamp now = SystemClock{}.now();
  EXPECT_EQ(parse_rfc3339(format_rfc3339(now)), std::chrono::floor<std::chrono::milliseconds>(now));
}

// --- version ----------------------------------------------------------------------------------

class BadVersion : public ::testing::TestWithParam<std::string> {};

TEST_P(BadVersion, IsRejected) {
  json doc = valid_doc();
  doc["version"] = GetParam();
  const auto error = expect_error(decode(doc), EnvelopeErrorCode::bad_version, "version");
  EXPECT_NE(error.message.find("'version'"), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(EnvelopeDecode, BadVersion,
                         ::testing::Values("0", "0.9", "1.x", "", "abc", "1.", ".1", "1.2.3", "-1",
                                           "+1", " 1", "1 ", "v1", "1e3", "2147483648",
                                           "99999999999999999999"));

TEST(EnvelopeDecode, VersionTakesTheMajorPart) {
  json doc = valid_doc();
  doc["version"] = "2.1";
  EXPECT_EQ(expect_ok(decode(doc)).version, 2);
  doc["version"] = "1.0";
  EXPECT_EQ(expect_ok(decode(doc)).version, 1);
  doc["version"] = "10";
  EXPECT_EQ(expect_ok(decode(doc)).version, 10);
  doc["version"] = "2147483647";
  EXPECT_EQ(expect_ok(decode(doc)).version, 2147483647);
  doc.erase("version");
  EXPECT_EQ(expect_ok(decode(doc)).version, 1);
}

TEST(EnvelopeDecode, NumericVersionIsWrongType) {
  json doc = valid_doc();
  doc["version"] = 2;
  expect_error(decode(doc), EnvelopeErrorCode::wrong_type, "version");
}

// --- kind -------------------------------------------------------------------------------------

TEST(EnvelopeDecode, KnownKindsDecode) {
  json doc = valid_doc();
  doc["kind"] = "command";
  EXPECT_EQ(expect_ok(decode(doc)).kind, MessageKind::command);
  doc["kind"] = "reply";
  EXPECT_EQ(expect_ok(decode(doc)).kind, MessageKind::reply);
  doc["kind"] = "event";
  EXPECT_EQ(expect_ok(decode(doc)).kind, MessageKind::event);
}

TEST(EnvelopeDecode, UnknownKindIsRejected) {
  for (const char* kind : {"query", "Command", "EVENT", "", "unspecified", "command "}) {
    json doc = valid_doc();
    doc["kind"] = kind;
    const auto error = expect_error(decode(doc), EnvelopeErrorCode::unknown_kind, "kind");
    EXPECT_NE(error.message.find("'kind'"), std::string::npos) << error.message;
  }
}

// --- Robustness -------------------------------------------------------------------------------

TEST(EnvelopeDecode, NeverThrowsForMutatedOrRandomBytes) {
  std::mt19937 rng(2024);
  const std::string valid = encode_envelope(full_envelope());
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = rng() % bytes.size();
      switch (rng() % 3) {
        case 0:
          bytes[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          bytes.erase(pos, 1 + rng() % 8);
          break;
        default:
          bytes.insert(pos, 1, static_cast<char>(rng() % 256));
          break;
      }
      if (bytes.empty()) bytes = "x";
    }
    EXPECT_NO_THROW((void)decode_envelope(bytes)) << bytes;
  }
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    EXPECT_NO_THROW((void)decode_envelope(bytes));
  }
}

// decode_envelope() decodes the usual envelope without a JSON tree for the envelope itself, and
// everything else by parsing it whole (detail::decode_envelope_document): for any bytes, both
// must give the same envelope or the same error.
std::string differences(const DecodeResult& fast, const DecodeResult& whole) {
  const auto* fast_error = std::get_if<EnvelopeError>(&fast);
  const auto* whole_error = std::get_if<EnvelopeError>(&whole);
  if (fast_error && whole_error) {
    if (fast_error->code == whole_error->code && fast_error->field == whole_error->field &&
        fast_error->message == whole_error->message)
      return "";
    return "errors differ: " + fast_error->message + " / " + whole_error->message;
  }
  if (fast_error) return "only decode_envelope failed: " + fast_error->message;
  if (whole_error) return "only the document decode failed: " + whole_error->message;
  const auto& a = std::get<Envelope>(fast);
  const auto& b = std::get<Envelope>(whole);
  if (std::tie(a.event_id, a.event_type, a.timestamp, a.version, a.source, a.correlation_id,
               a.causation_id, a.compensates, a.kind,
               a.data) == std::tie(b.event_id, b.event_type, b.timestamp, b.version, b.source,
                                   b.correlation_id, b.causation_id, b.compensates, b.kind, b.data))
    return "";
  return "envelopes differ";
}

TEST(EnvelopeDecode, DecodesEveryInputAsParsingItWholeDoes) {
  Envelope compensation = full_envelope();
  compensation.compensates = kOtherId;
  const std::vector<std::string> originals = {
      encode_envelope(full_envelope()),
      encode_envelope(compensation),
      R"({"eventId":"550e8400-e29b-41d4-a716-446655440000","eventType":"t","timestamp":)"
      R"("2020-07-06T10:30:00Z","data":{"s":"a\"}b","e":[{},[],"]"]}})",
      // Each of these leaves the usual shape, so decode_envelope() parses it whole.
      R"({"eventType":"a","eventType":"b","eventId":"550e8400-e29b-41d4-a716-446655440000",)"
      R"("timestamp":"2020-07-06T10:30:00Z","data":{}})",
      R"({"eventId":"550e8400-e29b-41d4-a716-446655440000","eventType":"a\u0062","source":)"
      R"("caf\u00e9","timestamp":"2020-07-06T10:30:00Z","extra":[1,{"x":null}],"n":-1.5e3,)"
      R"("data":{"a":1},"data":{"b":2}})",
      "\xEF\xBB\xBF{\"eventId\":\"550e8400-e29b-41d4-a716-446655440000\",\"eventType\":\"t\","
      "\"timestamp\":\"2020-07-06T10:30:00Z\",\"source\":\"s\xC3\xA9\",\"data\":{}} \r\n\t",
      R"({"eventId":"550e8400-e29b-41d4-a716-446655440000","eventType":"t","version":2,)"
      R"("timestamp":"2020-07-06T10:30:00Z","data":{}})",
      "{\"eventId\":\"550e8400-e29b-41d4-a716-446655440000\",\"eventType\":\"t\",\"source\":"
      "\"s\xC3\xA9\",\"timestamp\":\"2020-07-06T10:30:00Z\",\"data\":{}}",
      // The usual shape, spaced out; and with a member twice.
      "\t{ \"eventId\" :\"550e8400-E29B-41d4-a716-446655440000\" ,\r\n\"eventType\": \"t\" , "
      "\"timestamp\" : \"2020-07-06T10:30:00+02:00\" , \"version\" : \"2.0\" , \"data\" : { } } ",
      R"({"eventId":"550e8400-e29b-41d4-a716-446655440000","eventType":"a","eventType":"b",)"
      R"("timestamp":"2020-07-06T10:30:00Z","data":{"a":1},"data":{"b":2}})",
  };
  // Every byte of each original deleted, doubled and replaced by each of these, and then random
  // edits: structure, strings, escapes, non-ASCII and control bytes in every place.
  const std::string replacements = std::string("\"\\{}[],: a0-\x01\x7F\xC3\xFF", 17);
  std::vector<std::string> inputs;
  for (const auto& original : originals) {
    inputs.push_back(original);
    for (std::size_t at = 0; at < original.size(); ++at) {
      inputs.push_back(std::string(original).erase(at, 1));
      inputs.push_back(std::string(original).insert(at, 1, original[at]));
      for (char c : replacements) {
        std::string replaced = original;
        replaced[at] = c;
        inputs.push_back(std::move(replaced));
      }
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = originals[rng() % originals.size()];
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0 && !bytes.empty(); --edits) {
      const std::size_t at = rng() % bytes.size();
      if (rng() % 2)
        bytes[at] = replacements[rng() % replacements.size()];
      else
        bytes.erase(at, 1 + rng() % 4);
    }
    inputs.push_back(std::move(bytes));
  }
  std::size_t decoded = 0;
  for (const auto& bytes : inputs) {
    const DecodeResult fast = decode_envelope(bytes);
    const std::string difference = differences(fast, detail::decode_envelope_document(bytes));
    ASSERT_EQ(difference, "") << bytes;
    decoded += std::holds_alternative<Envelope>(fast) ? 1 : 0;
  }
  // The corpus reaches both outcomes in numbers, not only errors.
  EXPECT_GT(decoded, inputs.size() / 10);
  EXPECT_LT(decoded, inputs.size() / 2);
}

TEST(EnvelopeDecode, DeeplyNestedInputIsTooDeepWhateverElseIsWrongWithIt) {
  const std::string deep = "{\"data\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error(decode_envelope(deep), EnvelopeErrorCode::too_deep, "");
  const std::string unterminated(500000, '[');
  expect_error(decode_envelope(unterminated), EnvelopeErrorCode::too_deep, "");
}

// --- new_uuid ---------------------------------------------------------------------------------

TEST(NewUuid, ProducesTenThousandDistinctCanonicalVersion7Uuids) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = new_uuid();
    ASSERT_TRUE(is_uuid(id)) << id;
    EXPECT_EQ(id[14], '7') << id;                                          // version
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;  // RFC 4122 variant
    for (char c : id) EXPECT_FALSE(c >= 'A' && c <= 'F') << id;
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
  }
}

TEST(NewUuid, CarriesTheCurrentUnixMillisecondsAndLaterIdsSortLater) {
  auto millis_now = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto before = millis_now();
  const std::string first = new_uuid();
  const auto after = millis_now();
  const std::string hex = first.substr(0, 8) + first.substr(9, 4);
  const auto stamped = static_cast<std::int64_t>(std::stoull(hex, nullptr, 16));
  EXPECT_GE(stamped, before);
  EXPECT_LE(stamped, after);
  std::this_thread::sleep_for(2ms);  // a later millisecond
  const std::string second = new_uuid();
  EXPECT_LT(first, second);
}

TEST(NewUuid, IsUniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&results, t] {
      for (int i = 0; i < kPerThread; ++i) results[t].push_back(new_uuid());
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> all;
  for (const auto& ids : results) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(NewUuid, ForkedChildDoesNotRepeatTheParentsSequence) {
  (void)new_uuid();  // make sure this thread's generator exists before the fork
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string id = new_uuid();
    const ssize_t written = write(fds[1], id.data(), id.size());
    _exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string parent_id = new_uuid();
  char buffer[64] = {};
  const ssize_t got = read(fds[0], buffer, sizeof buffer);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_EQ(got, 36);
  EXPECT_NE(std::string(buffer, 36), parent_id);
}

TEST(NewUuid, DecodesAsEventId) {
  json doc = valid_doc();
  const std::string id = new_uuid();
  doc["eventId"] = id;
  EXPECT_EQ(expect_ok(decode(doc)).event_id, id);
}

// --- Stable names -----------------------------------------------------------------------------

TEST(StableNames, MessageKind) {
  EXPECT_EQ(to_string(MessageKind::unspecified), "unspecified");
  EXPECT_EQ(to_string(MessageKind::command), "command");
  EXPECT_EQ(to_string(MessageKind::reply), "reply");
  EXPECT_EQ(to_string(MessageKind::event), "event");
}

TEST(StableNames, EnvelopeErrorCode) {
  using C = EnvelopeErrorCode;
  const std::vector<std::pair<C, std::string>> expected = {{C::too_large, "too_large"},
                                                           {C::not_json, "not_json"},
                                                           {C::not_object, "not_object"},
                                                           {C::missing_field, "missing_field"},
                                                           {C::wrong_type, "wrong_type"},
                                                           {C::empty_field, "empty_field"},
                                                           {C::bad_uuid, "bad_uuid"},
                                                           {C::bad_timestamp, "bad_timestamp"},
                                                           {C::bad_version, "bad_version"},
                                                           {C::unknown_kind, "unknown_kind"},
                                                           {C::data_not_object, "data_not_object"},
                                                           {C::too_deep, "too_deep"}};
  for (const auto& [code, name] : expected) EXPECT_EQ(to_string(code), name);
}

TEST(StableNames, SagaStatusRoundTripsThroughFromString) {
  const std::vector<std::pair<SagaStatus, std::string>> expected = {
      {SagaStatus::Running, "Running"},
      {SagaStatus::Compensating, "Compensating"},
      {SagaStatus::Completed, "Completed"},
      {SagaStatus::Compensated, "Compensated"},
      {SagaStatus::Failed, "Failed"}};
  for (const auto& [status, name] : expected) {
    EXPECT_EQ(to_string(status), name);
    EXPECT_EQ(saga_status_from_string(name), status);
  }
  EXPECT_EQ(saga_status_from_string("running"), std::nullopt);
  EXPECT_EQ(saga_status_from_string(""), std::nullopt);
  EXPECT_EQ(saga_status_from_string("Running "), std::nullopt);
  EXPECT_EQ(saga_status_from_string("unknown"), std::nullopt);
}

TEST(StableNames, StoreErrorCode) {
  EXPECT_EQ(to_string(StoreErrorCode::busy), "busy");
  EXPECT_EQ(to_string(StoreErrorCode::conflict), "conflict");
  EXPECT_EQ(to_string(StoreErrorCode::io_error), "io_error");
  EXPECT_EQ(to_string(StoreErrorCode::corrupt), "corrupt");
  EXPECT_EQ(to_string(StoreErrorCode::not_found), "not_found");
}

TEST(StableNames, JournalKindRoundTripsThroughFromString) {
  const std::vector<std::pair<JournalKind, std::string>> expected = {
      {JournalKind::started, "started"},         {JournalKind::message_in, "message_in"},
      {JournalKind::message_out, "message_out"}, {JournalKind::transition, "transition"},
      {JournalKind::duplicate, "duplicate"},     {JournalKind::unexpected, "unexpected"},
      {JournalKind::user_error, "user_error"},   {JournalKind::status_changed, "status_changed"}};
  for (const auto& [kind, name] : expected) {
    EXPECT_EQ(to_string(kind), name);
    EXPECT_EQ(journal_kind_from_string(name), kind);
  }
  EXPECT_EQ(journal_kind_from_string("Started"), std::nullopt);
  EXPECT_EQ(journal_kind_from_string(""), std::nullopt);
  EXPECT_EQ(journal_kind_from_string("unknown"), std::nullopt);
}

TEST(StableNames, SendResult) {
  EXPECT_EQ(to_string(SendResult::sent), "sent");
  EXPECT_EQ(to_string(SendResult::would_block), "would_block");
  EXPECT_EQ(to_string(SendResult::unroutable), "unroutable");
}

}  // namespace
}  // namespace saga
