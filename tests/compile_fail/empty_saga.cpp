#include "messages.hpp"

namespace snippet {
using Empty = saga::definition<"empty", 1, Data>;
auto type = saga::make_saga_type<Empty>();
}  // namespace snippet
