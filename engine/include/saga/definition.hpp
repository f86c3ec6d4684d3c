// The linear saga DSL: an ordered list of steps from which the engine generates the Boost.MSM
// state machine.
//
//   struct OrderSaga : saga::definition<"order", /*version*/ 1, OrderData,
//       saga::step<inventory::Reserve>
//           ::on_success<inventory::Reserved>
//           ::on_failure<inventory::OutOfStock>
//           ::compensate_with<inventory::Release, inventory::Released>,
//       saga::step<payment::Charge>
//           ::on_success<payment::Charged>
//           ::on_failure<payment::Declined>
//           ::compensate_with<payment::Refund, payment::Refunded>,
//       saga::pivot<shipping::Ship>
//           ::on_success<shipping::Shipped>
//           ::on_failure<shipping::Undeliverable>> {};
//
// Derive a named struct rather than writing a type alias: Boost.MSM spells the machine's type
// into its symbol names, and a short name keeps compile times and object files small.
//
// Step kinds (Garcia-Molina / Richardson):
// - step<C>: compensatable. compensate_with<Command, Ack> names the command that undoes it and
//   the reply acknowledging that; a step that needs no undo (a read-only check) omits it.
// - pivot<C>: the point of no return. If it fails, the steps before it are compensated; once it
//   succeeds the saga only goes forward. At most one.
// - retriable<C>: after the pivot only. A failure reply sends the command again (a new one),
//   after the wait the command's RetryPolicy gives the n-th failure reply in a row.
//
// Semantics of the generated machine:
// - States: "awaiting:<command type>" per step and "compensating:<compensation type>" per
//   compensation, plus Initial, Completed and Compensated (saga::states).
// - A success reply advances; the last one completes the saga.
// - A failure reply (or StepFailed from user code) at step k sends the compensations of the
//   completed compensatable steps k-1..1 in reverse order, one at a time, each awaiting its
//   acknowledgement; then the saga is Compensated. With nothing to undo it is Compensated at
//   once.
// - A step whose command timed out (StepFailed with timed_out: no reply after every retry) may
//   have been done. A compensatable step is compensated itself first, then k-1..1 as above. A
//   step without compensate_with is treated as failed. A timed-out pivot parks the saga as
//   Failed in place, since it may have happened and cannot be undone: an operator retries it.
// - Every compensation names the step command it undoes (the envelope's `compensates` field).
// - StepFailed while compensating, or after the pivot, parks the saga as Failed in place: its
//   state is still the one waiting for the command, so an operator can retry it.
//
// Misuse is a compile error with a readable message: an empty saga, a step without on_success,
// compensate_with without its acknowledgement, a reply type claimed twice, a compensatable or
// plain step after the pivot, a second pivot, a retriable step before the pivot.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "saga/machine.hpp"

