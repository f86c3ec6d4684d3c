// The store under faults: a SQLite VFS shim fails every Nth write (I/O error) or every write
// (disk full). Each failed commit rolls back, the engine reloads its sagas from the store and
// retries; every saga still ends, nothing is applied twice, and PRAGMA integrity_check stays ok.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "../support/participant.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;

// A pass-through VFS over the default one, failing writes on demand. Only xWrite fails: a failed
// fsync can leave a commit whose outcome the caller cannot know, which no store can hide.
struct FaultyVfs {
  static inline sqlite3_vfs* real = nullptr;
  static inline sqlite3_vfs vfs{};
  static inline sqlite3_io_methods methods{};
  static inline std::atomic<int> fail_every{0};  // 0: off
  static inline std::atomic<bool> disk_full{false};
  static inline std::atomic<long> writes{0};
  static inline std::atomic<long> injected{0};
  static inline std::atomic<long> statement_journals{0};  // files opened for one

  struct File {
    sqlite3_file base;  // must be first
    sqlite3_file* real;
  };

  static sqlite3_file* inner(sqlite3_file* file) { return reinterpret_cast<File*>(file)->real; }

  static int write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
    ++writes;
    if (disk_full.load()) {
      ++injected;
      return SQLITE_FULL;
    }
    if (fail_this_transaction.exchange(false)) {
      ++injected;
      return SQLITE_IOERR_WRITE;
    }
    return inner(file)->pMethods->xWrite(inner(file), data, amount, offset);
  }

  // In WAL mode a write transaction begins by taking the WAL write lock (shared-memory lock 0)
  // exclusively: every Nth of those makes the transaction's first write fail.
  static int shm_lock(sqlite3_file* f, int offset, int n, int flags) {
    int rc = inner(f)->pMethods->xShmLock(inner(f), offset, n, flags);
    if (rc == SQLITE_OK && offset == 0 && n == 1 &&
        flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) {
      int every = fail_every.load();
      if (every > 0 && ++write_transactions % every == 0) fail_this_transaction = true;
    }
    return rc;
  }
  static inline std::atomic<long> write_transactions{0};
  static inline std::atomic<bool> fail_this_transaction{false};

  static int open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags,
                  int* out_flags) {
    if (flags & SQLITE_OPEN_SUBJOURNAL) ++statement_journals;
    auto* wrapper = reinterpret_cast<File*>(file);
    wrapper->real = reinterpret_cast<sqlite3_file*>(wrapper + 1);
    int rc = real->xOpen(real, name, wrapper->real, flags, out_flags);
    if (rc != SQLITE_OK) {
      wrapper->base.pMethods = nullptr;
      return rc;
    }
    if (methods.iVersion == 0) build_methods(wrapper->real->pMethods);
    wrapper->base.pMethods = &methods;
    return SQLITE_OK;
  }

  static void build_methods(const sqlite3_io_methods* r) {
    methods.iVersion = r->iVersion;
    methods.xClose = [](sqlite3_file* f) { return inner(f)->pMethods->xClose(inner(f)); };
    methods.xRead = [](sqlite3_file* f, void* d, int a, sqlite3_int64 o) {
      return inner(f)->pMethods->xRead(inner(f), d, a, o);
    };
    methods.xWrite = write;
    methods.xTruncate = [](sqlite3_file* f, sqlite3_int64 s) {
      return inner(f)->pMethods->xTruncate(inner(f), s);
    };
    methods.xSync = [](sqlite3_file* f, int flags) {
      return inner(f)->pMethods->xSync(inner(f), flags);
    };
    methods.xFileSize = [](sqlite3_file* f, sqlite3_int64* s) {
      return inner(f)->pMethods->xFileSize(inner(f), s);
    };
    methods.xLock = [](sqlite3_file* f, int l) { return inner(f)->pMethods->xLock(inner(f), l); };
    methods.xUnlock = [](sqlite3_file* f, int l) {
      return inner(f)->pMethods->xUnlock(inner(f), l);
    };
    methods.xCheckReservedLock = [](sqlite3_file* f, int* r) {
      return inner(f)->pMethods->xCheckReservedLock(inner(f), r);
    };
    methods.xFileControl = [](sqlite3_file* f, int op, void* a) {
      return inner(f)->pMethods->xFileControl(inner(f), op, a);
    };
    methods.xSectorSize = [](sqlite3_file* f) { return inner(f)->pMethods->xSectorSize(inner(f)); };
    methods.xDeviceCharacteristics = [](sqlite3_file* f) {
      return inner(f)->pMethods->xDeviceCharacteristics(inner(f));
    };
    methods.xShmMap = [](sqlite3_file* f, int p, int s, int e, void volatile** out) {
      return inner(f)->pMethods->xShmMap(inner(f), p, s, e, out);
    };
    methods.xShmLock = shm_lock;
    methods.xShmBarrier = [](sqlite3_file* f) { inner(f)->pMethods->xShmBarrier(inner(f)); };
    methods.xShmUnmap = [](sqlite3_file* f, int d) {
      return inner(f)->pMethods->xShmUnmap(inner(f), d);
    };
    methods.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int a, void** p) {
      return inner(f)->pMethods->xFetch(inner(f), o, a, p);
    };
    methods.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) {
      return inner(f)->pMethods->xUnfetch(inner(f), o, p);
    };
  }

  // Installs the shim as the default VFS of this process (idempotent).
  static void install() {
    if (real) return;
    real = sqlite3_vfs_find(nullptr);
    vfs = *real;
    vfs.zName = "saga-faulty";
    vfs.szOsFile = static_cast<int>(sizeof(File)) + real->szOsFile;
    vfs.xOpen = open;
    vfs.pAppData = nullptr;
    sqlite3_vfs_register(&vfs, 1);
  }
};

class StoreFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FaultyVfs::install();
    FaultyVfs::fail_every = 0;
    FaultyVfs::fail_this_transaction = false;
    FaultyVfs::disk_full = false;
    directory_ = std::filesystem::temp_directory_path() /
                 ("saga-faults-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
    options_.store.path = (directory_ / "saga.db").string();
    options_.idle_wait = 0ms;
    options_.commit_backoff = 0ms;
    options_.max_commit_backoff = 0ms;
    store_ = std::move(saga::SqliteStore::open(options_.store).value());
    start_engine(options_.max_batch_messages);
  }
  // A new engine on the store, taking at most `batch` messages per turn.
  void start_engine(std::size_t batch) {
    options_.max_batch_messages = batch;
    engine_ = std::make_unique<saga::Engine>(options_, *store_, transport_, clock_);
    engine_->register_saga<order::OrderSaga>();
    engine_->on_outcome(
        [this](const saga::SagaOutcome& outcome) { outcomes_[outcome.saga_id] = outcome.status; });
  }
  void TearDown() override {
    FaultyVfs::fail_every = 0;
    FaultyVfs::fail_this_transaction = false;
    FaultyVfs::disk_full = false;
    engine_.reset();
    store_.reset();
    std::filesystem::remove_all(directory_);
  }

  // Answers every command (each command eventId once, like an idempotent participant);
  // charges of odd orders are declined.
  void serve_participants() {
    for (auto& command : saga::test::take_commands(transport_)) {
      const auto& envelope = command.envelope;
      if (!answered_.insert(envelope.event_id).second) continue;  // a re-send: already answered
      std::string order_id = envelope.data.value("order_id", "");
      int number = std::stoi(order_id.substr(order_id.find('-') + 1));
      ++effects_[order_id + "/" + envelope.event_type];
      std::string type;
      nlohmann::json data;
      if (envelope.event_type == "inventory.Reserve") {
        type = "inventory.Reserved", data = {{"reservation_id", "r"}};
      } else if (envelope.event_type == "inventory.Release") {
        type = "inventory.Released", data = {{"reservation_id", "r"}};
      } else if (envelope.event_type == "payment.Charge") {
        if (number % 2 == 1)
          type = "payment.Declined", data = {{"reason", "odd"}};
        else
          type = "payment.Charged", data = {{"payment_id", "p"}};
      } else if (envelope.event_type == "payment.Refund") {
        type = "payment.Refunded", data = {{"payment_id", "p"}};
      } else {
        type = "shipping.Shipped", data = {{"tracking_number", "t"}};
      }
      transport_.deliver(saga::test::reply_bytes(envelope, type, data));
    }
  }

  void run_until_all_end(std::size_t sagas, int max_turns = 5000) {
    for (int turn = 0; turn < max_turns && outcomes_.size() < sagas; ++turn) {
      engine_->run_once();
      serve_participants();
      clock_.advance(100ms);
    }
  }

  void expect_clean_end(std::size_t sagas) {
    ASSERT_EQ(outcomes_.size(), sagas) << "not every saga ended";
    for (const auto& [id, status] : outcomes_) {
      EXPECT_TRUE(status == saga::SagaStatus::Completed || status == saga::SagaStatus::Compensated);
      auto record = store_->load_saga(id).value();
      ASSERT_TRUE(record.has_value());
      EXPECT_EQ(record->status, status) << "the store disagrees with the outcome";
      std::map<std::string, int> applied;
      for (const auto& entry : store_->journal(id).value())
        if (entry.kind == saga::JournalKind::message_in) ++applied[entry.message_id];
      for (const auto& [message, count] : applied) EXPECT_EQ(count, 1) << message;
    }
    for (const auto& [effect, count] : effects_) EXPECT_EQ(count, 1) << effect;
    EXPECT_TRUE(store_->integrity_ok().value());
  }

  std::filesystem::path directory_;
  saga::Options options_;
  saga::ManualClock clock_;
  saga::MemoryTransport transport_;
  std::unique_ptr<saga::SqliteStore> store_;
  std::unique_ptr<saga::Engine> engine_;
  std::map<std::string, saga::SagaStatus> outcomes_;
  std::set<std::string> answered_;
  std::map<std::string, int> effects_;
};

