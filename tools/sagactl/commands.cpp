// The read commands: list, show, trace, dead-letters (list, show), stats, requests.
#include "commands.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>

#include "model.hpp"
#include "output.hpp"
#include "picture.hpp"
#include "saga/envelope.hpp"
#include "saga/status.hpp"

namespace sagactl {
namespace {

using nlohmann::json;

constexpr std::int64_t kNoLimit = -1;
const std::vector<std::string> kStatuses = {"Running", "Compensating", "Completed", "Compensated",
                                            "Failed"};

bool is_terminal(const std::string& status) {
  auto parsed = saga::saga_status_from_string(status);
  return parsed && saga::is_terminal(*parsed);
}

std::string short_id(const std::string& id) {
  return id.size() > 8 ? id.substr(0, 8) : id;
}

// "Key          value" lines, keys padded to one width.
void key_value(std::ostream& out, const std::string& key, const std::string& value) {
  constexpr std::size_t kWidth = 19;
  out << key << std::string(key.size() < kWidth ? kWidth - key.size() : 1, ' ') << printable(value)
      << '\n';
}

// Indented JSON, every line made safe for the terminal.
void print_pretty(std::ostream& out, const json& value, const std::string& indent) {
  std::istringstream lines(value.dump(2, ' ', false, json::error_handler_t::replace));
  for (std::string line; std::getline(lines, line);) out << indent << printable(line) << '\n';
}

json saga_json(const SagaRow& saga, std::int64_t now, bool with_data) {
  json out = {{"id", saga.id},
              {"correlation_id", saga.correlation_id},
              {"type", saga.type},
              {"definition_version", saga.definition_version},
              {"status", saga.status},
              {"state", saga.state},
              {"created_at", format_time(saga.created_at)},
              {"updated_at", format_time(saga.updated_at)},
              {"age_seconds", seconds(now - saga.created_at)},
              {"row_version", saga.row_version}};
  if (with_data) out["data"] = parse_json_or_null(saga.data);
  return out;
}

json dead_letter_json(const DeadLetterRow& letter) {
  return {{"id", letter.id},
          {"at", format_time(letter.at)},
          {"reason_code", letter.reason_code},
          {"reason", letter.reason},
          {"message_id", letter.message_id},
          {"message_type", letter.message_type},
          {"saga_id", letter.saga_id},
          {"raw_size", letter.raw_size},
          {"raw_kept", letter.raw_kept},
          {"truncated", letter.raw_kept < letter.raw_size},
          {"state", letter.state()},
          {"replayed_at", json_time(letter.replayed_at)},
          {"discarded_at", json_time(letter.discarded_at)}};
}

json request_json(const OperatorRequestRow& request) {
  return {{"id", request.id},
          {"requested_at", format_time(request.requested_at)},
          {"action", request.action},
          {"target", request.target},
          {"status", request.status},
          {"note", request.note},
          {"requested_by", request.requested_by},
          {"state", request.state()},
          {"done_at", json_time(request.done_at)},
          {"ok", request.ok ? json(*request.ok == 1) : json(nullptr)},
          {"result", request.result}};
}

// Where a command stands: awaiting_reply, timed_out or done. (The store does not record a first
// send, so a command committed but not yet handed over also reads as awaiting its reply.)
std::string command_state(const OutboxRow& row, const std::set<std::string>& timed_out) {
  if (timed_out.contains(row.message_id)) return "timed_out";
  if (!row.replied_at) return "awaiting_reply";
  return "done";
}

std::string command_outcome(const OutboxRow& row, const std::string& state) {
  if (state == "awaiting_reply") return "awaiting reply";
  if (state == "timed_out") return "timed out";
  return "done after " + format_duration(*row.replied_at - row.created_at);
}

// The payload of a journal detail: message_out details of compensations start with a marker.
std::string_view payload_of(const JournalRow& entry) {
  std::string_view detail = entry.detail;
  constexpr std::string_view kMarker = "compensation ";
  if (entry.kind == "message_out" && detail.starts_with(kMarker))
    detail.remove_prefix(kMarker.size());
  return detail;
}

std::string upper_bound_of_prefix(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xFF) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

bool has_operator_requests(Database& db) {
  return db.has_table("operator_requests");
}

}  // namespace

std::optional<std::string> canonical_status(const std::string& text) {
  for (const auto& status : kStatuses) {
    if (std::equal(text.begin(), text.end(), status.begin(), status.end(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        }))
      return status;
  }
  return std::nullopt;
}

std::string correlation_column(Database& db) {
  return db.has_column("sagas", "correlation_id") ? "correlation_id" : "id";
}

// Saga ids are time-ordered (UUID v7): sagas started in the same minute share their first eight
// characters, while the last ones are random. So a short id may be a unique prefix or a unique
// suffix (the suffix lookup scans the table; this is an operator's tool).
std::optional<std::string> find_saga_id(Database& db, const std::string& short_id) {
  if (short_id.empty()) throw Failure(kUsage, "a saga id must not be empty");
  auto exact = db.prepare("SELECT 1 FROM sagas WHERE id = ?1");
  exact.bind(1, short_id);
  if (exact.step()) return short_id;
  bool ambiguous = false;
  if (short_id.size() >= 4) {
    auto unique = [&](Statement& query) -> std::optional<std::string> {
      std::vector<std::string> found;
      while (query.step()) found.push_back(query.text(0));
      if (found.size() > 1) ambiguous = true;
      if (found.size() == 1) return found.front();
      return std::nullopt;
    };
    std::string upper = upper_bound_of_prefix(short_id);
    auto by_prefix =
        db.prepare(upper.empty() ? "SELECT id FROM sagas WHERE id >= ?1 ORDER BY id LIMIT 2"
                                 : "SELECT id FROM sagas WHERE id >= ?1 AND id < ?2 ORDER BY id "
                                   "LIMIT 2");
    by_prefix.bind(1, short_id);
    if (!upper.empty()) by_prefix.bind(2, upper);
    if (auto id = unique(by_prefix)) return *id;
    auto by_suffix = db.prepare(
        "SELECT id FROM sagas WHERE length(id) > length(?1) AND substr(id, -length(?1)) = ?1 "
        "LIMIT 2");
    by_suffix.bind(1, short_id);
    if (auto id = unique(by_suffix)) return *id;
  }
  if (ambiguous)
    throw Failure(kNotFound, "saga id " + printable(short_id) +
                                 " matches several sagas; give more characters (the last ones "
                                 "of an id are the random ones)");
  return std::nullopt;
}

std::string resolve_saga_id(Database& db, const std::string& short_id) {
  if (auto id = find_saga_id(db, short_id)) return *id;
  throw Failure(kNotFound, "no saga " + printable(short_id));
}

std::int64_t parse_dead_letter_id(const std::string& text) {
  std::int64_t id = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (error != std::errc{} || end != text.data() + text.size() || id <= 0)
    throw Failure(kUsage, "a dead-letter id is a positive number, not '" + printable(text) + "'");
  return id;
}

int list_sagas(const Context& context, const ListOptions& options) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  std::int64_t now = now_micros();
  std::string where = " WHERE created_at <= ?1 AND (?2 = '' OR type = ?2)";
  if (!options.statuses.empty()) {
    where += " AND status IN (";
    for (std::size_t i = 0; i < options.statuses.size(); ++i)
      where += (i ? ", ?" : "?") + std::to_string(i + 4);
    where += ")";
  }
  const auto bind = [&](Statement& query) {
    std::int64_t cutoff = options.older_than_micros ? now - *options.older_than_micros
                                                    : std::numeric_limits<std::int64_t>::max();
    query.bind(1, cutoff).bind(2, options.type);
    for (std::size_t i = 0; i < options.statuses.size(); ++i)
      query.bind(static_cast<int>(i + 4), options.statuses[i]);
  };
  auto count = db.prepare("SELECT count(*) FROM sagas" + where);
  bind(count);
  count.step();
  std::int64_t total = count.integer(0);
  auto query = db.prepare("SELECT " + saga_columns(db) + " FROM sagas" + where +
                          " ORDER BY created_at DESC, id DESC LIMIT ?3");
  bind(query);
  query.bind(3, options.limit == 0 ? kNoLimit : options.limit);
  std::vector<SagaRow> sagas;
  while (query.step()) sagas.push_back(saga_from(query));

