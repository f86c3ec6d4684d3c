#include "model.hpp"

namespace sagactl {

std::string saga_columns(Database& db) {
  return "id, " + std::string(db.has_column("sagas", "correlation_id") ? "correlation_id" : "id") +
         ", type, definition_version, state, status, data, row_version, created_at, updated_at";
}

SagaRow saga_from(const Statement& row) {
  SagaRow saga;
  saga.id = row.text(0);
  saga.correlation_id = row.text(1);
  if (saga.correlation_id.empty()) saga.correlation_id = saga.id;
  saga.type = row.text(2);
  saga.definition_version = row.integer(3);
  saga.state = row.text(4);
  saga.status = row.text(5);
  saga.data = row.text(6);
  saga.row_version = row.integer(7);
  saga.created_at = row.integer(8);
  saga.updated_at = row.integer(9);
  return saga;
}

std::optional<SagaRow> read_saga(Database& db, const std::string& saga_id) {
  auto query = db.prepare("SELECT " + saga_columns(db) + " FROM sagas WHERE id = ?1");
  query.bind(1, saga_id);
  if (!query.step()) return std::nullopt;
  return saga_from(query);
}

std::vector<JournalRow> read_journal(Database& db, const std::string& saga_id) {
  auto query = db.prepare(
      "SELECT sequence, saga_id, at, kind, message_id, message_type, from_state, to_state, detail "
      "FROM journal WHERE saga_id = ?1 ORDER BY sequence");
  query.bind(1, saga_id);
  std::vector<JournalRow> rows;
  while (query.step())
    rows.push_back({query.integer(0), query.text(1), query.integer(2), query.text(3), query.text(4),
                    query.text(5), query.text(6), query.text(7), query.text(8)});
  return rows;
}

std::vector<OutboxRow> read_outbox(Database& db, const std::string& saga_id) {
  std::string compensation = db.has_column("outbox", "compensation") ? "compensation" : "0";
  std::string replied = db.has_column("outbox", "replied_at") ? "replied_at" : "NULL";
  auto query = db.prepare(
      "SELECT message_id, saga_id, destination, message_type, payload, "
      "attempts, dispatched, " +
      compensation + ", created_at, dispatched_at, " + replied +
      " FROM outbox WHERE saga_id = ?1 ORDER BY created_at, rowid");
  query.bind(1, saga_id);
  std::vector<OutboxRow> rows;
  while (query.step()) {
    OutboxRow row;
    row.message_id = query.text(0);
    row.saga_id = query.text(1);
    row.destination = query.text(2);
    row.message_type = query.text(3);
    row.payload = query.text(4);
    row.dispatched = query.integer(6) != 0;
    row.attempts = row.dispatched ? query.integer(5) : 1;
    row.compensation = query.integer(7) != 0;
    row.created_at = query.integer(8);
    row.dispatched_at = query.optional_integer(9);
    row.replied_at = query.optional_integer(10);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string dead_letter_columns(Database& db) {
  std::string replayed = db.has_column("dead_letters", "replayed_at") ? "replayed_at" : "NULL";
  std::string discarded = db.has_column("dead_letters", "discarded_at") ? "discarded_at" : "NULL";
  return "id, at, reason_code, reason, message_id, message_type, saga_id, length(CAST(raw AS "
         "BLOB)), raw_size, " +
         replayed + ", " + discarded;
}

DeadLetterRow dead_letter_from(const Statement& row) {
  DeadLetterRow letter;
  letter.id = row.integer(0);
  letter.at = row.integer(1);
  letter.reason_code = row.text(2);
  letter.reason = row.text(3);
  letter.message_id = row.text(4);
  letter.message_type = row.text(5);
  letter.saga_id = row.text(6);
  letter.raw_kept = row.integer(7);
  letter.raw_size = row.integer(8);
  letter.replayed_at = row.optional_integer(9);
  letter.discarded_at = row.optional_integer(10);
  return letter;
}

std::optional<DeadLetterRow> read_dead_letter(Database& db, std::int64_t id, bool with_raw) {
  auto query = db.prepare("SELECT " + dead_letter_columns(db) + (with_raw ? ", raw" : ", NULL") +
                          " FROM dead_letters WHERE id = ?1");
  query.bind(1, id);
  if (!query.step()) return std::nullopt;
  DeadLetterRow letter = dead_letter_from(query);
  if (with_raw) letter.raw = query.blob(11);
  return letter;
}

std::vector<DeadLetterRow> read_dead_letters_of_saga(Database& db, const std::string& saga_id) {
  auto query = db.prepare("SELECT " + dead_letter_columns(db) +
                          " FROM dead_letters WHERE saga_id = ?1 ORDER BY id");
  query.bind(1, saga_id);
  std::vector<DeadLetterRow> rows;
  while (query.step()) rows.push_back(dead_letter_from(query));
  return rows;
}

std::string operator_request_columns() {
  return "id, requested_at, action, target, status, note, requested_by, done_at, ok, result";
}

OperatorRequestRow operator_request_from(const Statement& row) {
  OperatorRequestRow request;
  request.id = row.integer(0);
  request.requested_at = row.integer(1);
  request.action = row.text(2);
  request.target = row.text(3);
  request.status = row.text(4);
  request.note = row.text(5);
  request.requested_by = row.text(6);
  request.done_at = row.optional_integer(7);
  request.ok = row.optional_integer(8);
  request.result = row.text(9);
  return request;
}

std::optional<OperatorRequestRow> read_operator_request(Database& db, std::int64_t id) {
  auto query =
      db.prepare("SELECT " + operator_request_columns() + " FROM operator_requests WHERE id = ?1");
  query.bind(1, id);
  if (!query.step()) return std::nullopt;
  return operator_request_from(query);
}

std::vector<OperatorRequestRow> read_operator_requests_for(Database& db,
                                                           const std::string& target) {
  std::vector<OperatorRequestRow> rows;
  if (!db.has_table("operator_requests")) return rows;
  auto query = db.prepare("SELECT " + operator_request_columns() +
                          " FROM operator_requests WHERE target = ?1 ORDER BY id");
  query.bind(1, target);
  while (query.step()) rows.push_back(operator_request_from(query));
  return rows;
}

}  // namespace sagactl
