#include "messages.hpp"

namespace snippet {
using Twice = saga::definition<"twice", 1, Data, saga::step<Do>::on_success<Done>,
                               saga::step<Ship>::on_success<Done>>;
auto type = saga::make_saga_type<Twice>();
}  // namespace snippet