  std::ostream& out = *context.out;
  if (context.json) {
    json list = json::array();
    for (const auto& saga : sagas) list.push_back(saga_json(saga, now, false));
    print_json(out, {{"sagas", list}, {"count", sagas.size()}, {"total", total}});
    return kOk;
  }
  if (sagas.empty()) {
    out << "no sagas match\n";
    return kOk;
  }
  Table table({"ID", "TYPE", "STATUS", "STATE", "AGE", "UPDATED"});
  table.right_align(4);
  table.right_align(5);
  for (const auto& saga : sagas)
    table.add({saga.id, saga.type, saga.status, saga.state, format_duration(now - saga.created_at),
               format_duration(now - saga.updated_at) + " ago"});
  table.print(out);
  out << sagas.size() << " of " << total << " saga" << (total == 1 ? "" : "s")
      << (static_cast<std::int64_t>(sagas.size()) < total ? " (newest first; --limit for more)"
                                                          : "")
      << '\n';
  return kOk;
}

int show_saga(const Context& context, const std::string& saga_id, Picture picture) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  std::int64_t now = now_micros();
  std::optional<SagaRow> saga;
  // An id with journal rows but no saga row is still shown (schema 0001 allowed that).
  const std::string id = find_saga_id(db, saga_id).value_or(saga_id);
  saga = read_saga(db, id);
  auto journal = read_journal(db, id);
  if (!saga && journal.empty()) throw Failure(kNotFound, "no saga " + printable(saga_id));
  if (!saga) {  // journal rows may name sagas that do not exist (schema 0001)
    saga = SagaRow{};
    saga->id = saga->correlation_id = id;
    saga->created_at = saga->updated_at = journal.front().at;
  }
  std::ostream& out = *context.out;
  if (picture != Picture::none) {
    Drawing drawing = draw_saga(db, *saga, journal, picture);
    out << drawing.text;
    if (!drawing.note.empty() && context.err) *context.err << "sagactl: " << drawing.note << '\n';
    return kOk;
  }
  auto outbox = read_outbox(db, id);
  auto letters = read_dead_letters_of_saga(db, id);
  std::vector<OperatorRequestRow> requests;
  for (auto& request : read_operator_requests_for(db, id))
    if (request.action == "retry" || request.action == "resolve") requests.push_back(request);
  std::map<std::string, const OutboxRow*> commands;
  for (const auto& row : outbox) commands[row.message_id] = &row;
  std::set<std::string> timed_out;
  for (const auto& entry : journal)
    if (entry.kind == "timed_out") timed_out.insert(entry.message_id);

  if (context.json) {
    json timeline = json::array();
    std::int64_t start = journal.empty() ? saga->created_at : journal.front().at;
    std::int64_t previous = start;
    for (const auto& entry : journal) {
      json item = {{"sequence", entry.sequence},
                   {"at", format_time(entry.at)},
                   {"since_start_seconds", seconds(entry.at - start)},
                   {"since_previous_seconds", seconds(entry.at - previous)},
                   {"kind", entry.kind},
                   {"message_id", entry.message_id},
                   {"message_type", entry.message_type},
                   {"from_state", entry.from_state},
                   {"to_state", entry.to_state},
                   {"detail", entry.detail}};
      bool carries_payload =
          entry.kind == "started" || entry.kind == "message_in" || entry.kind == "message_out";
      item["payload"] = carries_payload ? parse_json_or_null(payload_of(entry)) : json(nullptr);
      if (entry.kind == "message_out") {
        item["compensation"] = entry.detail.starts_with("compensation ");
        if (auto row = commands.find(entry.message_id); row != commands.end()) {
          item["destination"] = row->second->destination;
          item["attempts"] = row->second->attempts;
          item["command_state"] = command_state(*row->second, timed_out);
        }
      }
      timeline.push_back(std::move(item));
      previous = entry.at;
    }
    json command_list = json::array();
    for (const auto& row : outbox)
      command_list.push_back({{"message_id", row.message_id},
                              {"message_type", row.message_type},
                              {"destination", row.destination},
                              {"compensation", row.compensation},
                              {"attempts", row.attempts},
                              {"retries", std::max<std::int64_t>(row.attempts - 1, 0)},
                              {"state", command_state(row, timed_out)},
                              {"created_at", format_time(row.created_at)},
                              {"dispatched_at", json_time(row.dispatched_at)},
                              {"replied_at", json_time(row.replied_at)}});
    json letter_list = json::array();
    for (const auto& letter : letters) letter_list.push_back(dead_letter_json(letter));
    json request_list = json::array();
    for (const auto& request : requests) request_list.push_back(request_json(request));
    print_json(out, {{"saga", saga_json(*saga, now, true)},
                     {"timeline", timeline},
                     {"commands", command_list},
                     {"dead_letters", letter_list},
                     {"operator_requests", request_list}});
    return kOk;
  }

  key_value(out, "Saga", saga->id);
  key_value(out, "Type",
            saga->type + " (definition version " + std::to_string(saga->definition_version) + ")");
  key_value(out, "Status", saga->status + " in state " + saga->state);
  if (saga->correlation_id != saga->id) key_value(out, "Correlation", saga->correlation_id);
  key_value(
      out, "Created",
      format_time(saga->created_at) + " (" + format_duration(now - saga->created_at) + " ago)");
  key_value(
      out, "Updated",
      format_time(saga->updated_at) +
          (is_terminal(saga->status)
               ? std::string(saga->status == "Failed" ? " (parked " : " (ended ") +
                     format_duration(saga->updated_at - saga->created_at) + " after it started)"
               : " (" + format_duration(now - saga->updated_at) + " ago)"));

  out << "\nTimeline\n";
  Table timeline({"SEQ", "AT", "+PREV", "KIND", "MESSAGE", "DETAIL"});
  timeline.right_align(0);
  timeline.right_align(2);
  std::optional<std::int64_t> previous;
  for (const auto& entry : journal) {
    std::string message = entry.message_type;
    std::string detail = entry.detail;
    if (entry.kind == "transition") {
      message = entry.from_state + " -> " + entry.to_state;
    } else if (!entry.to_state.empty()) {  // an input's entry with the transition it caused
      message += (message.empty() ? "" : ": ") + entry.from_state + " -> " + entry.to_state;
    }
    if (entry.kind == "started") {
      detail = "data " + entry.detail;
    } else if (entry.kind == "message_out") {
      bool compensation = entry.detail.starts_with("compensation ");
      detail = compensation ? "compensation, " : "";
      if (auto row = commands.find(entry.message_id); row != commands.end()) {
        const OutboxRow& command = *row->second;
        detail += "to " + command.destination + ", sent " + std::to_string(command.attempts) +
                  "x, " + command_outcome(command, command_state(command, timed_out)) + ": ";
      }
      detail += std::string(payload_of(entry));
    }
    timeline.add({std::to_string(entry.sequence), format_time(entry.at),
                  previous ? "+" + format_duration(entry.at - *previous) : "", entry.kind, message,
                  detail});
    previous = entry.at;
  }
  timeline.print(out);

  if (!outbox.empty()) {
    out << "\nCommands\n";
    Table table({"SENT AT", "TYPE", "TO", "ROLE", "SENDS", "OUTCOME", "ID"});
    table.right_align(4);
    for (const auto& row : outbox)
      table.add({format_time(row.created_at), row.message_type, row.destination,
                 row.compensation ? "compensation" : "step", std::to_string(row.attempts),
                 command_outcome(row, command_state(row, timed_out)), row.message_id});
    table.print(out);
  }
  if (!letters.empty()) {
    out << "\nDead letters\n";
    Table table({"ID", "AT", "REASON", "TYPE", "STATE"});
    table.right_align(0);
    for (const auto& letter : letters)
      table.add({std::to_string(letter.id), format_time(letter.at), letter.reason_code,
                 letter.message_type, letter.state()});
    table.print(out);
  }
  if (!requests.empty()) {
    out << "\nOperator requests\n";
    Table table({"ID", "REQUESTED", "ACTION", "STATE", "RESULT"});
    table.right_align(0);
    for (const auto& request : requests)
      table.add({std::to_string(request.id), format_time(request.requested_at), request.action,
                 request.state(), request.result});
    table.print(out);
  }
  out << "\nData now\n";
  print_pretty(out, parse_json_or_null(saga->data), "  ");
  return kOk;
}

