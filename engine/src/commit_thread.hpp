// The engine's store thread for pipelined commits (docs/architecture.md, "Pipelined commits"):
// the loop hands it one turn's batch, goes on with the next turn, and takes the result later.
//
// Ownership: borrows the store and the transport (both outlive it) and the submitted batch,
// which must stay alive and unchanged until take() returned. The destructor waits for a commit
// in flight (a commit is never abandoned half-way) and joins the thread.
// Thread safety: submit(), committed(), take() from the loop thread only; one batch at a time.
// Errors: a commit that throws is reported as a failed StoreStatus (io_error), never thrown.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "saga/store.hpp"
#include "saga/transport.hpp"

namespace saga::detail {

class CommitThread {
 public:
  CommitThread(Store& store, Transport& transport);
  ~CommitThread();
  CommitThread(const CommitThread&) = delete;
  CommitThread& operator=(const CommitThread&) = delete;

  // Starts committing `batch`. The transport is woken when the commit returns.
  void submit(const WriteBatch& batch);
  // The submitted commit returned and succeeded (a failure is only reported by take()).
  bool committed() const;
  // Waits for the submitted commit and returns its result and duration; the thread is then free.
  std::pair<StoreStatus, std::chrono::steady_clock::duration> take();

 private:
  void run();

  Store& store_;
  Transport& transport_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  const WriteBatch* batch_ = nullptr;
  std::optional<StoreStatus> result_;
  std::chrono::steady_clock::duration took_{};
  std::atomic<bool> returned_{false};
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace saga::detail
