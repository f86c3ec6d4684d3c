// The mutating commands: retry, resolve, dead-letters retry / discard.
//
// sagactl never changes saga state: the engine is the only writer. It checks what it can
// read-only (the saga exists and is Failed, the dead letter is open), inserts one row into
// operator_requests (a read-write connection, one short BEGIN IMMEDIATE transaction), and polls
// read-only until the engine that owns the database has answered, or --wait runs out.
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <thread>

#include "commands.hpp"
#include "model.hpp"
#include "output.hpp"

namespace sagactl {
namespace {

using nlohmann::json;

std::string requested_by() {
  std::string user;
  if (const char* name = std::getenv("USER"); name != nullptr && *name != '\0') {
    user = name;
  } else if (const passwd* entry = getpwuid(geteuid()); entry != nullptr) {
    user = entry->pw_name;
  } else {
    user = std::to_string(geteuid());
  }
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return "sagactl " + user + "@" + host;
}

void require_requests_table(Database& db) {
  if (!db.has_table("operator_requests"))
    throw Failure(kDatabaseError,
                  "database " + db.path() + " (schema version " +
                      std::to_string(db.schema_version()) +
                      ") has no operator_requests table; an orchestrator of this release "
                      "creates it when it opens the database");
}

struct Request {
  std::string action;
  std::string target;
  std::string status;
  std::string note;
  std::string description;  // for messages: "retry of saga X"
};

std::int64_t insert(const std::string& path, const Request& request) {
  Database db = Database::open_read_write(path);
  require_requests_table(db);
  db.execute("BEGIN IMMEDIATE");
  try {
    auto statement = db.prepare(
        "INSERT INTO operator_requests (requested_at, action, target, status, note, "
        "requested_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    statement.bind(1, now_micros())
        .bind(2, request.action)
        .bind(3, request.target)
        .bind(4, request.status)
        .bind(5, request.note)
        .bind(6, requested_by());
    statement.step();
    std::int64_t id = db.last_insert_id();
    db.execute("COMMIT");
    return id;
  } catch (...) {
    try {
      db.execute("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
}

int queue_and_wait(const Context& context, Database& reader, const Request& request,
                   const RequestOptions& options) {
  std::int64_t id = insert(context.db_path, request);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(options.wait_seconds));
  std::optional<OperatorRequestRow> row;
  for (;;) {
    row = read_operator_request(reader, id);
    if (!row) throw Failure(kDatabaseError, "operator request " + std::to_string(id) + " vanished");
    auto now = std::chrono::steady_clock::now();
    if (row->done_at || now >= deadline) break;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(50), deadline - now));
  }
  std::ostream& out = *context.out;
  std::string state = row->state();
  int code = state == "applied" ? kOk : state == "refused" ? kNotFound : kQueued;
  if (context.json) {
    json fields = {{"request_id", id},
                   {"action", request.action},
                   {"target", request.target},
                   {"status", request.status},
                   {"note", request.note},
                   {"state", state},
                   {"ok", row->ok ? json(*row->ok == 1) : json(nullptr)},
                   {"result", row->result},
                   {"done_at", json_time(row->done_at)}};
    print_json(out, fields);
    return code;
  }
  if (state == "applied") {
    out << "request " << id << " applied: " << printable(row->result) << '\n';
  } else if (state == "refused") {
    throw Failure(kNotFound, "request " + std::to_string(id) + " refused: " + row->result);
  } else {
    out << request.description << " queued as request " << id
        << "; it is applied when an orchestrator runs on this database (sagactl requests)\n";
  }
  return code;
}

SagaRow failed_saga(Database& db, const std::string& id_or_prefix, const std::string& verb) {
  std::string id = resolve_saga_id(db, id_or_prefix);
  auto saga = read_saga(db, id);
  if (!saga) throw Failure(kNotFound, "no saga " + printable(id_or_prefix));
  if (saga->status != "Failed")
    throw Failure(kNotFound, "saga " + id + " is " + saga->status +
                                 ", not Failed; only a Failed saga can be " + verb);
  return *saga;
}

DeadLetterRow open_dead_letter(Database& db, const std::string& id_text, const std::string& verb) {
  std::int64_t id = parse_dead_letter_id(id_text);
  auto letter = read_dead_letter(db, id, false);
  std::string name = "dead letter " + std::to_string(id);
  if (!letter) throw Failure(kNotFound, "no " + name);
  if (letter->replayed_at)
    throw Failure(kNotFound,
                  name + " was already replayed at " + format_time(*letter->replayed_at));
  if (letter->discarded_at)
    throw Failure(kNotFound,
                  name + " was already discarded at " + format_time(*letter->discarded_at));
  if (verb == "retried" && letter->raw_kept < letter->raw_size)
    throw Failure(kNotFound, name + " kept only " + std::to_string(letter->raw_kept) + " of its " +
                                 std::to_string(letter->raw_size) +
                                 " bytes; it cannot be replayed");
  return *letter;
}

}  // namespace

int request_retry(const Context& context, const std::string& saga_id,
                  const RequestOptions& options) {
  Database reader = Database::open_read_only(context.db_path);
  require_requests_table(reader);
  SagaRow saga = failed_saga(reader, saga_id, "retried");
  return queue_and_wait(context, reader,
                        {"retry", saga.id, "", options.note, "retry of saga " + saga.id}, options);
}

int request_resolve(const Context& context, const std::string& saga_id, const std::string& status,
                    const RequestOptions& options) {
  Database reader = Database::open_read_only(context.db_path);
  require_requests_table(reader);
  SagaRow saga = failed_saga(reader, saga_id, "resolved");
  return queue_and_wait(
      context, reader,
      {"resolve", saga.id, status, options.note, "resolution of saga " + saga.id + " as " + status},
      options);
}

int request_replay_dead_letter(const Context& context, const std::string& id,
                               const RequestOptions& options) {
  Database reader = Database::open_read_only(context.db_path);
  require_requests_table(reader);
  DeadLetterRow letter = open_dead_letter(reader, id, "retried");
  return queue_and_wait(context, reader,
                        {"replay_dead_letter", std::to_string(letter.id), "", options.note,
                         "replay of dead letter " + std::to_string(letter.id)},
                        options);
}

int request_discard_dead_letter(const Context& context, const std::string& id,
                                const RequestOptions& options) {
  Database reader = Database::open_read_only(context.db_path);
  require_requests_table(reader);
  DeadLetterRow letter = open_dead_letter(reader, id, "discarded");
  return queue_and_wait(context, reader,
                        {"discard_dead_letter", std::to_string(letter.id), "", options.note,
                         "discard of dead letter " + std::to_string(letter.id)},
                        options);
}

}  // namespace sagactl
