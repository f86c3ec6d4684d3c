#include "messages.hpp"

namespace snippet {
using NoAck =
    saga::definition<"no_ack", 1, Data, saga::step<Do>::on_success<Done>::compensate_with<Undo>>;
auto type = saga::make_saga_type<NoAck>();
}  // namespace snippet
