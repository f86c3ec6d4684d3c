// A retriable step's failure reply: the engine sends the step's command again, as a new command,
// after the wait its retry policy gives the n-th failure in a row, not at once.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../support/participant.hpp"
#include "../support/partly_away_transport.hpp"
#include "saga/definition.hpp"
#include "saga/detail/runtime.hpp"
#include "saga/engine.hpp"
#include "saga/metrics.hpp"
#include "saga/sqlite_store.hpp"

namespace mail {

struct Data {
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, address)

struct Charge {
  static constexpr std::string_view type = "billing.Charge";
  static constexpr int version = 1;
  static constexpr std::string_view service = "billing";
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Charge, address)

struct Charged {
  static constexpr std::string_view type = "billing.Charged";
  static constexpr int version = 1;
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Charged, address)

struct Notify {
  static constexpr std::string_view type = "mail.Notify";
  static constexpr int version = 1;
  static constexpr std::string_view service = "mail";
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Notify, address)

struct Notified {
  static constexpr std::string_view type = "mail.Notified";
  static constexpr int version = 1;
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Notified, address)

struct Bounced {
  static constexpr std::string_view type = "mail.Bounced";
  static constexpr int version = 1;
  std::string address;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Bounced, address)

Charge make_command(const Data& data, saga::tag<Charge>) {
  return {data.address};
}
Notify make_command(const Data& data, saga::tag<Notify>) {
  return {data.address};
}

// Charging is the pivot; the notification after it is retried until it is delivered.
struct ReceiptSaga
    : saga::definition<"receipt", 1, Data, saga::pivot<Charge>::on_success<Charged>,
                       saga::retriable<Notify>::on_success<Notified>::on_failure<Bounced>> {};

}  // namespace mail

namespace {

using namespace std::chrono_literals;
using saga::test::reply_bytes;
using saga::test::SentCommand;
using saga::test::take_commands;

class RetriableStepTest : public ::testing::Test {
 protected:
  RetriableStepTest() {
    options.store.path = ":memory:";
    options.idle_wait = 0ms;
    // 10 s, doubling, at most 60 s, no jitter; the notification's own policy is the default one.
    options.command_retry = {10s, 2.0, 60s, 0.0, 0};
    store = std::move(saga::SqliteStore::open(options.store).value());
    start_engine();
  }

  void start_engine() {
    engine.reset();
    engine = std::make_unique<saga::Engine>(options, *store, transport, clock);
    engine->register_saga<mail::ReceiptSaga>();
  }

  std::vector<SentCommand> sent() { return take_commands(transport.inner); }

  void reply(const SentCommand& command, std::string type) {
    transport.inner.deliver(reply_bytes(command.envelope, std::move(type),
                                        {{"address", command.envelope.data["address"]}}));
  }

  // Starts a receipt saga and charges it: returns its first notification.
  SentCommand notification_of(std::string& saga_id, const std::string& address) {
    saga_id = engine->start<mail::ReceiptSaga>({address});
    engine->run_once();
    auto charges = sent();
    EXPECT_EQ(charges.size(), 1u);
    reply(charges.at(0), "billing.Charged");
    engine->run_once();
    auto notifications = sent();
    EXPECT_EQ(notifications.size(), 1u);
    return notifications.at(0);
  }

  // Advances the clock by `by` and runs a turn; what the engine sent.
  std::vector<SentCommand> after(saga::Timestamp::duration by) {
    clock.advance(by);
    engine->run_once();
    return sent();
  }

  saga::Options options;
  saga::ManualClock clock;
  saga::test::PartlyAwayTransport transport;
  std::unique_ptr<saga::SqliteStore> store;
  std::unique_ptr<saga::Engine> engine;
};

TEST_F(RetriableStepTest, AFailureReplySendsANewCommandAfterThePolicysWaitNotAtOnce) {
  std::string id;
  SentCommand first = notification_of(id, "ann@example.com");
  reply(first, "mail.Bounced");
  engine->run_once();
  EXPECT_TRUE(sent().empty()) << "sent again at once";
  EXPECT_TRUE(after(9s).empty()) << "sent before the policy's first wait (10 s)";
  auto again = after(1s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].envelope.event_type, "mail.Notify");
  EXPECT_NE(again[0].envelope.event_id, first.envelope.event_id)
      << "the participant recorded its answer to the first command: a new one is needed";
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:mail.Notify");
  reply(again[0], "mail.Notified");
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
  EXPECT_TRUE(after(120s).empty());
}

TEST_F(RetriableStepTest, FailuresInARowWaitLongerEachTimeUpToThePolicysCap) {
  std::string id;
  SentCommand command = notification_of(id, "bob@example.com");
  // The n-th failure in a row waits 10 s x 2^(n-1), at most 60 s.
  for (auto wait : {10s, 20s, 40s, 60s, 60s}) {
    reply(command, "mail.Bounced");
    engine->run_once();
    EXPECT_TRUE(after(wait - 1s).empty()) << "sent before " << wait.count() << " s";
    auto again = after(1s);
    ASSERT_EQ(again.size(), 1u) << "not sent after " << wait.count() << " s";
    command = again[0];
  }
  EXPECT_EQ(engine->stats().command_timeouts, 0u);
  EXPECT_EQ(engine->stats().command_resends, 0u) << "each retry is a new command's first send";
}