int trace_correlation(const Context& context, const std::string& correlation_id) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  std::int64_t now = now_micros();
  std::string column = correlation_column(db);
  auto query = db.prepare("SELECT " + saga_columns(db) + " FROM sagas WHERE " + column +
                          " = ?1 ORDER BY created_at, id");
  query.bind(1, correlation_id);
  std::vector<SagaRow> sagas;
  while (query.step()) sagas.push_back(saga_from(query));
  std::vector<std::string> saga_ids;
  for (const auto& saga : sagas) saga_ids.push_back(saga.id);
  if (std::find(saga_ids.begin(), saga_ids.end(), correlation_id) == saga_ids.end() &&
      column == "id")
    saga_ids.push_back(correlation_id);  // journal rows may name a saga that does not exist

  struct Message {
    std::int64_t at = 0;
    std::int64_t order = 0;
    json fields;
  };
  std::vector<Message> messages;
  static const std::set<std::string> kMessageKinds = {"message_in", "message_out", "duplicate",
                                                      "unexpected"};
  // Dead letters naming these sagas (or the correlation id itself, as a reply for a saga that
  // does not exist does); a message both journaled as unexpected and dead-lettered appears once.
  std::set<std::string> letter_sagas(saga_ids.begin(), saga_ids.end());
  letter_sagas.insert(correlation_id);
  std::set<std::string> dead_lettered;
  std::int64_t letter_order = std::numeric_limits<std::int64_t>::max() / 2;
  for (const auto& saga_id : letter_sagas) {
    for (auto& letter : read_dead_letters_of_saga(db, saga_id)) {
      json fields = {{"saga_id", letter.saga_id},
                     {"direction", "in"},
                     {"kind", "dead_letter"},
                     {"message_type", letter.message_type},
                     {"message_id", letter.message_id},
                     {"causation_id", ""},
                     {"peer", ""},
                     {"attempts", nullptr},
                     {"detail", letter.reason_code + ": " + letter.reason},
                     {"dead_letter_id", letter.id}};
      auto full = read_dead_letter(db, letter.id, true);
      auto decoded = saga::decode_envelope(full ? full->raw : std::string());
      if (auto* envelope = std::get_if<saga::Envelope>(&decoded)) {
        fields["causation_id"] = envelope->causation_id;
        fields["peer"] = envelope->source;
      }
      if (!letter.message_id.empty()) dead_lettered.insert(letter.message_id);
      messages.push_back({letter.at, letter_order + letter.id, std::move(fields)});
    }
  }
  for (const auto& saga_id : saga_ids) {
    std::map<std::string, OutboxRow> commands;
    for (auto& row : read_outbox(db, saga_id)) commands[row.message_id] = std::move(row);
    for (const auto& entry : read_journal(db, saga_id)) {
      if (!kMessageKinds.contains(entry.kind)) continue;
      if (entry.kind == "unexpected" && dead_lettered.contains(entry.message_id)) continue;
      json fields = {{"saga_id", saga_id},
                     {"direction", entry.kind == "message_out" ? "out" : "in"},
                     {"kind", entry.kind},
                     {"message_type", entry.message_type},
                     {"message_id", entry.message_id},
                     {"causation_id", ""},
                     {"peer", ""},
                     {"attempts", nullptr},
                     {"detail", std::string(payload_of(entry))},
                     {"dead_letter_id", nullptr}};
      if (auto command = commands.find(entry.message_id); command != commands.end()) {
        fields["peer"] = command->second.destination;
        fields["attempts"] = command->second.attempts;
        auto decoded = saga::decode_envelope(command->second.payload);
        if (auto* envelope = std::get_if<saga::Envelope>(&decoded))
          fields["causation_id"] = envelope->causation_id;
      }
      messages.push_back({entry.at, entry.sequence, std::move(fields)});
    }
  }
  if (sagas.empty() && messages.empty())
    throw Failure(kNotFound,
                  "no saga and no message with correlation id " + printable(correlation_id));
  std::stable_sort(messages.begin(), messages.end(), [](const Message& a, const Message& b) {
    return std::tie(a.at, a.order) < std::tie(b.at, b.order);
  });

  std::ostream& out = *context.out;
  if (context.json) {
    json saga_list = json::array();
    for (const auto& saga : sagas) saga_list.push_back(saga_json(saga, now, false));
    json message_list = json::array();
    std::optional<std::int64_t> previous;
    for (auto& message : messages) {
      message.fields["at"] = format_time(message.at);
      message.fields["since_previous_seconds"] = previous ? seconds(message.at - *previous) : 0.0;
      message_list.push_back(std::move(message.fields));
      previous = message.at;
    }
    print_json(
        out,
        {{"correlation_id", correlation_id}, {"sagas", saga_list}, {"messages", message_list}});
    return kOk;
  }
  key_value(out, "Correlation", correlation_id);
  for (const auto& saga : sagas)
    key_value(out, "Saga", saga.id + " (" + saga.type + ", " + saga.status + ")");
  out << '\n';
  Table table({"AT", "+PREV", "SAGA", "DIR", "KIND", "TYPE", "PEER", "EVENT", "CAUSED BY"});
  table.right_align(1);
  std::optional<std::int64_t> previous;
  for (const auto& message : messages) {
    const json& f = message.fields;
    std::string kind = f["kind"];
    table.add(
        {format_time(message.at), previous ? "+" + format_duration(message.at - *previous) : "",
         short_id(f["saga_id"]), f["direction"] == "out" ? "->" : "<-",
         kind == "dead_letter"
             ? "dead letter " + std::to_string(f["dead_letter_id"].get<std::int64_t>())
             : kind,
         f["message_type"], f["peer"], short_id(f["message_id"]), short_id(f["causation_id"])});
    previous = message.at;
  }
  table.print(out);
  out << messages.size() << " message" << (messages.size() == 1 ? "" : "s") << " across "
      << sagas.size() << " saga" << (sagas.size() == 1 ? "" : "s") << '\n';
  return kOk;
}

