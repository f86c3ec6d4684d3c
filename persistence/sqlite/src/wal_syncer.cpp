#include "wal_syncer.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace saga::sqlite_detail {
namespace {

using Error = std::optional<StoreError>;

// After a failed open(), errno still set.
StoreError cannot_open_to_sync(const std::string& path) {
  const int err = errno;
  return StoreError{StoreErrorCode::io_error,
                    "cannot open " + path + " to sync it: " + std::system_category().message(err)};
}

// fdatasync of an open file. One that was unlinked is an error: what it holds is lost once closed,
// whatever file now has its name.
Error sync_descriptor(int fd, const std::string& path) {
  struct stat status {};
  if (::fstat(fd, &status) != 0 || status.st_nlink == 0)
    return StoreError{StoreErrorCode::io_error, path + " was deleted while in use"};
  if (::fdatasync(fd) != 0) {
    const int err = errno;
    return StoreError{StoreErrorCode::io_error,
                      "cannot sync " + path + ": " + std::system_category().message(err)};
  }
  return std::nullopt;
}

}  // namespace

std::optional<StoreError> sync_wal_file(const std::string& wal_path) {
  const int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? std::nullopt : Error{cannot_open_to_sync(wal_path)};
  Error error = sync_descriptor(fd, wal_path);
  ::close(fd);
  return error;
}

std::string wal_path_of(sqlite3* db) {
  return sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
}

WalSyncer::WalSyncer(std::string wal_path) : wal_path_(std::move(wal_path)) {
  fd_ = ::open(wal_path_.c_str(), O_RDONLY | O_CLOEXEC);
  thread_ = std::thread([this] { run(); });
}

WalSyncer::~WalSyncer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  (void)sync();  // what was committed is durable when the owner is gone
  if (fd_ >= 0) ::close(fd_);
}

std::optional<StoreError> WalSyncer::failure() {
  std::lock_guard lock(mutex_);
  return failure_;
}

void WalSyncer::begin() {
  {
    std::lock_guard lock(mutex_);
    requested_ = last_.load();
  }
  wake_.notify_one();
}

StoreStatus WalSyncer::sync() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = last_.load();
  for (;;) {
    if (failure_) return {failure_};
    if (durable_.load() >= target) return StoreStatus::success();
    if (in_progress_) {
      done_.wait(lock);
      continue;
    }
    sync_now(lock);
  }
}

void WalSyncer::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] {
      return stopping_ || (requested_ > durable_.load() && !in_progress_ && !failure_);
    });
    if (stopping_) return;
    sync_now(lock);
  }
}

// One fdatasync, the mutex released meanwhile; covers the commits made before it began.
void WalSyncer::sync_now(std::unique_lock<std::mutex>& lock) {
  const std::uint64_t target = last_.load();
  in_progress_ = true;
  lock.unlock();
  Error error = sync_wal();
  syncs_.fetch_add(1, std::memory_order_relaxed);
  lock.lock();
  in_progress_ = false;
  if (error)
    failure_ = StoreError{StoreErrorCode::io_error,
                          error->message +
                              "; commits since the last successful sync may be lost, and new "
                              "ones are refused until the process restarts"};
  else
    durable_.store(target, std::memory_order_release);
  done_.notify_all();
  wake_.notify_all();
}

// The WAL keeps its inode while the owner's connections are open. Called by one thread at a time.
Error WalSyncer::sync_wal() {
  if (fd_ < 0) fd_ = ::open(wal_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return cannot_open_to_sync(wal_path_);
  return sync_descriptor(fd_, wal_path_);
}

}  // namespace saga::sqlite_detail