// Every Nth write transaction fails with an I/O error at its first write.
class EveryNthWriteFails : public StoreFaultsTest, public ::testing::WithParamInterface<int> {};

TEST_P(EveryNthWriteFails, FailedCommitsRollBackAndEverySagaStillEndsOnce) {
  start_engine(2);
  for (int i = 0; i < 20; ++i)
    engine_->start<order::OrderSaga>({"order-" + std::to_string(i), "c", "a", {{"sku", 1, 100}}});
  FaultyVfs::injected = 0;
  FaultyVfs::fail_every = GetParam();
  run_until_all_end(20);
  FaultyVfs::fail_every = 0;
  EXPECT_GT(FaultyVfs::injected.load(), 0);
  EXPECT_GT(engine_->stats().commit_failures, 0u);
  expect_clean_end(20);
}

INSTANTIATE_TEST_SUITE_P(Store, EveryNthWriteFails, ::testing::Values(2, 3, 7),
                         [](const auto& info) { return "Every" + std::to_string(info.param); });

// The store writes a table's rows of a turn in statements of up to 16 rows, which must not need
// a statement journal: SQLite keeps one in memory up to 64 KiB, then in a temporary file, and a
// statement of 16 journal rows touches that much of the journal's index in a large database.
TEST_F(StoreFaultsTest, FullTurnsOfManySagasOpenNoStatementJournalFile) {
  start_engine(256);
  FaultyVfs::statement_journals = 0;
  constexpr int kSagas = 1500;
  for (int i = 0; i < kSagas; ++i)
    engine_->start<order::OrderSaga>({"order-" + std::to_string(i), "c", "a", {{"sku", 1, 100}}});
  run_until_all_end(kSagas);
  EXPECT_EQ(FaultyVfs::statement_journals.load(), 0);
  expect_clean_end(kSagas);
}

TEST_F(StoreFaultsTest, DiskFullStopsProgressWithoutLossAndSagasResumeWhenSpaceIsBack) {
  for (int i = 0; i < 10; ++i)
    engine_->start<order::OrderSaga>({"order-" + std::to_string(i), "c", "a", {{"sku", 1, 100}}});
  engine_->run_once();
  serve_participants();  // replies are waiting when the disk fills up
  FaultyVfs::disk_full = true;
  for (int i = 0; i < 20; ++i) {
    engine_->run_once();
    serve_participants();
  }
  EXPECT_GE(engine_->stats().commit_failures, 20u);
  EXPECT_TRUE(outcomes_.empty());
  EXPECT_TRUE(transport_.take_sent().empty()) << "a command left while nothing could commit";
  FaultyVfs::disk_full = false;  // space is back
  run_until_all_end(10);
  expect_clean_end(10);
}

}  // namespace
