// A saga that branches, written directly as a Boost.MSM transition table with the engine's
// actions; and state restoration by name when the table is reordered.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "saga/detail/runtime.hpp"
#include "saga/machine.hpp"
#include "saga/testing.hpp"

namespace loan {

struct Data {
  std::string applicant;
  int amount = 0;
  std::string hold_id;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, applicant, amount, hold_id)

#define LOAN_MESSAGE(Name, Type, Service)                \
  struct Name {                                          \
    static constexpr std::string_view type = Type;       \
    static constexpr int version = 1;                    \
    static constexpr std::string_view service = Service; \
    std::string note;                                    \
  };                                                     \
  NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Name, note)

LOAN_MESSAGE(CheckCredit, "credit.Check", "credit")
LOAN_MESSAGE(CreditOk, "credit.Ok", "")
LOAN_MESSAGE(CreditLow, "credit.Low", "")
LOAN_MESSAGE(RequestApproval, "approval.Request", "approval")
LOAN_MESSAGE(Approved, "approval.Approved", "")
LOAN_MESSAGE(Rejected, "approval.Rejected", "")
LOAN_MESSAGE(HoldFunds, "funds.Hold", "funds")
LOAN_MESSAGE(FundsHeld, "funds.Held", "")
LOAN_MESSAGE(NoFunds, "funds.Unavailable", "")
LOAN_MESSAGE(Disburse, "funds.Disburse", "funds")
LOAN_MESSAGE(Disbursed, "funds.Disbursed", "")
LOAN_MESSAGE(DisburseFailed, "funds.DisburseFailed", "")
LOAN_MESSAGE(ReleaseHold, "funds.ReleaseHold", "funds")
LOAN_MESSAGE(HoldReleased, "funds.HoldReleased", "")

template <class Cmd>
Cmd make_command(const Data& data, saga::tag<Cmd>) {
  if (data.amount < 0) throw std::invalid_argument("negative amount");
  return Cmd{data.applicant};
}
void apply_reply(Data& data, const FundsHeld& reply) {
  data.hold_id = reply.note;
}

struct Checking : saga::state<> {
  static constexpr std::string_view name = "Checking";
};
struct AwaitingApproval : saga::state<> {
  static constexpr std::string_view name = "AwaitingApproval";
};
struct Holding : saga::state<> {
  static constexpr std::string_view name = "Holding";
};
struct Disbursing : saga::state<> {
  static constexpr std::string_view name = "Disbursing";
};
struct Releasing : saga::state<saga::SagaStatus::Compensating> {
  static constexpr std::string_view name = "Releasing";
};

using saga::compensate;
using saga::send;
using Initial = saga::states::Initial;
using Completed = saga::states::Completed;
using Compensated = saga::states::Compensated;
using Failed = saga::states::Failed;

struct LoanSaga : saga::machine<LoanSaga, Data> {
  static constexpr std::string_view name = "loan";
  static constexpr int version = 1;
  using initial_state = Initial;
  // clang-format off
  using transition_table = saga::table<
  //               Source            Event              Target            Action
  saga::transition< Initial,          saga::Begin,       Checking,         send<CheckCredit>>,
  saga::transition< Checking,         CreditOk,          Holding,          send<HoldFunds>>,
  saga::transition< Checking,         CreditLow,         AwaitingApproval, send<RequestApproval>>,
  saga::transition< Checking,         saga::StepFailed,  Compensated>,
  saga::transition< AwaitingApproval, Approved,          Holding,          send<HoldFunds>>,
  saga::transition< AwaitingApproval, Rejected,          Compensated>,
  saga::transition< Holding,          FundsHeld,         Disbursing,       send<Disburse>>,
  saga::transition< Holding,          NoFunds,           Compensated>,
  saga::transition< Disbursing,       Disbursed,         Completed>,
  saga::transition< Disbursing,       DisburseFailed,    Releasing,        compensate<ReleaseHold>>,
  saga::transition< Releasing,        HoldReleased,      Compensated>,
  saga::transition< Releasing,        saga::StepFailed,  Failed>
  >;
  // clang-format on
};

// The same saga with its rows in another order: Boost.MSM numbers the states differently.
struct LoanSagaReordered : saga::machine<LoanSagaReordered, Data> {
  static constexpr std::string_view name = "loan";
  static constexpr int version = 1;
  using initial_state = Initial;
  // clang-format off
  using transition_table = saga::table<
  //               Source            Event              Target            Action
  saga::transition< Releasing,        saga::StepFailed,  Failed>,
  saga::transition< Releasing,        HoldReleased,      Compensated>,
  saga::transition< Disbursing,       DisburseFailed,    Releasing,        compensate<ReleaseHold>>,
  saga::transition< Disbursing,       Disbursed,         Completed>,
  saga::transition< Holding,          NoFunds,           Compensated>,
  saga::transition< Holding,          FundsHeld,         Disbursing,       send<Disburse>>,
  saga::transition< AwaitingApproval, Rejected,          Compensated>,
  saga::transition< AwaitingApproval, Approved,          Holding,          send<HoldFunds>>,
  saga::transition< Checking,         saga::StepFailed,  Compensated>,
  saga::transition< Checking,         CreditLow,         AwaitingApproval, send<RequestApproval>>,
  saga::transition< Checking,         CreditOk,          Holding,          send<HoldFunds>>,
  saga::transition< Initial,          saga::Begin,       Checking,         send<CheckCredit>>
  >;
  // clang-format on
};

}  // namespace loan

