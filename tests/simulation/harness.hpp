// Deterministic simulation of the order saga under faults: the real engine and the real SQLite
// store, a simulated clock, a simulated network that drops, duplicates, reorders and delays
// messages, simulated participants that sometimes crash between their commit and their reply,
// and engine crashes (in-memory state lost, store reopened) at random points, including in the
// middle of sending a turn's commands; optionally, step commands given up on (step_attempts).
// Everything is driven by one seed. See docs/reliability.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saga::simulation {

struct Config {
  std::uint64_t seed = 1;
  int sagas = 12;
  double drop = 0.05;                    // a message is lost
  double duplicate = 0.05;               // a message is delivered twice
  int max_delay_ms = 300;                // delivery delay, uniform in [0, max]: reorders messages
  double engine_crash = 0.01;            // per loop step
  double crash_while_sending = 0.01;     // per command handed to the network
  double participant_reply_loss = 0.05;  // participant commits, then dies before replying
  int fault_window_ms = 60000;           // faults stop after this much simulated time
  int horizon_ms = 900000;               // every saga must have ended by then
  // Sends of a step command before the engine gives up on it (0: never). Giving up compensates
  // a step that may have been done; a parked pivot is retried by a simulated operator once the
  // faults stop. Compensations are never given up on.
  int step_attempts = 0;
  std::string directory = "/tmp";  // where the run's database file lives
};

struct Result {
  std::uint64_t seed = 0;
  std::vector<std::string> violations;  // empty when every invariant holds
  std::string journal;                  // every saga's journal, in a canonical order
  int sagas = 0;                        // sagas that exist in the store at the end
  int completed = 0, compensated = 0;
  int engine_crashes = 0;
  int given_up = 0;           // commands the engine gave up on (timed_out entries)
  int compensated_first = 0;  // step commands the participants refused: compensated
  int backlogged = 0;         // most commands left in the outbox at once (a full send queue)
  int steps = 0;
  bool ok() const { return violations.empty(); }
};

Result run(const Config& config);

}  // namespace saga::simulation
