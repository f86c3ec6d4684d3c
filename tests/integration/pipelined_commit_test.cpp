// Pipelined commits (docs/architecture.md, "Pipelined commits"): run() processes turn N+1 while
// the store thread commits turn N. A store that holds a commit until the test releases it (and
// can fail it) makes the overlap certain: N+1 is processed against N's effects before they are
// durable, and must give the same result as if the turns had run one after the other.
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;

// Holds the next commit until release(); the release may fail it instead.
class GatedStore final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    {
      std::unique_lock lock(mutex_);
      if (hold_) {
        held_ = true;
        changed_.notify_all();
        changed_.wait(lock, [this] { return !hold_; });
        held_ = false;
        if (std::exchange(fail_, false))
          return saga::StoreStatus::failure(saga::StoreErrorCode::io_error, "injected failure");
      }
    }
    return inner().commit(batch);
  }

  void hold_next() {
    std::lock_guard lock(mutex_);
    hold_ = true;
  }
  bool wait_until_held() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [this] { return held_; });
  }
  void release(bool fail) {
    {
      std::lock_guard lock(mutex_);
      hold_ = false;
      fail_ = fail;
    }
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool hold_ = false, held_ = false, fail_ = false;
};

class PipelinedCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("saga-pipeline-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
    options_.store.path = (directory_ / "saga.db").string();
    options_.idle_wait = 5ms;
    options_.commit_backoff = 1ms;
    store_ = std::move(saga::SqliteStore::open(options_.store).value());
    gated_ = std::make_unique<GatedStore>(*store_);
    ASSERT_TRUE(gated_->concurrent_reads());
    engine_ = std::make_unique<saga::Engine>(options_, *gated_, transport_, clock_);
    engine_->register_saga<order::OrderSaga>();
    engine_->on_outcome([this](const saga::SagaOutcome& outcome) {
      std::lock_guard lock(mutex_);
      outcomes_[outcome.saga_id] = outcome.status;
    });
    loop_ = std::thread([this] { engine_->run(); });
  }
  void TearDown() override {
    gated_->release(false);
    engine_->stop();
    if (loop_.joinable()) loop_.join();
    engine_.reset();
    gated_.reset();
    store_.reset();
    std::filesystem::remove_all(directory_);
  }

  saga::test::SentCommand next_command() {
    for (int i = 0; i < 500; ++i) {
      auto commands = saga::test::take_commands(transport_);
      if (!commands.empty()) {
        EXPECT_EQ(commands.size(), 1u);
        return commands.front();
      }
      std::this_thread::sleep_for(2ms);
    }
    ADD_FAILURE() << "no command was sent";
    return {};
  }

  // The loop has taken every delivered message and had time to process it (it then waits for
  // the held commit before it can hand its turn over).
  void let_the_loop_process() {
    for (int i = 0; i < 500 && transport_.inbound_queued() > 0; ++i)
      std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
  }

  int journal_count(const std::string& saga_id, saga::JournalKind kind,
                    const std::string& message_id = {}) {
    int count = 0;
    for (const auto& entry : store_->journal(saga_id).value())
      if (entry.kind == kind && (message_id.empty() || entry.message_id == message_id)) ++count;
    return count;
  }

  std::string reserved_reply(const saga::test::SentCommand& command) {
    return saga::test::reply_bytes(command.envelope, "inventory.Reserved",
                                   {{"reservation_id", "r"}});
  }

  std::filesystem::path directory_;
  saga::Options options_;
  saga::ManualClock clock_;
  saga::MemoryTransport transport_;
  std::unique_ptr<saga::SqliteStore> store_;
  std::unique_ptr<GatedStore> gated_;
  std::unique_ptr<saga::Engine> engine_;
  std::thread loop_;
  std::mutex mutex_;
  std::map<std::string, saga::SagaStatus> outcomes_;
};

