// Named crash points for crash-recovery tests (docs/reliability.md, "Crash points").
//
// crash_point("engine.after_commit") does nothing unless the process was started with
// SAGA_CRASH_POINT=<that name> in its environment; then the SAGA_CRASH_AFTER-th time (default 1)
// the point is reached, the process kills itself with SIGKILL: no destructor, flush or atexit
// handler runs, exactly as with `kill -9` from outside at that instant.
//
// The environment is read once, at the first call. Cost when disabled: one comparison.
// Thread safety: safe from any thread.
#pragma once

#include <string_view>

namespace saga::detail {

void crash_point(std::string_view name) noexcept;

// The names compiled into the engine and the participant SDK, for documentation and tests.
inline constexpr std::string_view kCrashPoints[] = {
    "engine.before_commit",        // a turn's inputs are processed, nothing is committed yet
    "engine.after_commit",         // committed, before the turn's commands are handed over
    "engine.mid_send",             // after the first of several sends of one turn
    "engine.after_send",           // a turn's commands sent (re-sends not yet recorded)
    "engine.compensation_commit",  // committed a compensating command, before sending it
    "participant.after_commit",    // a participant committed its effect, before it replies
};

}  // namespace saga::detail
