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