int list_dead_letters(const Context& context, const DeadLetterFilter& filter) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  bool has_discarded = db.has_column("dead_letters", "discarded_at");
  bool has_replayed = db.has_column("dead_letters", "replayed_at");
  std::string where = " WHERE (?1 = '' OR reason_code = ?1) AND (?2 = '' OR saga_id = ?2)";
  if (!filter.include_handled) {
    if (has_replayed) where += " AND replayed_at IS NULL";
    if (has_discarded) where += " AND discarded_at IS NULL";
  }
  auto count = db.prepare("SELECT count(*) FROM dead_letters" + where);
  count.bind(1, filter.reason_code).bind(2, filter.saga_id);
  count.step();
  std::int64_t total = count.integer(0);
  auto query = db.prepare("SELECT " + dead_letter_columns(db) + " FROM dead_letters" + where +
                          " ORDER BY id DESC LIMIT ?3");
  query.bind(1, filter.reason_code)
      .bind(2, filter.saga_id)
      .bind(3, filter.limit == 0 ? kNoLimit : filter.limit);
  std::vector<DeadLetterRow> letters;
  while (query.step()) letters.push_back(dead_letter_from(query));

  std::ostream& out = *context.out;
  if (context.json) {
    json list = json::array();
    for (const auto& letter : letters) list.push_back(dead_letter_json(letter));
    print_json(out, {{"dead_letters", list}, {"count", letters.size()}, {"total", total}});
    return kOk;
  }
  if (letters.empty()) {
    out << (filter.include_handled ? "no dead letters match\n" : "no open dead letters match\n");
    return kOk;
  }
  Table table({"ID", "AT", "REASON", "TYPE", "SAGA", "BYTES", "STATE", "DETAIL"});
  table.right_align(0);
  table.right_align(5);
  for (const auto& letter : letters)
    table.add({std::to_string(letter.id), format_time(letter.at), letter.reason_code,
               letter.message_type, short_id(letter.saga_id), std::to_string(letter.raw_size),
               letter.state(), letter.reason});
  table.print(out);
  out << letters.size() << " of " << total << (filter.include_handled ? "" : " open")
      << " dead letter" << (total == 1 ? "" : "s")
      << (static_cast<std::int64_t>(letters.size()) < total ? " (newest first; --limit for more)"
                                                            : "")
      << '\n';
  return kOk;
}

