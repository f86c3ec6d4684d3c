#include "messages.hpp"

namespace other {
struct Data {
  int value = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Data, value)
// No make_command for this data type.
using NoBuilder =
    saga::definition<"no_builder", 1, Data, saga::step<snippet::Do>::on_success<snippet::Done>>;
auto type = saga::make_saga_type<NoBuilder>();
}  // namespace other