namespace saga {

// A string usable as a template argument: saga::definition<"order", ...>.
template <std::size_t N>
struct fixed_string {
  char chars[N]{};
  constexpr fixed_string(const char (&text)[N]) { std::copy_n(text, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

enum class StepKind { compensatable, pivot, retriable };

namespace detail {

struct unset {};
struct missing_ack {};

template <class... T>
struct type_list {};

template <StepKind Kind, class Cmd, class Success, class Failures, class Compensation, class Ack>
struct step_spec;

template <StepKind Kind, class Base, class Compensation, class Ack>
struct with_compensation {
  static_assert(!std::is_same_v<Ack, missing_ack>,
                "compensate_with<Command, Ack>: a compensation needs the reply type that "
                "acknowledges it (compensate_with<Release, Released>)");
  static_assert(Kind == StepKind::compensatable,
                "compensate_with: only saga::step can be compensated; a pivot or retriable step "
                "is never undone");
  using type = step_spec<Kind, typename Base::command, typename Base::success,
                         typename Base::failures, Compensation, Ack>;
};

template <StepKind Kind, class Cmd, class Success, class Failures, class Compensation, class Ack>
struct step_spec {
  static constexpr StepKind kind = Kind;
  using command = Cmd;
  using success = Success;
  using failures = Failures;
  using compensation = Compensation;
  using compensation_ack = Ack;
  static constexpr bool has_compensation = !std::is_same_v<Compensation, unset>;

  template <class Reply>
  using on_success = step_spec<Kind, Cmd, Reply, Failures, Compensation, Ack>;
  template <class... Replies>
  using on_failure = step_spec<Kind, Cmd, Success, type_list<Replies...>, Compensation, Ack>;
  template <class CompensationCommand, class CompensationAck = missing_ack>
  using compensate_with =
      typename with_compensation<Kind, step_spec, CompensationCommand, CompensationAck>::type;
};

template <class Prefix, class Cmd>
struct joined_name {
  static constexpr std::size_t size = Prefix::value.size() + std::string_view{Cmd::type}.size();
  static constexpr std::array<char, size> storage = [] {
    std::array<char, size> out{};
    std::string_view prefix = Prefix::value, rest = Cmd::type;
    std::copy(prefix.begin(), prefix.end(), out.begin());
    std::copy(rest.begin(), rest.end(), out.begin() + prefix.size());
    return out;
  }();
  static constexpr std::string_view value{storage.data(), storage.size()};
};
struct awaiting_prefix {
  static constexpr std::string_view value = "awaiting:";
};
struct compensating_prefix {
  static constexpr std::string_view value = "compensating:";
};

// States are named after the command they wait on. Their C++ names stay short on purpose:
// Boost.MSM spells the whole transition table into many symbol names, and long state types
// make debug builds slow and huge.
template <class Command>
struct awaiting : state<SagaStatus::Running> {
  static constexpr std::string_view name = joined_name<awaiting_prefix, Command>::value;
};
template <class Compensation>
struct compensating : state<SagaStatus::Compensating> {
  static constexpr std::string_view name = joined_name<compensating_prefix, Compensation>::value;
};

template <class... Lists>
struct concat {
  using type = type_list<>;
};
template <class... A>
struct concat<type_list<A...>> {
  using type = type_list<A...>;
};
template <class... A, class... B, class... Rest>
struct concat<type_list<A...>, type_list<B...>, Rest...> : concat<type_list<A..., B...>, Rest...> {
};

template <class List>
struct to_table;
template <class... Rows>
struct to_table<type_list<Rows...>> {
  using type = table<Rows...>;
};

template <class T, class... Ts>
constexpr std::size_t count_of = (std::size_t{0} + ... + (std::is_same_v<T, Ts> ? 1 : 0));

template <class Spec>
using claimed_replies = typename concat<
    type_list<typename Spec::success>, typename Spec::failures,
    std::conditional_t<Spec::has_compensation, type_list<typename Spec::compensation_ack>,
                       type_list<>>>::type;

template <class Spec>
struct compensations_of {
  using type = std::conditional_t<Spec::has_compensation, type_list<typename Spec::compensation>,
                                  type_list<>>;
};

template <class List>
struct all_distinct;
template <class... T>
struct all_distinct<type_list<T...>> {
  static constexpr bool value = ((count_of<T, T...> == 1) && ...);
};

template <class Definition, class... Steps>
struct linear_machine {
  static constexpr int count = static_cast<int>(sizeof...(Steps));
  using steps = std::tuple<Steps...>;
  template <int I>
  using step_at = std::tuple_element_t<static_cast<std::size_t>(I), steps>;

  static constexpr std::array<StepKind, sizeof...(Steps)> kinds{Steps::kind...};
  static constexpr std::array<bool, sizeof...(Steps)> undoable{Steps::has_compensation...};

  // Index of the last step before `index` that has a compensation, or -1.
  static constexpr int previous_undoable(int index) {
    for (int j = index - 1; j >= 0; --j)
      if (undoable[static_cast<std::size_t>(j)]) return j;
    return -1;
  }
  static constexpr int pivot_count() {
    int n = 0;
    for (auto kind : kinds) n += kind == StepKind::pivot ? 1 : 0;
    return n;
  }
  static constexpr bool only_retriable_after_pivot() {
    bool after = false;
    for (auto kind : kinds) {
      if (after && kind != StepKind::retriable) return false;
      if (kind == StepKind::pivot) after = true;
    }
    return true;
  }
  static constexpr bool retriable_only_after_pivot() {
    bool after = false;
    for (auto kind : kinds) {
      if (!after && kind == StepKind::retriable) return false;
      if (kind == StepKind::pivot) after = true;
    }
    return true;
  }

  // Where the saga goes when it has to undo everything before step `index`.
  template <int J, class = void>
  struct undo_from {
    using target = compensating<typename step_at<J>::compensation>;
    using action = compensate<typename step_at<J>::compensation, typename step_at<J>::command>;
  };
  template <class Unused>
  struct undo_from<-1, Unused> {
    using target = states::Compensated;
    using action = none;
  };

  template <int I, class = void>
  struct next_after {
    using target = awaiting<typename step_at<I + 1>::command>;
    using action = send<typename step_at<I + 1>::command>;
  };
  template <class Unused>
  struct next_after<count - 1, Unused> {
    using target = states::Completed;
    using action = none;
  };

  template <int I, class Failures>
  struct failure_rows;
  template <int I, class... Failure>
  struct failure_rows<I, type_list<Failure...>> {
    using spec = step_at<I>;
    using undo = undo_from<previous_undoable(I)>;
    static constexpr bool retry = spec::kind == StepKind::retriable;
    using type = std::conditional_t<
        retry,
        type_list<transition<awaiting<typename spec::command>, Failure,
                             awaiting<typename spec::command>, send<typename spec::command>>...>,
        type_list<transition<awaiting<typename spec::command>, Failure, typename undo::target,
                             typename undo::action>...>>;
  };

  template <int J, bool Undoable>
  struct compensation_rows {
    using type = type_list<>;
  };
  template <int J>
  struct compensation_rows<J, true> {
    using own = step_at<J>;
    using undo_next = undo_from<previous_undoable(J)>;
    // No row for StepFailed: a compensation that cannot be carried out parks the saga as Failed
    // in place, still waiting for its acknowledgement, so an operator can retry it.
    using type = type_list<
        transition<compensating<typename own::compensation>, typename own::compensation_ack,
                   typename undo_next::target, typename undo_next::action>>;
  };

  template <int I>
  struct step_rows {
    using spec = step_at<I>;
    using next = next_after<I>;
    using undo = undo_from<previous_undoable(I)>;
    using awaited = awaiting<typename spec::command>;
    // A step that timed out may have been done: a compensatable one is compensated itself before
    // the steps before it. A pivot's timeout refuses both guards, so the saga is parked as Failed
    // in place, still waiting for the pivot: it may have happened, and nothing can undo it, so an
    // operator retries it (the participant answers a repeat from its ledger). After the pivot
    // there is no row at all: a retriable step is re-sent for ever.
    using undo_before = transition<awaited, StepFailed, typename undo::target,
                                   typename undo::action, unless_timed_out>;
    using undo_itself =
        transition<awaited, StepFailed, compensating<typename spec::compensation>,
                   compensate<typename spec::compensation, typename spec::command>, if_timed_out>;
    using on_user_error = std::conditional_t<
        spec::kind == StepKind::retriable, type_list<>,
        std::conditional_t<
            spec::kind == StepKind::pivot, type_list<undo_before>,
            std::conditional_t<spec::has_compensation, type_list<undo_before, undo_itself>,
                               type_list<transition<awaited, StepFailed, typename undo::target,
                                                    typename undo::action>>>>>;
    using forward = typename concat<
        type_list<transition<awaiting<typename spec::command>, typename spec::success,
                             typename next::target, typename next::action>>,
        on_user_error>::type;
    using type = typename concat<forward, typename failure_rows<I, typename spec::failures>::type,
                                 typename compensation_rows<I, spec::has_compensation>::type>::type;
  };

  template <class Indices>
  struct all_rows;
  template <int... I>
  struct all_rows<std::integer_sequence<int, I...>> {
    using type = typename concat<
        type_list<transition<states::Initial, Begin, awaiting<typename step_at<0>::command>,
                             send<typename step_at<0>::command>>>,
        typename step_rows<I>::type...>::type;
  };

  using rows = typename all_rows<std::make_integer_sequence<int, count>>::type;
};

}  // namespace detail

template <class Cmd>
using step = detail::step_spec<StepKind::compensatable, Cmd, detail::unset, detail::type_list<>,
                               detail::unset, detail::unset>;
template <class Cmd>
using pivot = detail::step_spec<StepKind::pivot, Cmd, detail::unset, detail::type_list<>,
                                detail::unset, detail::unset>;
template <class Cmd>
using retriable = detail::step_spec<StepKind::retriable, Cmd, detail::unset, detail::type_list<>,
                                    detail::unset, detail::unset>;

template <fixed_string Name, int Version, class Data, class... Steps>
struct definition : machine<definition<Name, Version, Data, Steps...>, Data> {
  static_assert(sizeof...(Steps) > 0, "saga::definition: a saga needs at least one step");
  static_assert(Version >= 1, "saga::definition: the definition version starts at 1");
  static_assert((!std::is_same_v<typename Steps::success, detail::unset> && ...),
                "saga::definition: every step needs on_success<Reply>");

 private:
  using linear = detail::linear_machine<definition, Steps...>;
  using all_replies = typename detail::concat<detail::claimed_replies<Steps>...>::type;

 public:
  static_assert(detail::all_distinct<all_replies>::value,
                "saga::definition: a reply type is claimed by two steps (or twice by one step); "
                "each reply type may appear once per saga, so a reply always names its step");
  static_assert(
      detail::all_distinct<
          typename detail::concat<detail::type_list<typename Steps::command...>,
                                  typename detail::compensations_of<Steps>::type...>::type>::value,
      "saga::definition: a command type appears in two steps (or is both a step and a "
      "compensation); each command may appear once per saga, so it names its state");
  static_assert(linear::pivot_count() <= 1, "saga::definition: a saga has at most one pivot");
  static_assert(linear::only_retriable_after_pivot(),
                "saga::definition: only retriable steps may follow the pivot (a compensatable "
                "step after the point of no return could never be undone)");
  static_assert(linear::retriable_only_after_pivot(),
                "saga::definition: a retriable step must come after the pivot");

  static constexpr std::string_view name = Name.view();
  static constexpr int version = Version;
  using initial_state = states::Initial;

  // Commands of retriable steps: the engine re-sends them until answered.
  static std::vector<std::string_view> retriable_commands() {
    std::vector<std::string_view> types;
    ((Steps::kind == StepKind::retriable ? types.push_back(Steps::command::type) : void()), ...);
    return types;
  }
  // The kind of the step that sends this command; nullopt for any other type (pictures use it
  // to mark the pivot, saga/diagram.hpp).
  static constexpr std::optional<StepKind> step_kind(std::string_view command_type) {
    std::optional<StepKind> kind;
    ((Steps::command::type == command_type ? void(kind = Steps::kind) : void()), ...);
    return kind;
  }
  using transition_table = typename detail::to_table<typename linear::rows>::type;
};

}  // namespace saga