namespace {

using namespace loan;

TEST(BranchingSaga, GoodCreditTakesTheShortBranch) {
  saga::testing::given<LoanSaga>(Data{"ada", 100, ""})
      .expect_command<CheckCredit>()
      .to("credit")
      .when_reply(CreditOk{})
      .expect_command<HoldFunds>()
      .to("funds")
      .when_reply(FundsHeld{"hold-7"})
      .expect_command<Disburse>()
      .when_reply(Disbursed{})
      .expect_completed();
}

TEST(BranchingSaga, LowCreditAsksForApprovalFirst) {
  saga::testing::given<LoanSaga>(Data{"bob", 100, ""})
      .expect_command<CheckCredit>()
      .when_reply(CreditLow{})
      .expect_command<RequestApproval>()
      .to("approval")
      .expect_state("AwaitingApproval")
      .when_reply(Approved{})
      .expect_command<HoldFunds>();
  saga::testing::given<LoanSaga>(Data{"bob", 100, ""})
      .expect_command<CheckCredit>()
      .when_reply(CreditLow{})
      .expect_command<RequestApproval>()
      .when_reply(Rejected{})
      .expect_rolled_back();
}

TEST(BranchingSaga, CompensateActionSendsACompensation) {
  auto scenario = saga::testing::given<LoanSaga>(Data{"cy", 100, ""});
  scenario.expect_command<CheckCredit>()
      .when_reply(CreditOk{})
      .expect_command<HoldFunds>()
      .when_reply(FundsHeld{"hold-9"})
      .expect_command<Disburse>()
      .when_reply(DisburseFailed{})
      .expect_compensation<ReleaseHold>()
      .to("funds")
      .expect_status(saga::SagaStatus::Compensating)
      .when_reply(HoldReleased{})
      .expect_rolled_back();
  EXPECT_EQ(scenario.data().hold_id, "hold-9");
}

TEST(BranchingSaga, UserCodeFailureWithoutAStepFailedRowParksTheSaga) {
  // Holding has no StepFailed row: a builder that throws there parks the saga as Failed.
  auto type = saga::make_saga_type<LoanSaga>();
  auto restored = type->restore("AwaitingApproval", saga::SagaStatus::Running,
                                nlohmann::json(Data{"dee", -1, ""}));
  auto& instance = std::get<0>(restored);
  saga::Reaction reaction = instance->handle("approval.Approved", nlohmann::json(Approved{}));
  ASSERT_TRUE(reaction.applied());
  EXPECT_EQ(instance->status(), saga::SagaStatus::Failed);
  EXPECT_EQ(instance->state(), "Holding");
  EXPECT_TRUE(reaction.commands.empty());
  ASSERT_EQ(reaction.user_errors.size(), 1u);
  EXPECT_EQ(reaction.user_errors[0], "negative amount");
}

TEST(BranchingSaga, TimeoutTakesTheUnguardedStepFailedRowOfAHandWrittenTable) {
  // A table written without the timeout guards treats a timeout like any other StepFailed.
  auto type = saga::make_saga_type<LoanSaga>();
  auto restored =
      type->restore("Checking", saga::SagaStatus::Running, nlohmann::json(Data{"dee", 5, ""}));
  auto& checking = std::get<0>(restored);
  saga::Reaction reaction = checking->time_out("no reply to credit.Check");
  ASSERT_TRUE(reaction.applied());
  EXPECT_EQ(checking->state(), "Compensated");
  // Holding has no StepFailed row: parked in place.
  auto holding = std::move(std::get<0>(
      type->restore("Holding", saga::SagaStatus::Running, nlohmann::json(Data{"dee", 5, ""}))));
  ASSERT_TRUE(holding->time_out("no reply to funds.Hold").applied());
  EXPECT_EQ(holding->status(), saga::SagaStatus::Failed);
  EXPECT_EQ(holding->state(), "Holding");
}

TEST(BranchingSaga, StateIsRestoredByNameWhenTheTableIsReordered) {
  auto original = saga::make_saga_type<LoanSaga>();
  auto reordered = saga::make_saga_type<LoanSagaReordered>();
  // The numbering really differs, so restoring by number would land in the wrong state.
  ASSERT_NE(original->states(), reordered->states());
  auto sorted = [](std::vector<std::string_view> names) {
    std::sort(names.begin(), names.end());
    return names;
  };
  ASSERT_EQ(sorted(original->states()), sorted(reordered->states()));

  auto instance = original->create(nlohmann::json(Data{"eve", 100, ""}));
  instance->begin();
  ASSERT_TRUE(instance->handle("credit.Low", nlohmann::json(CreditLow{})).applied());
  std::string persisted_state(instance->state());
  nlohmann::json persisted_data = instance->data();
  ASSERT_EQ(persisted_state, "AwaitingApproval");

  auto restored = reordered->restore(persisted_state, instance->status(), persisted_data);
  auto& resumed = std::get<0>(restored);
  EXPECT_EQ(resumed->state(), "AwaitingApproval");
  saga::Reaction reaction = resumed->handle("approval.Approved", nlohmann::json(Approved{}));
  ASSERT_TRUE(reaction.applied());
  EXPECT_EQ(resumed->state(), "Holding");
  ASSERT_EQ(reaction.commands.size(), 1u);
  EXPECT_EQ(reaction.commands[0].type, "funds.Hold");
}

TEST(BranchingSaga, MessageTheCurrentStateDoesNotExpectIsRejected) {
  saga::testing::given<LoanSaga>(Data{"fay", 100, ""})
      .expect_command<CheckCredit>()
      .when_unexpected_reply(Approved{})
      .when_unexpected_reply(HoldReleased{})
      .expect_state("Checking");
}

}  // namespace
