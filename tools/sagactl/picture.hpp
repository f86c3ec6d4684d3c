// What `sagactl show ID --dot | --mermaid` draws: the path one saga took (saga::path_from_journal
// over its journal) over the graph of its definition, rendered by the engine's saga::to_dot or
// saga::to_mermaid (saga/diagram.hpp). sagactl has no renderer of its own.
//
// The graph is the one the engine stored for the saga's type and definition version in the table
// saga_definitions (migration 0006) when it registered the definition. When there is none (a
// database of an older schema, a definition no engine registered on this database), when it
// cannot be read, or when it lacks a state the saga was in (a definition changed without a new
// version), the graph is built from the journal alone (saga::graph_from_journal): the states and
// transitions this saga went through, with the commands' destinations from its outbox.
// Drawing::note then says why, for stderr.
//
// Every name from the database goes through printable() before it is drawn, so the output is safe
// to print to a terminal. Errors: Failure (exit 3) from the database. Thread safety: one thread.
#pragma once

#include <string>
#include <vector>

#include "commands.hpp"
#include "model.hpp"

namespace sagactl {

struct Drawing {
  std::string text;  // DOT or Mermaid
  std::string note;  // why the graph was built from the journal alone; empty otherwise
};

// `picture` is Picture::dot or Picture::mermaid.
Drawing draw_saga(Database& db, const SagaRow& saga, const std::vector<JournalRow>& journal,
                  Picture picture);

}  // namespace sagactl
