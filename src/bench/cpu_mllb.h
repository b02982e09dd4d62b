// The MLLB figures of `malv bench cpu`: the shipped model's held-out
// accuracy on a dump of the kernel's balancer decisions (against always
// answering the majority and LAKE's reference weights), and what one
// migration decision costs, inline and through the host's MLaaS inference
// service and the `mllb` policy (bench/cpu.cpp prints them).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "malv/result.h"

namespace malv::bench {

// The dump: `data` if given, else $MALV_MLLB_DATA; null figures (and why)
// when there is none. `decisions`: timed decide() calls per path.
[[nodiscard]] Result<nlohmann::json> measure_mllb(const std::string& data, int decisions);

}  // namespace malv::bench