int show_dead_letter(const Context& context, const std::string& id_text, bool raw_only) {
  std::int64_t id = parse_dead_letter_id(id_text);
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  auto letter = read_dead_letter(db, id, true);
  if (!letter) throw Failure(kNotFound, "no dead letter " + std::to_string(id));
  std::ostream& out = *context.out;
  if (raw_only) {
    out.write(letter->raw.data(), static_cast<std::streamsize>(letter->raw.size()));
    return kOk;
  }
  auto decoded = saga::decode_envelope(letter->raw);
  json parsed = parse_json_or_null(letter->raw);
  if (context.json) {
    json fields = dead_letter_json(*letter);
    fields["raw_base64"] = base64(letter->raw);
    fields["raw_text"] = is_valid_utf8(letter->raw) ? json(letter->raw) : json(nullptr);
    fields["raw_json"] = parsed;
    if (auto* error = std::get_if<saga::EnvelopeError>(&decoded)) {
      fields["envelope_error"] = {{"code", saga::to_string(error->code)},
                                  {"field", error->field},
                                  {"message", error->message}};
    } else {
      fields["envelope_error"] = nullptr;
    }
    print_json(out, fields);
    return kOk;
  }
  key_value(out, "Dead letter", std::to_string(letter->id));
  key_value(out, "At", format_time(letter->at));
  key_value(out, "Reason code", letter->reason_code);
  key_value(out, "Reason", letter->reason);
  key_value(out, "Message id", letter->message_id.empty() ? "-" : letter->message_id);
  key_value(out, "Message type", letter->message_type.empty() ? "-" : letter->message_type);
  std::string saga_line = letter->saga_id.empty() ? "-" : letter->saga_id;
  if (!letter->saga_id.empty()) {
    if (auto saga = read_saga(db, letter->saga_id))
      saga_line += " (" + saga->type + ", " + saga->status + ")";
    else
      saga_line += " (no such saga)";
  }
  key_value(out, "Saga", saga_line);
  std::string state = letter->state();
  if (letter->replayed_at) state += " at " + format_time(*letter->replayed_at);
  if (letter->discarded_at) state += " at " + format_time(*letter->discarded_at);
  key_value(out, "State", state);
  std::string size = std::to_string(letter->raw_size) + " bytes";
  if (letter->raw_kept < letter->raw_size)
    size += ", only the first " + std::to_string(letter->raw_kept) +
            " kept (truncated; it cannot be replayed)";
  key_value(out, "Size", size);
  if (auto* error = std::get_if<saga::EnvelopeError>(&decoded))
    key_value(out, "Envelope", "does not decode: " + error->message);
  else
    key_value(out, "Envelope", "decodes");
  if (!parsed.is_null()) {
    out << "\nRaw bytes (JSON, indented; exact bytes: --raw)\n";
    print_pretty(out, parsed, "  ");
  } else {
    out << "\nRaw bytes (escaped: \\n \\t \\r \\\\ \\xNN \\u{NNNN}; exact bytes: --raw)\n  "
        << escaped_bytes(letter->raw) << '\n';
  }
  return kOk;
}

