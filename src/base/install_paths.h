// Where an installed MaLV-OS finds its own files: relative to the running
// executable, so that a prefix (`cmake --install --prefix P`) works wherever
// it is put, even after it is moved.
//
//   // bin/malv -> lib/malv/policies
//   std::string dir = installed_path("../lib/malv/policies");  // "" when absent
#pragma once

#include <string>
#include <string_view>

namespace malv {

// The directory holding the running executable (from /proc/self/exe); ""
// when it cannot be read.
std::string executable_dir();

// executable_dir()/relative when that path exists, else "".
std::string installed_path(std::string_view relative);

}  // namespace malv
