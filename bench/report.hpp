// The ceiling C, the targets of the performance issue, and the reports saga_bench writes:
// docs/benchmarks.json (every figure as {"value": ..., "unit": ...}) and docs/benchmarks.md (the
// documentation of the benchmark, generated with the figures of the run).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "end_to_end.hpp"

namespace bench {

// Resources one completed 3-step order saga uses: 4 engine steps (the start and three replies),
// 3 transport round trips (command out, reply back), 3 codec operations (decode a reply, encode
// a command).
inline constexpr double kStepsPerSaga = 4;
inline constexpr double kRoundTripsPerSaga = 3;
inline constexpr double kCodecOpsPerSaga = 3;

struct Ceiling {
  double store_s_per_saga = 0, transport_s_per_saga = 0, codec_s_per_saga = 0;
  double sagas_per_s = 0, steps_per_s = 0;
  std::string bound_by;  // the largest term
};

// C = 1 / (1/S + 1/Z + 1/J), each term per saga.
Ceiling ceiling(double store_steps_per_s, double round_trips_per_s, double codec_ops_per_s);

nlohmann::json figure(double value, const std::string& unit);
// The median of `values` (the mean of the two middle ones of an even count); 0 when empty.
double median(std::vector<double> values);
nlohmann::json ceiling_json(const Ceiling& ceiling, double b_star, std::size_t b_used,
                            const std::string& durability);
nlohmann::json profile_json(const ProfileResult& profile);
// The targets with the measured value and pass/fail (null: not measured here).
nlohmann::json targets(const nlohmann::json& report);
std::string markdown(const nlohmann::json& report);

}  // namespace bench
