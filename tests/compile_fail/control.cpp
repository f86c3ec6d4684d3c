#include "messages.hpp"

namespace snippet {
using Good = saga::definition<
    "good", 1, Data,
    saga::step<Do>::on_success<Done>::on_failure<Failed>::compensate_with<Undo, Undone>,
    saga::pivot<Ship>::on_success<Shipped>, saga::retriable<Notify>::on_success<Notified>>;
auto type = saga::make_saga_type<Good>();
}  // namespace snippet
