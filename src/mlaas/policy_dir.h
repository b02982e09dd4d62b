// Where the built-in policy modules (src/policies) are.
//
// The build puts every built-in module's .so in ${CMAKE_BINARY_DIR}/policies/
// and compiles that path into malv_mlaas as MALV_POLICY_DIR. At run time the
// environment variable MALV_POLICY_DIR, when set, wins (an installed host
// points it at its lib directory).
//
//   registry.load_directory(policy_dir()).value();
//   registry.load_module(policy_module_path("malv_sched_basic")).value();
#pragma once

#include <string>
#include <string_view>

namespace malv::mlaas {

// $MALV_POLICY_DIR, else the build's policies/ directory.
std::string policy_dir();
// policy_dir() + "/lib<name>.so".
std::string policy_module_path(std::string_view module_file_stem);

}  // namespace malv::mlaas
