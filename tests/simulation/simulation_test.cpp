// Runs the deterministic simulation over many seeds; a failing seed is printed so that
// `saga_simulate --seed N` reproduces it.
#include <gtest/gtest.h>

#include <cstdlib>

#include "harness.hpp"

namespace {

saga::simulation::Config config_for(std::uint64_t seed) {
  saga::simulation::Config config;
  config.seed = seed;
  config.directory = ::testing::TempDir();
  return config;
}

TEST(Simulation, EverySagaEndsWithEachEffectAtMostOnceAcross200Seeds) {
  int sagas = 0, crashes = 0, completed = 0, compensated = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    auto result = saga::simulation::run(config_for(seed));
    ASSERT_TRUE(result.ok()) << "seed " << seed << " failed (reproduce: saga_simulate --seed "
                             << seed << "):\n  " << result.violations.front();
    sagas += result.sagas;
    crashes += result.engine_crashes;
    completed += result.completed;
    compensated += result.compensated;
  }
  // The faults must actually have happened for the run to mean anything.
  EXPECT_GT(crashes, 200);
  EXPECT_GT(completed, 0);
  EXPECT_GT(compensated, 0);
  EXPECT_GT(sagas, 200 * 10);
}

// The engine gives up on a step after two sends: a step that may have been done is compensated,
// a step command that arrives after its compensation is never done, a pivot given up on is
// parked and retried by the simulated operator. Every order must still be all or nothing.
TEST(Simulation, StepsGivenUpOnAreUndoneAndNeverDoneLateAcross100Seeds) {
  int given_up = 0, compensated_first = 0, compensated = 0;
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    auto config = config_for(seed);
    config.step_attempts = 2;
    config.max_delay_ms = 5000;  // longer than the engine waits: commands arrive after giving up
    auto result = saga::simulation::run(config);
    ASSERT_TRUE(result.ok()) << "seed " << seed
                             << " failed (reproduce: saga_simulate --step-attempts 2 "
                                "--max-delay-ms 5000 --seed "
                             << seed << "):\n  " << result.violations.front();
    given_up += result.given_up;
    compensated_first += result.compensated_first;
    compensated += result.compensated;
  }
  EXPECT_GT(given_up, 20) << "the faults must make the engine give up";
  EXPECT_GT(compensated_first, 0) << "no step command arrived after its compensation";
  EXPECT_GT(compensated, 0);
}

TEST(Simulation, SameSeedGivesTheSameJournalByteForByte) {
  for (std::uint64_t seed : {7u, 42u, 1234u}) {
    auto first = saga::simulation::run(config_for(seed));
    auto second = saga::simulation::run(config_for(seed));
    ASSERT_FALSE(first.journal.empty());
    EXPECT_EQ(first.journal, second.journal) << "seed " << seed;
    EXPECT_EQ(first.engine_crashes, second.engine_crashes);
  }
}

TEST(Simulation, DifferentSeedsExploreDifferentHistories) {
  EXPECT_NE(saga::simulation::run(config_for(1)).journal,
            saga::simulation::run(config_for(2)).journal);
}

}  // namespace
