// saga_simulate: runs the deterministic simulation over a range of seeds and prints how many
// seeds per second it achieves. `--seed N` runs one seed and prints its journal.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "harness.hpp"

int main(int argc, char** argv) {
  std::uint64_t first = 1, count = 10000;
  bool single = false, journal = false;
  int step_attempts = 0, max_delay_ms = -1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::uint64_t {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        std::exit(2);
      }
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (arg == "--seed") {
      first = value();
      count = 1;
      single = true;
    } else if (arg == "--from") {
      first = value();
    } else if (arg == "--seeds") {
      count = value();
    } else if (arg == "--journal") {
      journal = true;
    } else if (arg == "--step-attempts") {
      step_attempts = static_cast<int>(value());
    } else if (arg == "--max-delay-ms") {
      max_delay_ms = static_cast<int>(value());
    } else {
      std::cerr << "usage: saga_simulate [--seeds N (10000)] [--from FIRST (1)] | --seed N "
                   "[--journal]; [--step-attempts N (0: never give up on a step)] "
                   "[--max-delay-ms MS (300)]\n";
      return arg == "--help" ? 0 : 2;
    }
  }
  auto begin = std::chrono::steady_clock::now();
  std::uint64_t failed = 0, sagas = 0, crashes = 0, given_up = 0, compensated_first = 0,
                backlogged = 0;
  for (std::uint64_t seed = first; seed < first + count; ++seed) {
    saga::simulation::Config config;
    config.seed = seed;
    config.step_attempts = step_attempts;
    if (max_delay_ms >= 0) config.max_delay_ms = max_delay_ms;
    auto result = saga::simulation::run(config);
    given_up += static_cast<std::uint64_t>(result.given_up);
    compensated_first += static_cast<std::uint64_t>(result.compensated_first);
    sagas += static_cast<std::uint64_t>(result.sagas);
    crashes += static_cast<std::uint64_t>(result.engine_crashes);
    if (result.backlogged > 0) ++backlogged;
    if (!result.ok()) {
      ++failed;
      std::cout << "seed " << seed << " FAILED:\n";
      for (const auto& violation : result.violations) std::cout << "  " << violation << "\n";
    }
    if (single && journal) std::cout << result.journal;
    if (!single && (seed - first + 1) % 1000 == 0)
      std::cout << "  " << (seed - first + 1) << " seeds, " << failed << " failed\n" << std::flush;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::cout << count << " seeds (" << first << ".." << first + count - 1 << "), " << failed
            << " failed, " << sagas << " sagas, " << crashes << " engine crashes, " << given_up
            << " commands given up on, " << compensated_first
            << " step commands refused after their compensation, " << backlogged
            << " seeds left commands in the outbox (a full send queue), " << seconds << " s, "
            << static_cast<double>(count) / seconds << " seeds/s\n";
  return failed == 0 ? 0 : 1;
}
