// A VM's CPU weight, and what it becomes under each mechanism.
//
// Weights use cgroup v2's cpu.weight scale: 1..10000, 100 the default, and
// a VM with weight 200 gets twice the CPU time of one with 100 when both
// want more than there is. The other mechanisms get the nearest equivalent:
//
//   cgroup-v2        cpu.weight  = weight
//   cgroup-v1        cpu.shares  = weight * 1024 / 100 (at least 2; 100 -> 1024, v1's default)
//   thread-fallback  nice        = round(-log(weight / 100) / log(1.25)), clamped to -20..19
//                                  (CFS gives each nice step about 1.25x the weight of the
//                                  next, so 100 -> 0, 200 -> -3, 50 -> 3, 25 -> 6)
#pragma once

#include <cstdint>

namespace malv::cpu_control {

inline constexpr std::uint32_t kMinWeight = 1;
inline constexpr std::uint32_t kMaxWeight = 10000;
inline constexpr std::uint32_t kDefaultWeight = 100;

// cgroup v1's cpu.shares for a weight in [kMinWeight, kMaxWeight].
std::uint64_t weight_to_shares(std::uint32_t weight);
// The nice value a thread gets for a weight in [kMinWeight, kMaxWeight].
int weight_to_nice(std::uint32_t weight);

}  // namespace malv::cpu_control