TEST_F(RetriableStepTest, TheCommandTypesOwnPolicyGivesTheWait) {
  options.retry_by_command["mail.Notify"] = {200ms, 1.0, 200ms, 0.0, 0};
  start_engine();
  std::string id;
  SentCommand first = notification_of(id, "cy@example.com");
  reply(first, "mail.Bounced");
  engine->run_once();
  EXPECT_TRUE(after(150ms).empty());
  EXPECT_EQ(after(50ms).size(), 1u);
}

TEST_F(RetriableStepTest, ARetryWaitingAtARestartWaitsOutTheRestOfItsWaitUnderTheNextEngine) {
  std::string id;
  SentCommand first = notification_of(id, "dee@example.com");
  reply(first, "mail.Bounced");
  engine->run_once();
  ASSERT_TRUE(after(4s).empty());
  start_engine();  // the retry and its wait were committed: the next engine finds both
  engine->run_once();
  EXPECT_TRUE(sent().empty()) << "sent at once by the next engine, 6 s early";
  EXPECT_EQ(engine->stats().backlogged_commands, 0u)
      << "the start's backlog (every command sent at most once) counts the waiting retry";
  EXPECT_TRUE(after(5s).empty()) << "sent before its wait (10 s) was over";
  auto again = after(1s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].envelope.event_type, "mail.Notify");
  EXPECT_NE(again[0].envelope.event_id, first.envelope.event_id);
  EXPECT_EQ(engine->stats().command_resends, 0u) << "a first send, as without the restart";
  reply(again[0], "mail.Notified");
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
}

TEST_F(RetriableStepTest, FailuresInARowGoOnAcrossRestartsWhetherTheRetryWaitedOrHadLeft) {
  std::string id;
  SentCommand command = notification_of(id, "dan@example.com");
  reply(command, "mail.Bounced");
  engine->run_once();
  auto again = after(10s);  // the first failure's wait
  ASSERT_EQ(again.size(), 1u);
  // A restart after the retry left: it is sent again at once (it may not have left), and the
  // next failure is the second in a row.
  start_engine();
  engine->run_once();
  auto resent = sent();
  ASSERT_EQ(resent.size(), 1u);
  EXPECT_EQ(resent[0].envelope.event_id, again[0].envelope.event_id);
  reply(resent[0], "mail.Bounced");
  engine->run_once();
  EXPECT_TRUE(after(19s).empty()) << "the second failure in a row waits 20 s, not 10 s";
  // A restart while the third retry waits: it waits out 40 s from its failure reply.
  auto third = after(1s);
  ASSERT_EQ(third.size(), 1u);
  reply(third[0], "mail.Bounced");
  engine->run_once();
  ASSERT_TRUE(after(30s).empty());
  start_engine();
  engine->run_once();
  EXPECT_TRUE(after(9s).empty()) << "the third failure in a row waits 40 s";
  auto fourth = after(1s);
  ASSERT_EQ(fourth.size(), 1u);
  reply(fourth[0], "mail.Bounced");
  engine->run_once();
  EXPECT_TRUE(after(59s).empty()) << "the fourth waits 60 s (the cap), counted across restarts";
  EXPECT_EQ(after(1s).size(), 1u);
}

TEST_F(RetriableStepTest, ARetryReSentAtAStartKeepsItsSagasCountThroughTheNextStart) {
  std::string id;
  SentCommand command = notification_of(id, "hal@example.com");
  reply(command, "mail.Bounced");
  engine->run_once();
  ASSERT_EQ(after(10s).size(), 1u);
  start_engine();  // its wait is over: it may have left, so it is sent again, and marked so
  engine->run_once();
  auto resent = sent();
  ASSERT_EQ(resent.size(), 1u);
  engine->run_once();  // commits the re-send mark
  start_engine();
  engine->run_once();
  ASSERT_TRUE(sent().empty()) << "a re-sent command awaits its reply";
  reply(resent[0], "mail.Bounced");
  engine->run_once();
  EXPECT_TRUE(after(19s).empty()) << "the second failure in a row waits 20 s, not 10 s";
  EXPECT_EQ(after(1s).size(), 1u);
}

