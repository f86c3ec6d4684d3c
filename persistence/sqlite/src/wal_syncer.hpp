// Syncing a SQLite database's WAL apart from COMMIT. sync_wal_file() is the open-time sync of
// SqliteStore and SqliteParticipantLedger; WalSyncer is SqliteStore's durability after COMMIT
// (StoreOptions::sync_in_background).
//
// WalSyncer: the writer commits with PRAGMA synchronous = NORMAL, so COMMIT writes the WAL without
// waiting for the disk, and then calls committed(). An fdatasync of the WAL file makes every commit
// made before it began durable: everything those commits wrote was in the file by then. It runs on
// the caller's thread in sync(), or on the syncer's own thread after begin(), so a caller with
// other work does not wait; commits made while one runs share the next. One runs at a time. A
// failed fdatasync is final (the kernel may already have dropped the pages it could not write): the
// owner refuses commits from then on (failure()), and a restart recovers from what the file holds.
//
// Thread safety: committed() from the writer's thread; the rest from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "saga/status.hpp"

struct sqlite3;

namespace saga::sqlite_detail {

// fdatasync of a file by path, for the open of a database with Durability::full: a process that
// died between writing a commit and syncing it left that commit in the page cache only, and what
// is read must be durable before anything acts on it. A file that does not exist has nothing to
// sync. Only for the `-wal` file, never the database file itself: closing a descriptor of the
// database file drops every POSIX lock the process holds on it (SQLite syncs the database file
// before a checkpoint lets the WAL restart).
std::optional<StoreError> sync_wal_file(const std::string& wal_path);

// The WAL file SQLite writes for the main database of `db`: next to the database file as SQLite
// resolved its name (symlinks followed, absolute), not next to the path it was opened by.
std::string wal_path_of(sqlite3* db);

class WalSyncer {
 public:
  // Opens the WAL file now when it exists (else at the first sync): a descriptor open before the
  // first write sees every writeback error on the file from then on.
  explicit WalSyncer(std::string wal_path);
  // Stops the thread, then syncs what was committed (a failure is not reported).
  ~WalSyncer();
  WalSyncer(const WalSyncer&) = delete;
  WalSyncer& operator=(const WalSyncer&) = delete;

  // The writer's thread, after a successful COMMIT: an fdatasync that reads the new number
  // begins after the commit's writes.
  void committed() noexcept { last_.fetch_add(1, std::memory_order_release); }
  std::uint64_t last() const noexcept { return last_.load(std::memory_order_acquire); }
  std::uint64_t durable() const noexcept { return durable_.load(std::memory_order_acquire); }
  // The final failure, once a sync failed.
  std::optional<StoreError> failure();

  // The commits made so far become durable on the syncer's thread.
  void begin();
  // Returns once the commits made so far are durable: after the fdatasync that is running, if it
  // covers them, else after one of its own on this thread.
  StoreStatus sync();

  std::uint64_t syncs() const noexcept { return syncs_.load(std::memory_order_relaxed); }

 private:
  void run();
  void sync_now(std::unique_lock<std::mutex>& lock);
  std::optional<StoreError> sync_wal();

  const std::string wal_path_;
  int fd_ = -1;  // used by the one fdatasync in progress
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<std::uint64_t> last_{0};
  std::uint64_t requested_ = 0;  // begin() asked for the commits up to this one
  std::atomic<std::uint64_t> durable_{0};
  std::optional<StoreError> failure_;
  bool in_progress_ = false;
  bool stopping_ = false;
  std::atomic<std::uint64_t> syncs_{0};
  std::thread thread_;
};

}  // namespace saga::sqlite_detail
