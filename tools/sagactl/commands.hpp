// The commands of sagactl. Each takes the parsed options, prints a table (or JSON with --json) to
// `out` and returns an exit code (database.hpp), or throws Failure with a one-line message.
//
// Read commands open the database read-only and read in one transaction (one snapshot).
// Mutating commands (requests.cpp) never change saga state: they queue an operator request for
// the engine that owns the database and wait for its answer.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "database.hpp"

namespace sagactl {

struct Context {
  std::string db_path;
  bool json = false;
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;  // notes that are not errors (the command still succeeds)
};

struct ListOptions {
  std::string type;
  std::vector<std::string> statuses;  // canonical names (Running, ...); empty = all
  std::optional<std::int64_t> older_than_micros;
  std::int64_t limit = 100;  // 0 = no limit
};

enum class Picture { none, dot, mermaid };

struct DeadLetterFilter {
  std::string reason_code;
  std::string saga_id;
  bool include_handled = false;  // also replayed and discarded ones
  std::int64_t limit = 100;
};

int list_sagas(const Context& context, const ListOptions& options);
int show_saga(const Context& context, const std::string& saga_id, Picture picture);
int trace_correlation(const Context& context, const std::string& correlation_id);
int list_dead_letters(const Context& context, const DeadLetterFilter& filter);
int show_dead_letter(const Context& context, const std::string& id, bool raw_only);
int show_stats(const Context& context);
int list_requests(const Context& context, bool pending_only, std::int64_t limit);

struct RequestOptions {
  double wait_seconds = 10;
  std::string note;  // recorded with the request (and journaled by resolve)
};
int request_retry(const Context& context, const std::string& saga_id,
                  const RequestOptions& options);
int request_resolve(const Context& context, const std::string& saga_id, const std::string& status,
                    const RequestOptions& options);
int request_replay_dead_letter(const Context& context, const std::string& id,
                               const RequestOptions& options);
int request_discard_dead_letter(const Context& context, const std::string& id,
                                const RequestOptions& options);

// Canonical status name for a case-insensitive spelling ("failed" -> "Failed"), or nullopt.
std::optional<std::string> canonical_status(const std::string& text);

// Shared by the commands: a saga id given in full, or a unique prefix or suffix of one (at least
// 4 characters; ids are time-ordered, so their last characters are the random ones). find: nullopt
// when no saga matches; resolve: Failure(kNotFound) then. Both throw Failure(kNotFound) when
// several sagas match.
std::optional<std::string> find_saga_id(Database& db, const std::string& short_id);
std::string resolve_saga_id(Database& db, const std::string& short_id);
// A dead-letter id as given on the command line. Throws Failure(kUsage) for anything but a
// positive decimal number.
std::int64_t parse_dead_letter_id(const std::string& text);
// SQL expression of a saga's correlation id: the sagas.correlation_id column where the schema has
// it (migration 0005), else the saga id (before 0005 the correlationId on the wire was the id).
std::string correlation_column(Database& db);

}  // namespace sagactl
