// What the engine really writes and sends for one order saga, captured from the engine itself so
// the raw-limit benchmarks (S, Z, J) and the micro-benchmarks use the engine's exact statements,
// batch shapes and message sizes rather than a model of them.
//
// capture_order_saga() runs order sagas (the shape the order driver places: two order lines)
// through a real saga::Engine with max_batch_messages = 1, on a saga::SqliteStore in memory and
// the in-memory transport, answering each command with the reply the sample participant
// services send. It records every WriteBatch the engine commits for the second saga (one per
// input: the start and each reply; the first saga's also carry the engine's one-time writes),
// and its command and reply envelopes.
//
// StepReplayer turns the captured batches into an endless stream of fresh sagas: every UUID in
// the captured batches (saga id, command and reply eventIds, also inside payloads and journal
// details) is replaced by a new one per replayed saga, so each replayed batch is what the engine
// would commit for a new saga, byte for byte except the ids.
//
// Errors: capture_order_saga() throws std::runtime_error if the engine does not complete the saga
// as expected. Thread safety: none; use each object from one thread.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "order/order_saga.hpp"
#include "saga/envelope.hpp"
#include "saga/store.hpp"

namespace bench {

struct CapturedSaga {
  order::OrderData data;
  // One batch per engine input, in commit order: the start, then the three replies.
  std::vector<saga::WriteBatch> steps;
  // Encoded envelopes as they crossed the transport: commands[i] was answered by replies[i].
  std::vector<std::string> commands;
  std::vector<std::string> replies;
  // Lifecycle event envelopes the engine published (saga.Started, saga.StepCompleted, ...).
  std::vector<std::string> events;
};

// An order like the driver's: two lines, a customer, an address.
order::OrderData typical_order(int n = 1);

CapturedSaga capture_order_saga();

// The reply a sample participant service sends to `command` (an encoded command envelope).
std::string reply_to(const std::string& command);

class StepReplayer {
 public:
  explicit StepReplayer(const CapturedSaga& saga);

  std::size_t steps_per_saga() const { return templates_.size(); }

  // Appends step `step` (0 = the start) of replayed saga number `saga` to `batch`. A saga's steps
  // must be committed in order, each after the previous one.
  void append(std::size_t saga, std::size_t step, saga::WriteBatch& batch);

 private:
  // A string field with its UUIDs cut out: text pieces and, between them, the index of the id.
  struct Piece {
    std::string text;
    int id = -1;  // -1: literal text only
  };
  using StringTemplate = std::vector<Piece>;

  std::string fill(const StringTemplate& pieces, std::size_t saga) const;

  std::vector<saga::WriteBatch> originals_;
  std::vector<std::vector<StringTemplate>> templates_;  // per step, per string field
};

// A version 7 style UUID that is a pure function of (saga, index): ordered by saga, as the
// engine's time-ordered ids are ordered by creation, random-looking in its low bits.
std::string replay_uuid(std::size_t saga, int index);

}  // namespace bench