int show_stats(const Context& context) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  std::int64_t now = now_micros();

  std::map<std::string, std::int64_t> by_status;
  for (const auto& status : kStatuses) by_status[status] = 0;
  std::map<std::string, std::map<std::string, std::int64_t>> by_type;
  std::int64_t total = 0;
  auto counts = db.prepare("SELECT type, status, count(*) FROM sagas GROUP BY type, status");
  while (counts.step()) {
    std::int64_t n = counts.integer(2);
    by_status[counts.text(1)] += n;
    by_type[counts.text(0)][counts.text(1)] += n;
    total += n;
  }
  auto oldest_query = db.prepare("SELECT " + saga_columns(db) +
                                 " FROM sagas WHERE status IN ('Running', 'Compensating') "
                                 "ORDER BY created_at, id LIMIT 1");
  std::optional<SagaRow> oldest;
  if (oldest_query.step()) oldest = saga_from(oldest_query);

  // Both counts read the open-commands index (outbox_open, or the two partial indexes of
  // schemas before 8), never the whole outbox. The engine records re-sends, not first sends.
  const bool has_replies = db.has_column("outbox", "replied_at");
  auto open = db.prepare(std::string("SELECT count(*), min(created_at) FROM outbox WHERE ") +
                         (has_replies ? "replied_at IS NULL" : "dispatched = 0"));
  open.step();
  std::int64_t outbox_open = open.integer(0);
  std::optional<std::int64_t> oldest_open = open.optional_integer(1);
  std::optional<std::int64_t> resent;
  if (has_replies) {
    auto query =
        db.prepare("SELECT count(*) FROM outbox WHERE replied_at IS NULL AND dispatched = 1");
    query.step();
    resent = query.integer(0);
  }
  std::string open_letter = "1";
  if (db.has_column("dead_letters", "replayed_at")) open_letter += " AND replayed_at IS NULL";
  if (db.has_column("dead_letters", "discarded_at")) open_letter += " AND discarded_at IS NULL";
  auto letters = db.prepare("SELECT reason_code, count(*), sum(" + open_letter +
                            ") FROM dead_letters GROUP BY reason_code ORDER BY reason_code");
  std::int64_t letters_total = 0, letters_open = 0;
  std::map<std::string, std::int64_t> open_by_reason;
  while (letters.step()) {
    letters_total += letters.integer(1);
    letters_open += letters.integer(2);
    if (letters.integer(2) > 0) open_by_reason[letters.text(0)] = letters.integer(2);
  }
  std::optional<std::int64_t> requests_queued;
  if (has_operator_requests(db)) {
    auto queued = db.prepare("SELECT count(*) FROM operator_requests WHERE done_at IS NULL");
    queued.step();
    requests_queued = queued.integer(0);
  }

  std::ostream& out = *context.out;
  if (context.json) {
    json types = json::array();
    for (const auto& [type, statuses] : by_type) {
      json counts_of_type = json::object();
      std::int64_t type_total = 0;
      for (const auto& status : kStatuses) {
        auto found = statuses.find(status);
        counts_of_type[status] = found == statuses.end() ? 0 : found->second;
      }
      for (const auto& [status, n] : statuses) type_total += n;
      types.push_back({{"type", type}, {"total", type_total}, {"by_status", counts_of_type}});
    }
    json oldest_json = nullptr;
    if (oldest) oldest_json = saga_json(*oldest, now, false);
    print_json(
        out,
        {{"sagas", {{"total", total}, {"by_status", by_status}, {"by_type", types}}},
         {"oldest_in_flight", oldest_json},
         {"outbox",
          {{"open", outbox_open},
           {"resent", resent ? json(*resent) : json(nullptr)},
           {"oldest_open_age_seconds",
            oldest_open ? json(seconds(now - *oldest_open)) : json(nullptr)}}},
         {"dead_letters",
          {{"open", letters_open}, {"total", letters_total}, {"open_by_reason", open_by_reason}}},
         {"operator_requests",
          {{"queued", requests_queued ? json(*requests_queued) : json(nullptr)}}}});
    return kOk;
  }
  std::string statuses;
  for (const auto& status : kStatuses)
    statuses += (statuses.empty() ? "" : ", ") + status + " " + std::to_string(by_status[status]);
  key_value(out, "Sagas", std::to_string(total) + " (" + statuses + ")");
  key_value(out, "Oldest in flight",
            oldest ? oldest->id + " (" + oldest->type + ", " + oldest->status + ", started " +
                         format_duration(now - oldest->created_at) + " ago)"
                   : "none");
  key_value(out, "Outbox",
            std::to_string(outbox_open) + " awaiting reply" +
                (oldest_open ? " (oldest " + format_duration(now - *oldest_open) + ")" : "") +
                (resent ? ", " + std::to_string(*resent) + " of them re-sent" : ""));
  std::string reasons;
  for (const auto& [reason, n] : open_by_reason)
    reasons += (reasons.empty() ? "" : ", ") + reason + " " + std::to_string(n);
  key_value(out, "Dead letters",
            std::to_string(letters_open) + " open" + (reasons.empty() ? "" : " (" + reasons + ")") +
                ", " + std::to_string(letters_total) + " in total");
  key_value(out, "Operator requests",
            requests_queued ? std::to_string(*requests_queued) + " queued"
                            : "not supported by this schema version");
  if (!by_type.empty()) {
    out << '\n';
    std::vector<std::string> headers = {"TYPE"};
    for (const auto& status : kStatuses) {
      std::string header = status;
      std::transform(header.begin(), header.end(), header.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      headers.push_back(header);
    }
    headers.push_back("TOTAL");
    Table table(headers);
    for (std::size_t c = 1; c < headers.size(); ++c) table.right_align(c);
    for (const auto& [type, statuses_of_type] : by_type) {
      std::vector<std::string> row = {type};
      std::int64_t type_total = 0;
      for (const auto& status : kStatuses) {
        auto found = statuses_of_type.find(status);
        row.push_back(std::to_string(found == statuses_of_type.end() ? 0 : found->second));
      }
      for (const auto& [status, n] : statuses_of_type) type_total += n;
      row.push_back(std::to_string(type_total));
      table.add(row);
    }
    table.print(out);
  }
  return kOk;
}

