// Minimal messages shared by the compile-fail snippets.
#pragma once

#include <string_view>

#include "saga/definition.hpp"
#include "saga/detail/runtime.hpp"

namespace snippet {

struct Data {
  int value = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, value)

#define SNIPPET_MESSAGE(Name)                                  \
  struct Name {                                                \
    static constexpr std::string_view type = "snippet." #Name; \
    static constexpr int version = 1;                          \
    static constexpr std::string_view service = "snippet";     \
    int value = 0;                                             \
  };                                                           \
  NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Name, value)

SNIPPET_MESSAGE(Do)
SNIPPET_MESSAGE(Done)
SNIPPET_MESSAGE(Failed)
SNIPPET_MESSAGE(Undo)
SNIPPET_MESSAGE(Undone)
SNIPPET_MESSAGE(Ship)
SNIPPET_MESSAGE(Shipped)
SNIPPET_MESSAGE(Notify)
SNIPPET_MESSAGE(Notified)

template <class Cmd>
Cmd make_command(const Data& data, saga::tag<Cmd>) {
  return Cmd{data.value};
}

}  // namespace snippet