TEST_F(PipelinedCommitTest, ADuplicateOfAReplyStillBeingCommittedIsRecognisedAsADuplicate) {
  std::string saga_id = engine_->start<order::OrderSaga>({"order-0", "c", "a", {{"sku", 1, 10}}});
  auto reserve = next_command();
  ASSERT_EQ(reserve.envelope.event_type, "inventory.Reserve");

  gated_->hold_next();
  std::string reply = reserved_reply(reserve);
  transport_.deliver(reply);
  ASSERT_TRUE(gated_->wait_until_held());
  transport_.deliver(reply);  // redelivered while the first copy's turn is being committed
  let_the_loop_process();
  EXPECT_TRUE(transport_.take_sent().empty()) << "a command left before its turn committed";

  gated_->release(false);
  auto charge = next_command();
  EXPECT_EQ(charge.envelope.event_type, "payment.Charge");
  engine_->stop();
  loop_.join();
  auto reply_id = std::get<saga::Envelope>(saga::decode_envelope(reply)).event_id;
  EXPECT_EQ(journal_count(saga_id, saga::JournalKind::message_in, reply_id), 1);
  EXPECT_EQ(journal_count(saga_id, saga::JournalKind::duplicate, reply_id), 1);
  EXPECT_EQ(journal_count(saga_id, saga::JournalKind::unexpected), 0);
  EXPECT_TRUE(store_->dead_letters(10).value().empty());
  EXPECT_EQ(engine_->stats().duplicates, 1u);
}

TEST_F(PipelinedCommitTest, AFailedCommitAlsoRetriesTheTurnProcessedAgainstItAndLosesNothing) {
  std::string first = engine_->start<order::OrderSaga>({"order-0", "c", "a", {{"sku", 1, 10}}});
  auto reserve = next_command();

  gated_->hold_next();
  std::string reply = reserved_reply(reserve);
  transport_.deliver(reply);
  ASSERT_TRUE(gated_->wait_until_held());
  // Processed while the reply's turn commits: a new saga, and the reply's saga read again.
  std::string second = engine_->start<order::OrderSaga>({"order-2", "c", "a", {{"sku", 1, 10}}});
  let_the_loop_process();
  gated_->release(true);  // the reply's turn fails after the next turn was built on it

  // Both turns are retried, in order: the first saga goes on to payment, the second starts.
  std::map<std::string, std::string> sent;  // saga -> command type
  for (int i = 0; i < 500 && sent.size() < 2; ++i) {
    for (auto& command : saga::test::take_commands(transport_))
      EXPECT_TRUE(sent.emplace(command.envelope.correlation_id, command.envelope.event_type).second)
          << "two commands for one saga";
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(sent[first], "payment.Charge");
  EXPECT_EQ(sent[second], "inventory.Reserve");
  engine_->stop();
  loop_.join();
  EXPECT_GE(engine_->stats().commit_failures, 1u);
  auto reply_id = std::get<saga::Envelope>(saga::decode_envelope(reply)).event_id;
  EXPECT_EQ(journal_count(first, saga::JournalKind::message_in, reply_id), 1);
  EXPECT_EQ(journal_count(second, saga::JournalKind::started), 1);
  EXPECT_EQ(journal_count(first, saga::JournalKind::unexpected), 0);
  EXPECT_TRUE(store_->dead_letters(10).value().empty());
  EXPECT_EQ(store_->load_saga(first).value()->state, "awaiting:payment.Charge");
}

TEST_F(PipelinedCommitTest, AnEndedSagaStaysCachedUntilItsCommitReturned) {
  // Drives one saga to its end, holding the commit of its last step. A second, different reply
  // to the last command arrives meanwhile: the saga has ended, so it is unexpected. Read back
  // from the store before the commit returned, the saga would still be waiting for it: it would
  // end twice, and the second write would fail the commit with a conflict.
  std::string saga_id = engine_->start<order::OrderSaga>({"order-0", "c", "a", {{"sku", 1, 10}}});
  auto reserve = next_command();
  transport_.deliver(reserved_reply(reserve));
  auto charge = next_command();
  transport_.deliver(
      saga::test::reply_bytes(charge.envelope, "payment.Charged", {{"payment_id", "p"}}));
  auto ship = next_command();
  gated_->hold_next();
  transport_.deliver(
      saga::test::reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "t"}}));
  ASSERT_TRUE(gated_->wait_until_held());
  transport_.deliver(
      saga::test::reply_bytes(ship.envelope, "shipping.Shipped", {{"tracking_number", "u"}}));
  let_the_loop_process();
  {
    std::lock_guard lock(mutex_);
    EXPECT_TRUE(outcomes_.empty()) << "an outcome was reported before its commit returned";
  }
  gated_->release(false);
  engine_->stop();
  loop_.join();
  EXPECT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[saga_id], saga::SagaStatus::Completed);
  EXPECT_EQ(engine_->stats().sagas_completed, 1u);
  EXPECT_EQ(engine_->stats().commit_failures, 0u);
  EXPECT_EQ(journal_count(saga_id, saga::JournalKind::unexpected), 1);
  auto letters = store_->dead_letters(10).value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters.front().reason_code, "unexpected");
}

}  // namespace