int list_requests(const Context& context, bool pending_only, std::int64_t limit) {
  Database db = Database::open_read_only(context.db_path);
  ReadTransaction snapshot(db);
  if (!has_operator_requests(db))
    throw Failure(kDatabaseError,
                  "database " + context.db_path + " (schema version " +
                      std::to_string(db.schema_version()) +
                      ") has no operator_requests table; an orchestrator of this release "
                      "creates it when it opens the database");
  auto query =
      db.prepare("SELECT " + operator_request_columns() + " FROM operator_requests" +
                 (pending_only ? " WHERE done_at IS NULL" : "") + " ORDER BY id DESC LIMIT ?1");
  query.bind(1, limit == 0 ? kNoLimit : limit);
  std::vector<OperatorRequestRow> requests;
  while (query.step()) requests.push_back(operator_request_from(query));
  std::ostream& out = *context.out;
  if (context.json) {
    json list = json::array();
    for (const auto& request : requests) list.push_back(request_json(request));
    print_json(out, {{"operator_requests", list}, {"count", requests.size()}});
    return kOk;
  }
  if (requests.empty()) {
    out << (pending_only ? "no queued operator requests\n" : "no operator requests\n");
    return kOk;
  }
  Table table({"ID", "REQUESTED", "ACTION", "TARGET", "STATE", "BY", "RESULT"});
  table.right_align(0);
  for (const auto& request : requests)
    table.add({std::to_string(request.id), format_time(request.requested_at), request.action,
               request.target + (request.status.empty() ? "" : " as " + request.status),
               request.state(), request.requested_by, request.result});
  table.print(out);
  return kOk;
}

}  // namespace sagactl
