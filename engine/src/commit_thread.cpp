#include "commit_thread.hpp"

#include <exception>
#include <string>

namespace saga::detail {

CommitThread::CommitThread(Store& store, Transport& transport)
    : store_(store), transport_(transport), thread_([this] { run(); }) {}

CommitThread::~CommitThread() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return batch_ == nullptr || result_.has_value(); });
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void CommitThread::submit(const WriteBatch& batch) {
  {
    std::lock_guard lock(mutex_);
    batch_ = &batch;
    result_.reset();
    returned_.store(false, std::memory_order_relaxed);
  }
  changed_.notify_all();
}

bool CommitThread::committed() const {
  if (!returned_.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(mutex_);
  return result_ && result_->ok();
}

std::pair<StoreStatus, std::chrono::steady_clock::duration> CommitThread::take() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return result_.has_value(); });
  StoreStatus status = std::move(*result_);
  result_.reset();
  batch_ = nullptr;
  return {std::move(status), took_};
}

void CommitThread::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || (batch_ && !result_); });
    if (stopping_) return;
    const WriteBatch& batch = *batch_;
    lock.unlock();
    auto started = std::chrono::steady_clock::now();
    StoreStatus status;
    try {
      status = store_.commit(batch);
    } catch (const std::exception& error) {
      status = StoreStatus::failure(StoreErrorCode::io_error,
                                    std::string("the commit threw: ") + error.what());
    } catch (...) {
      status = StoreStatus::failure(StoreErrorCode::io_error, "the commit threw");
    }
    auto took = std::chrono::steady_clock::now() - started;
    lock.lock();
    result_ = std::move(status);
    took_ = took;
    returned_.store(true, std::memory_order_release);
    changed_.notify_all();
    lock.unlock();
    transport_.wake();
    lock.lock();
  }
}

}  // namespace saga::detail
