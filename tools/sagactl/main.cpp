// sagactl: inspect and operate the sagas in an orchestrator's SQLite database.
// See the README section "Operating sagas: sagactl" and `sagactl --help`.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "commands.hpp"
#include "output.hpp"

namespace {

using namespace sagactl;

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0  ok (for retry, resolve, dead-letters retry/discard: the orchestrator applied it)\n"
    "  1  not found, or refused (by sagactl's checks or by the orchestrator)\n"
    "  2  usage error (bad arguments)\n"
    "  3  database error (missing file, not a saga database, SQLite error)\n"
    "  4  operator request queued but not applied within --wait (no orchestrator running?)";

constexpr const char* kDescription =
    "Inspect and operate the sagas in an orchestrator's SQLite database.\n"
    "Reads open the file read-only and are safe while the orchestrator runs. retry, resolve and\n"
    "dead-letters retry/discard never change saga state themselves: they queue an operator\n"
    "request that the orchestrator running on the database applies, and wait for its answer.";

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "sagactl"};
  app.footer(kExitCodes);
  app.fallthrough();
  app.require_subcommand(1);

  Context context;
  context.out = &std::cout;
  context.err = &std::cerr;
  app.add_option("--db", context.db_path, "The orchestrator's SQLite file (default: $SAGA_DB)")
      ->envname("SAGA_DB");
  app.add_flag("--json", context.json, "Print JSON with stable field names instead of tables");

  ListOptions list_options;
  std::vector<std::string> statuses;
  std::string older_than;
  auto* list = app.add_subcommand("list", "List sagas, newest first");
  list->add_option("--type", list_options.type, "Only sagas of this type (e.g. order)");
  list->add_option("--status", statuses,
                   "Only sagas with this status: Running, Compensating, Completed, Compensated, "
                   "Failed (repeat or comma-separate for several; any case)")
      ->delimiter(',');
  list->add_option("--older-than", older_than,
                   "Only sagas started longer ago than this: 90s, 10m, 2h, 3d");
  list->add_option("--limit", list_options.limit, "Show at most N sagas (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();

  std::string saga_id;
  bool dot = false, mermaid = false;
  auto* show = app.add_subcommand(
      "show",
      "A saga's timeline from its journal: messages in and out, transitions, durations, "
      "retries, data");
  show->add_option("id", saga_id,
                   "Saga id, or a unique prefix or suffix of at least 4 characters (ids are "
                   "time-ordered: their last characters are the random ones)")
      ->required();
  auto* dot_flag = show->add_flag(
      "--dot", dot,
      "Print the saga's definition as Graphviz DOT instead, with the path this saga took on it");
  show->add_flag("--mermaid", mermaid,
                 "Print the saga's definition as a Mermaid state diagram instead, with the path "
                 "this saga took on it")
      ->excludes(dot_flag);

  std::string correlation_id;
  auto* trace = app.add_subcommand(
      "trace", "Every message of one correlation id, in order, across the sagas that carry it");
  trace->add_option("correlation_id", correlation_id, "The correlationId of the messages")
      ->required();

  DeadLetterFilter letter_filter;
  auto* letters = app.add_subcommand(
      "dead-letters", "List open dead letters (messages the orchestrator could not process)");
  letters->require_subcommand(0, 1);
  letters->add_option("--reason", letter_filter.reason_code,
                      "Only this reason code (e.g. unexpected, not_json, unknown_saga)");
  letters->add_option("--saga", letter_filter.saga_id, "Only dead letters naming this saga id");
  letters->add_flag("--all", letter_filter.include_handled, "Also replayed and discarded ones");
  letters->add_option("--limit", letter_filter.limit, "Show at most N (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::string letter_id;
  bool raw_only = false;
  auto* letter_show = letters->add_subcommand("show",
                                              "Every field of one dead letter, with its "
                                              "bytes printed safely");
  letter_show->add_option("id", letter_id, "Dead-letter id")->required();
  letter_show->add_flag("--raw", raw_only, "Write only the exact raw bytes to stdout");

  RequestOptions request_options;
  const auto add_request_options = [&](CLI::App* command) {
    command
        ->add_option("--wait", request_options.wait_seconds,
                     "Seconds to wait for the orchestrator to apply the request (0 = queue "
                     "and return)")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
  };
  auto* letter_retry = letters->add_subcommand(
      "retry", "Queue a replay of a dead letter's original bytes (applied at most once)");
  letter_retry->add_option("id", letter_id, "Dead-letter id")->required();
  letter_retry->add_option("--note", request_options.note, "Why; recorded with the request");
  add_request_options(letter_retry);
  auto* letter_discard = letters->add_subcommand(
      "discard", "Queue the discarding of a dead letter: kept, but never replayed");
  letter_discard->add_option("id", letter_id, "Dead-letter id")->required();
  letter_discard->add_option("--note", request_options.note, "Why; recorded with the request");
  add_request_options(letter_discard);

  auto* retry = app.add_subcommand(
      "retry", "Queue a retry of a Failed saga: the command whose retries ran out is sent again");
  retry->add_option("id", saga_id, "Saga id, or a unique prefix or suffix of at least 4 characters")
      ->required();
  retry->add_option("--note", request_options.note, "Why; recorded with the request");
  add_request_options(retry);

  std::string resolve_as;
  auto* resolve = app.add_subcommand(
      "resolve",
      "Queue the closing of a Failed saga as completed or compensated (after fixing "
      "things by hand)");
  resolve
      ->add_option("id", saga_id, "Saga id, or a unique prefix or suffix of at least 4 characters")
      ->required();
  resolve->add_option("--as", resolve_as, "completed or compensated")
      ->required()
      ->check(CLI::IsMember({"completed", "compensated"}, CLI::ignore_case));
  resolve->add_option("--note", request_options.note, "What was done by hand (journaled)")
      ->required();
  add_request_options(resolve);

  auto* stats = app.add_subcommand(
      "stats", "Counts by status and type, oldest saga in flight, outbox and dead-letter depth");

  bool pending_only = false;
  std::int64_t request_limit = 100;
  auto* requests = app.add_subcommand("requests", "List operator requests and their answers");
  requests->add_flag("--pending", pending_only, "Only requests not applied yet");
  requests->add_option("--limit", request_limit, "Show at most N (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();

  // CLI11 reports an unknown command as a missing one; name it instead.
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--db") {
      ++i;
    } else if (!arg.starts_with("-")) {
      bool known = false;
      for (const auto* command : app.get_subcommands({})) known |= command->check_name(arg);
      if (!known) {
        std::cerr << "sagactl: unknown command '" << printable(arg)
                  << "' (commands: list, show, trace, dead-letters, retry, resolve, stats, "
                     "requests; see sagactl --help)\n";
        return kUsage;
      }
      break;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sagactl: " << one_line(e.what()) << " (see sagactl --help)\n";
    return kUsage;
  }

  try {
    for (const auto& status : statuses) {
      auto canonical = canonical_status(status);
      if (!canonical)
        throw Failure(kUsage, "--status: '" + printable(status) +
                                  "' is not a status (Running, Compensating, Completed, "
                                  "Compensated, Failed)");
      list_options.statuses.push_back(*canonical);
    }
    if (!older_than.empty()) {
      list_options.older_than_micros = parse_age(older_than);
      if (!list_options.older_than_micros)
        throw Failure(kUsage, "--older-than: '" + printable(older_than) +
                                  "' is not an age like 90s, 10m, 2h or 3d");
    }
    if (context.db_path.empty())
      throw Failure(kUsage, "no database: pass --db PATH or set SAGA_DB");

    if (list->parsed()) return list_sagas(context, list_options);
    if (show->parsed())
      return show_saga(context, saga_id,
                       dot       ? Picture::dot
                       : mermaid ? Picture::mermaid
                                 : Picture::none);
    if (trace->parsed()) return trace_correlation(context, correlation_id);
    if (letter_show->parsed()) return show_dead_letter(context, letter_id, raw_only);
    if (letter_retry->parsed())
      return request_replay_dead_letter(context, letter_id, request_options);
    if (letter_discard->parsed())
      return request_discard_dead_letter(context, letter_id, request_options);
    if (letters->parsed()) return list_dead_letters(context, letter_filter);
    if (retry->parsed()) return request_retry(context, saga_id, request_options);
    if (resolve->parsed()) {
      std::string status = *canonical_status(resolve_as);
      return request_resolve(context, saga_id, status, request_options);
    }
    if (stats->parsed()) return show_stats(context);
    if (requests->parsed()) return list_requests(context, pending_only, request_limit);
    throw Failure(kUsage, "no command given");
  } catch (const Failure& failure) {
    std::cout.flush();
    std::cerr << "sagactl: " << one_line(failure.what()) << '\n';
    return failure.code();
  } catch (const std::exception& error) {
    std::cout.flush();
    std::cerr << "sagactl: " << one_line(error.what()) << '\n';
    return kDatabaseError;
  }
}
