// The path one saga instance took, drawn from its journal as Graphviz DOT or Mermaid
// (`sagactl show ID --dot | --mermaid`).
//
// Nodes are the states the saga passed through, in the order it first reached them; each edge is
// one journaled transition, numbered in order and labelled with what caused it (the reply type,
// "start", or "timeout of <command>") and the commands it sent. Edges into, within or out of
// compensation are dashed and red; operator actions are drawn as labelled self-loops. The state
// the saga is in now is drawn bold and filled by its status (Completed green, Compensated amber,
// Failed red, in flight blue). The picture shows only what this instance did; the full machine of
// a saga type is drawn from its definition (docs/).
#pragma once

#include <string>
#include <vector>

#include "model.hpp"

namespace sagactl {

std::string render_dot(const SagaRow& saga, const std::vector<JournalRow>& journal);
std::string render_mermaid(const SagaRow& saga, const std::vector<JournalRow>& journal);

}  // namespace sagactl