TEST_F(RetriableStepTest, UnderAOneAttemptPolicyARetryThatLeftAfterItsWaitIsNotOverdueAtAStart) {
  options.retry_by_command["mail.Notify"] = {10s, 2.0, 60s, 0.0, 1};
  start_engine();
  std::string id;
  SentCommand command = notification_of(id, "ivy@example.com");
  reply(command, "mail.Bounced");
  engine->run_once();
  auto retry = after(10s);
  ASSERT_EQ(retry.size(), 1u);
  clock.advance(1s);
  start_engine();  // it left 1 s ago at the earliest: its reply may come for 9 s more
  engine->run_once();
  EXPECT_TRUE(after(8s).empty()) << "treated as overdue from its commit, not from its wait";
  EXPECT_EQ(store->load_saga(id).value()->state, "awaiting:mail.Notify");
  reply(retry[0], "mail.Notified");
  engine->run_once();
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Completed);
}

TEST_F(RetriableStepTest, TheBacklogReadBackDoesNotSendAWaitingRetryEarly) {
  options.max_queued_commands = 1;
  start_engine();
  std::string waiting_id, queued_id, backlogged_id;
  SentCommand bounced = notification_of(waiting_id, "eve@example.com");
  transport.away.insert("mail");
  // One notification fills the mail queue; the next one starts the destination's backlog.
  saga::test::SentCommand unused;
  for (std::string* id : {&queued_id, &backlogged_id}) {
    *id = engine->start<mail::ReceiptSaga>({"later@example.com"});
    engine->run_once();
    auto charges = sent();
    ASSERT_EQ(charges.size(), 1u);
    reply(charges[0], "billing.Charged");
    engine->run_once();
    EXPECT_TRUE(sent().empty());
  }
  ASSERT_EQ(engine->stats().backlogged_commands, 1u);
  reply(bounced, "mail.Bounced");  // its retry is committed behind the backlog's first row
  engine->run_once();
  transport.away.clear();
  auto caught_up = after(1s);
  ASSERT_EQ(caught_up.size(), 2u) << "the queued and the backlogged notification";
  for (const auto& command : caught_up)
    EXPECT_NE(command.envelope.correlation_id, bounced.envelope.correlation_id)
        << "the retry left before its wait was over";
  EXPECT_TRUE(after(8s).empty());
  auto retried = after(1s);
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0].envelope.correlation_id, bounced.envelope.correlation_id);
}

TEST_F(RetriableStepTest, ARetryCommittedBehindABacklogStartedInItsOwnTurnIsNotSentEarly) {
  options.max_queued_commands = 1;
  start_engine();
  std::string waiting_id, queued_id, overflowing_id;
  SentCommand bounced = notification_of(waiting_id, "fay@example.com");
  transport.away.insert("mail");
  queued_id = engine->start<mail::ReceiptSaga>({"queued@example.com"});
  engine->run_once();
  auto charges = sent();
  ASSERT_EQ(charges.size(), 1u);
  reply(charges[0], "billing.Charged");
  engine->run_once();  // its notification fills the mail queue: no backlog yet
  ASSERT_EQ(engine->stats().backlogged_commands, 0u);
  overflowing_id = engine->start<mail::ReceiptSaga>({"overflow@example.com"});
  engine->run_once();
  charges = sent();
  ASSERT_EQ(charges.size(), 1u);
  // One turn: the charge reply's notification starts the backlog, then the failure reply's
  // retry is committed behind it.
  reply(charges[0], "billing.Charged");
  reply(bounced, "mail.Bounced");
  engine->run_once();
  ASSERT_EQ(engine->stats().backlogged_commands, 1u);
  transport.away.clear();
  auto caught_up = after(1s);
  ASSERT_EQ(caught_up.size(), 2u) << "the queued and the backlogged notification";
  for (const auto& command : caught_up)
    EXPECT_NE(command.envelope.correlation_id, bounced.envelope.correlation_id)
        << "the retry left before its wait was over";
  EXPECT_TRUE(after(8s).empty());
  auto retried = after(1s);
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0].envelope.correlation_id, bounced.envelope.correlation_id);
}

// The value of an unlabelled gauge in the metrics' text exposition.
double gauge(const saga::Metrics& metrics, const std::string& name) {
  std::istringstream text(metrics.render());
  for (std::string line; std::getline(text, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  ADD_FAILURE() << "no gauge " << name;
  return -1;
}

TEST_F(RetriableStepTest, AWaitingRetryIsNotLagAndItsAgeCountsFromItsSend) {
  options.metrics = std::make_shared<saga::Metrics>();
  start_engine();
  std::string id;
  SentCommand first = notification_of(id, "gus@example.com");
  reply(first, "mail.Bounced");
  engine->run_once();
  // Nothing else is in flight: the oldest command awaiting a reply is the waiting retry.
  clock.advance(9s);
  engine->run_once();
  EXPECT_EQ(gauge(*options.metrics, "saga_oldest_awaiting_reply_age_seconds"), 0)
      << "a retry waiting for its turn is not lag";
  auto again = after(1s);
  ASSERT_EQ(again.size(), 1u);
  clock.advance(3s);
  engine->run_once();
  EXPECT_EQ(gauge(*options.metrics, "saga_oldest_awaiting_reply_age_seconds"), 3)
      << "counted from its send";
}

}  // namespace
