#include "cpu_control/cpu_weight.h"

#include <algorithm>
#include <cmath>

namespace malv::cpu_control {

std::uint64_t weight_to_shares(std::uint32_t weight) {
  // cpu.shares accepts 2..262144; 10000 * 1024 / 100 stays inside.
  return std::max<std::uint64_t>(2, std::uint64_t{weight} * 1024 / 100);
}

int weight_to_nice(std::uint32_t weight) {
  const double ratio = static_cast<double>(std::max<std::uint32_t>(weight, 1)) / kDefaultWeight;
  const long nice = std::lround(-std::log(ratio) / std::log(1.25));
  return static_cast<int>(std::clamp<long>(nice, -20, 19));
}

}  // namespace malv::cpu_control
