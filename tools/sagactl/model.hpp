// Rows of the orchestrator's tables as sagactl reads them (schema:
// persistence/sqlite/migrations/*.sql). Columns added by later migrations are read when the
// database has them, so sagactl works on databases of every schema version from 1 on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "database.hpp"

namespace sagactl {

struct SagaRow {
  std::string id;
  std::string correlation_id;
  std::string type;
  std::int64_t definition_version = 0;
  std::string state;
  std::string status;
  std::string data;
  std::int64_t row_version = 0;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

struct JournalRow {
  std::int64_t sequence = 0;
  std::string saga_id;
  std::int64_t at = 0;
  std::string kind;
  std::string message_id;
  std::string message_type;
  std::string from_state;
  std::string to_state;
  std::string detail;
};

struct OutboxRow {
  std::string message_id;
  std::string saga_id;
  std::string destination;
  std::string message_type;
  std::string payload;
  std::int64_t attempts = 0;  // sends: the engine records re-sends only, so an open row it
                              // never re-sent reads as one send (it was committed to be sent)
  bool dispatched = false;    // re-sent at least once
  bool compensation = false;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> dispatched_at;
  std::optional<std::int64_t> replied_at;
};

struct DeadLetterRow {
  std::int64_t id = 0;
  std::int64_t at = 0;
  std::string reason_code;
  std::string reason;
  std::string message_id;
  std::string message_type;
  std::string saga_id;
  std::string raw;  // empty unless read with the bytes
  std::int64_t raw_kept = 0;
  std::int64_t raw_size = 0;
  std::optional<std::int64_t> replayed_at;
  std::optional<std::int64_t> discarded_at;
  // "open", "replayed" or "discarded".
  std::string state() const {
    return replayed_at ? "replayed" : discarded_at ? "discarded" : "open";
  }
};

struct OperatorRequestRow {
  std::int64_t id = 0;
  std::int64_t requested_at = 0;
  std::string action;
  std::string target;
  std::string status;
  std::string note;
  std::string requested_by;
  std::optional<std::int64_t> done_at;
  std::optional<std::int64_t> ok;
  std::string result;
  // "queued", "applied" or "refused".
  std::string state() const {
    return !done_at ? "queued" : ok.value_or(0) == 1 ? "applied" : "refused";
  }
};

std::optional<SagaRow> read_saga(Database& db, const std::string& saga_id);
std::vector<JournalRow> read_journal(Database& db, const std::string& saga_id);
std::vector<OutboxRow> read_outbox(Database& db, const std::string& saga_id);
// Without the raw bytes when with_raw is false (raw_kept is set either way).
std::optional<DeadLetterRow> read_dead_letter(Database& db, std::int64_t id, bool with_raw);
// The dead letters naming this saga, oldest first, without their bytes.
std::vector<DeadLetterRow> read_dead_letters_of_saga(Database& db, const std::string& saga_id);
std::optional<OperatorRequestRow> read_operator_request(Database& db, std::int64_t id);
// The operator requests whose target is `target`, oldest first; empty before migration 0005.
std::vector<OperatorRequestRow> read_operator_requests_for(Database& db, const std::string& target);

// SELECT list of a dead letter without its bytes, and how to read it (shared by queries).
std::string dead_letter_columns(Database& db);
DeadLetterRow dead_letter_from(const Statement& row);
std::string operator_request_columns();
OperatorRequestRow operator_request_from(const Statement& row);
std::string saga_columns(Database& db);
SagaRow saga_from(const Statement& row);

}  // namespace sagactl
