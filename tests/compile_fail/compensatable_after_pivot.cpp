#include "messages.hpp"

namespace snippet {
using AfterPivot =
    saga::definition<"after_pivot", 1, Data, saga::pivot<Ship>::on_success<Shipped>,
                     saga::step<Do>::on_success<Done>::compensate_with<Undo, Undone>>;
auto type = saga::make_saga_type<AfterPivot>();
}  // namespace snippet
