// The linear DSL beyond the order saga: a 12-step saga (past Boost.MPL's 20-element default),
// retriable steps after the pivot, and user code that throws at each point.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "../support/participant.hpp"
#include "saga/definition.hpp"
#include "saga/detail/runtime.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"
#include "saga/testing.hpp"

namespace chain {

struct Data {
  std::vector<std::string> log;
  std::string throw_on;  // a message type whose builder or handler throws
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, log, throw_on)

#define CHAIN_MESSAGE(Name, Service)                         \
  struct Name {                                              \
    static constexpr std::string_view type = "chain." #Name; \
    static constexpr int version = 1;                        \
    static constexpr std::string_view service = Service;     \
    std::string note;                                        \
  };                                                         \
  NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Name, note)

#define CHAIN_STEP(N)                  \
  CHAIN_MESSAGE(Do##N, "service" #N)   \
  CHAIN_MESSAGE(Done##N, "")           \
  CHAIN_MESSAGE(Failed##N, "")         \
  CHAIN_MESSAGE(Undo##N, "service" #N) \
  CHAIN_MESSAGE(Undone##N, "")

CHAIN_STEP(1)
CHAIN_STEP(2)
CHAIN_STEP(3)
CHAIN_STEP(4)
CHAIN_STEP(5)
CHAIN_STEP(6)
CHAIN_STEP(7)
CHAIN_STEP(8)
CHAIN_STEP(9)
CHAIN_STEP(10)
CHAIN_STEP(11)
CHAIN_STEP(12)

// The engine would write these on the wire as "eventType":"" or "version":"0", which every
// participant refuses: they are not messages, and a definition naming them does not compile.
struct VersionZero {
  static constexpr std::string_view type = "chain.VersionZero";
  static constexpr int version = 0;
  std::string note;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(VersionZero, note)
struct Unnamed {
  static constexpr std::string_view type = "";
  static constexpr int version = 1;
  std::string note;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Unnamed, note)
static_assert(saga::Message<Do1> && saga::Command<Do1>);
static_assert(!saga::Message<VersionZero>);
static_assert(!saga::Message<Unnamed>);

template <class Cmd>
Cmd make_command(const Data& data, saga::tag<Cmd>) {
  if (data.throw_on == Cmd::type)
    throw std::runtime_error("cannot build " + std::string(Cmd::type));
  return Cmd{std::to_string(data.log.size())};
}

template <class Reply>
void apply_reply(Data& data, const Reply&) {
  if (data.throw_on == Reply::type)
    throw std::runtime_error("cannot apply " + std::string(Reply::type));
  data.log.emplace_back(Reply::type);
}

#define COMPENSATABLE(N) \
  saga::step<Do##N>::on_success<Done##N>::on_failure<Failed##N>::compensate_with<Undo##N, Undone##N>

// clang-format off
struct Twelve : saga::definition<"twelve", 1, Data,
    COMPENSATABLE(1), COMPENSATABLE(2), COMPENSATABLE(3), COMPENSATABLE(4), COMPENSATABLE(5),
    COMPENSATABLE(6), COMPENSATABLE(7), COMPENSATABLE(8), COMPENSATABLE(9), COMPENSATABLE(10),
    saga::pivot<Do11>::on_success<Done11>::on_failure<Failed11>,
    saga::retriable<Do12>::on_success<Done12>::on_failure<Failed12>> {};

struct Three : saga::definition<"three", 1, Data,
    COMPENSATABLE(1),
    saga::step<Do2>::on_success<Done2>::on_failure<Failed2>,  // needs no undo
    COMPENSATABLE(3),
    saga::pivot<Do4>::on_success<Done4>,
    saga::retriable<Do5>::on_success<Done5>::on_failure<Failed5>> {};
// clang-format on

}  // namespace chain

namespace {

using chain::Data;
using Scenario12 = saga::testing::Scenario<chain::Twelve>;

Scenario12& advance_ten(Scenario12& scenario) {
  using namespace chain;
  return scenario.expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_command<Do3>()
      .when_reply(Done3{})
      .expect_command<Do4>()
      .when_reply(Done4{})
      .expect_command<Do5>()
      .when_reply(Done5{})
      .expect_command<Do6>()
      .when_reply(Done6{})
      .expect_command<Do7>()
      .when_reply(Done7{})
      .expect_command<Do8>()
      .when_reply(Done8{})
      .expect_command<Do9>()
      .when_reply(Done9{})
      .expect_command<Do10>()
      .when_reply(Done10{});
}

TEST(LinearDsl, TwelveStepSagaHasAllItsStates) {
  auto type = saga::make_saga_type<chain::Twelve>();
  // 12 awaiting + 10 compensating + Initial, Completed, Compensated (a failure parks in place).
  EXPECT_EQ(type->states().size(), 25u);
  EXPECT_EQ(type->message_types().size(), 12u + 12u + 10u);
}

TEST(LinearDsl, TwelveStepSagaCompletes) {
  using namespace chain;
  Scenario12 scenario{Data{}};
  advance_ten(scenario)
      .expect_command<Do11>()
      .to("service11")
      .when_reply(Done11{})
      .expect_command<Do12>()
      .to("service12")
      .when_reply(Done12{})
      .expect_completed();
  EXPECT_EQ(scenario.data().log.size(), 12u);
}

TEST(LinearDsl, FailedPivotOfTwelveStepSagaUndoesTenStepsInReverseOrder) {
  using namespace chain;
  Scenario12 scenario{Data{}};
  advance_ten(scenario)
      .expect_command<Do11>()
      .when_reply(Failed11{})
      .expect_compensation<Undo10>()
      .expect_no_command()
      .when_reply(Undone10{})
      .expect_compensation<Undo9>()
      .when_reply(Undone9{})
      .expect_compensation<Undo8>()
      .when_reply(Undone8{})
      .expect_compensation<Undo7>()
      .when_reply(Undone7{})
      .expect_compensation<Undo6>()
      .when_reply(Undone6{})
      .expect_compensation<Undo5>()
      .when_reply(Undone5{})
      .expect_compensation<Undo4>()
      .when_reply(Undone4{})
      .expect_compensation<Undo3>()
      .when_reply(Undone3{})
      .expect_compensation<Undo2>()
      .when_reply(Undone2{})
      .expect_compensation<Undo1>()
      .to("service1")
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, RetriableStepResendsItsCommandOnFailure) {
  using namespace chain;
  Scenario12 scenario{Data{}};
  advance_ten(scenario)
      .expect_command<Do11>()
      .when_reply(Done11{})
      .expect_command<Do12>()
      .when_reply(Failed12{})
      .expect_command<Do12>()
      .when_reply(Failed12{})
      .expect_command<Do12>()
      .expect_status(saga::SagaStatus::Running)
      .when_unexpected_reply(Undone1{})
      .when_reply(Done12{})
      .expect_completed();
}

TEST(LinearDsl, StepWithoutCompensationIsSkippedWhenUndoing) {
  using namespace chain;
  saga::testing::given<Three>(Data{})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_command<Do3>()
      .when_reply(Done3{})
      .expect_command<Do4>()
      .when_reply(Done4{})
      .expect_command<Do5>()
      .when_reply(Done5{})
      .expect_completed();
  saga::testing::given<Three>(Data{})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_command<Do3>()
      .when_reply(Failed3{})
      .expect_compensation<Undo1>()  // step 2 has nothing to undo
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, TimedOutStepWithoutCompensationUndoesTheStepsBeforeIt) {
  using namespace chain;
  saga::testing::given<Three>(Data{})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_timed_out()
      .expect_compensation<Undo1>()
      .undoing<Do1>()
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, TimedOutCompensatableStepIsUndoneItselfFirst) {
  using namespace chain;
  saga::testing::given<Three>(Data{})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_command<Do3>()
      .when_timed_out()
      .expect_compensation<Undo3>()
      .undoing<Do3>()
      .expect_state("compensating:chain.Undo3")
      .when_reply(Undone3{})
      .expect_compensation<Undo1>()  // step 2 has nothing to undo
      .undoing<Do1>()
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, TimedOutCompensationParksTheSaga) {
  using namespace chain;
  saga::testing::given<Three>(Data{})
      .expect_command<Do1>()
      .when_timed_out()
      .expect_compensation<Undo1>()
      .when_timed_out()
      .expect_failed()
      .expect_state("compensating:chain.Undo1");
}

TEST(LinearDsl, ThrowingReplyHandlerAfterSuccessUndoesThatStepToo) {
  using namespace chain;
  // Done2 arrived (the participant did the work) but folding it threw: step 3 never starts and
  // steps 2..1 are compensated, step 2 first.
  saga::testing::given<Twelve>(Data{{}, "chain.Done2"})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_user_error("cannot apply chain.Done2")
      .expect_compensation<Undo2>()
      .when_reply(Undone2{})
      .expect_compensation<Undo1>()
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, ThrowingCommandBuilderFailsThatStep) {
  using namespace chain;
  saga::testing::given<Twelve>(Data{{}, "chain.Do3"})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Done2{})
      .expect_user_error("cannot build chain.Do3")
      .expect_compensation<Undo2>()
      .when_reply(Undone2{})
      .expect_compensation<Undo1>()
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, ThrowingFailureHandlerIsJournaledAndCompensationGoesAhead) {
  using namespace chain;
  saga::testing::given<Twelve>(Data{{}, "chain.Failed2"})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Failed2{})
      .expect_user_error("cannot apply chain.Failed2")
      .expect_compensation<Undo1>()
      .when_reply(Undone1{})
      .expect_rolled_back();
}

TEST(LinearDsl, ThrowingCompensationBuilderParksTheSagaAsFailed) {
  using namespace chain;
  saga::testing::given<Twelve>(Data{{}, "chain.Undo1"})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Failed2{})
      .expect_user_error("cannot build chain.Undo1")
      .expect_failed()
      .expect_state("compensating:chain.Undo1");  // parked in place
}

TEST(LinearDsl, ThrowingBuilderAfterThePivotParksTheSagaAsFailed) {
  using namespace chain;
  Scenario12 scenario{Data{{}, "chain.Do12"}};
  advance_ten(scenario)
      .expect_command<Do11>()
      .when_reply(Done11{})
      .expect_user_error("cannot build chain.Do12")
      .expect_failed();
}

TEST(LinearDsl, ParkedSagaTakesNoMoreMessages) {
  using namespace chain;
  saga::testing::given<Twelve>(Data{{}, "chain.Undo1"})
      .expect_command<Do1>()
      .when_reply(Done1{})
      .expect_command<Do2>()
      .when_reply(Failed2{})
      .expect_failed()
      .when_unexpected_reply(Undone1{});
}

// Engine::retry re-sends the command whose retry policy ran out. When user code parked the saga
// after that timeout (here the compensation's builder throws), the timed-out step command is not
// what the saga waits for: retry used to re-send it anyway and report success.
TEST(LinearDslEngine, RetryOfASagaParkedByUserCodeAfterATimeoutIsRefused) {
  using namespace std::chrono_literals;
  saga::Options options;
  options.store.path = ":memory:";
  options.idle_wait = 0ms;
  options.command_retry = {10s, 1.0, 10s, 0.0, 1};
  saga::ManualClock clock;
  saga::MemoryTransport transport;
  auto store = std::move(saga::SqliteStore::open(options.store).value());
  saga::Engine engine(options, *store, transport, clock);
  engine.register_saga<chain::Three>();
  std::string id = engine.start<chain::Three>(Data{{}, "chain.Undo1"});
  engine.run_once();
  auto do1 = saga::test::take_commands(transport).at(0);
  transport.deliver(saga::test::reply_bytes(do1.envelope, "chain.Done1", {{"note", "1"}}));
  engine.run_once();
  ASSERT_EQ(saga::test::take_commands(transport).at(0).envelope.event_type, "chain.Do2");
  clock.advance(11s);
  for (int turn = 0; turn < 3; ++turn) engine.run_once();  // Do2 is given up on; Undo1 throws
  auto parked = store->load_saga(id).value();
  ASSERT_EQ(parked->status, saga::SagaStatus::Failed);
  ASSERT_EQ(parked->state, "compensating:chain.Undo1");

  auto answer = engine.retry(id);
  engine.run_once();
  auto result = answer.get();
  EXPECT_FALSE(result.ok) << result.message;
  EXPECT_TRUE(saga::test::take_commands(transport).empty()) << "the timed-out step was re-sent";
  EXPECT_EQ(store->load_saga(id).value()->status, saga::SagaStatus::Failed);
}

}  // namespace
