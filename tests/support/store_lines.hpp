// Test support: what a store holds about some sagas, as lines, for comparing two runs of the same
// inputs (batch sizes, cache sizes) line by line; and ids that are the same in every run.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "saga/sqlite_store.hpp"

namespace saga::test {

// A UUID made of a counter: a run that takes its ids from it is the same in every execution.
inline std::string uuid_number(int n) {
  char text[40];
  std::snprintf(text, sizeof text, "00000000-0000-4000-8000-%012d", n);
  return text;
}

// Each saga's row (state, status, data), its journal and its outbox rows, then the dead letters.
// With `bookkeeping`, also the row versions and send attempts, which depend on how inputs were
// grouped into transactions; never timestamps or journal sequence numbers.
inline std::vector<std::string> stored_lines(SqliteStore& store,
                                             const std::vector<std::string>& saga_ids,
                                             bool bookkeeping) {
  std::vector<std::string> lines;
  for (const auto& id : saga_ids) {
    auto saga = store.load_saga(id).value().value();
    lines.push_back(id + " " + saga.state + " " + std::string(to_string(saga.status)) +
                    (bookkeeping ? " v" + std::to_string(saga.row_version) : "") + " " + saga.data);
    for (const auto& entry : store.journal(id).value())
      lines.push_back("  " + std::string(to_string(entry.kind)) + " " + entry.message_id + " " +
                      entry.message_type + " " + entry.from_state + " -> " + entry.to_state + " " +
                      entry.detail);
    for (const auto& row : store.outbox(id).value())
      lines.push_back("  outbox " + row.message_id + " " + row.message_type +
                      (bookkeeping ? " attempts=" + std::to_string(row.attempts) : "") +
                      " replied=" + std::to_string(row.replied_at.has_value()));
  }
  for (const auto& letter : store.dead_letters(100000).value())
    lines.push_back("dead letter " + letter.reason_code + " " + letter.message_id);
  return lines;
}

}  // namespace saga::test
