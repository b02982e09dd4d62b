// Locating the built-in policy modules (see policy_dir.h).
#include "mlaas/policy_dir.h"

#include <cstdlib>

#include "base/install_paths.h"

#if !defined(MALV_POLICY_DIR) || !defined(MALV_INSTALLED_POLICY_DIR)
#error \
    "MALV_POLICY_DIR and MALV_INSTALLED_POLICY_DIR must be defined by the build (src/mlaas/CMakeLists.txt)"
#endif

namespace malv::mlaas {

std::string policy_dir() {
  const char* env = std::getenv("MALV_POLICY_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  // An installed malv: <prefix>/bin/malv finds <prefix>/lib/malv/policies.
  if (std::string installed = installed_path(MALV_INSTALLED_POLICY_DIR); !installed.empty()) {
    return installed;
  }
  return MALV_POLICY_DIR;
}

std::string policy_module_path(std::string_view module_file_stem) {
  std::string path = policy_dir();
  path += "/lib";
  path += module_file_stem;
  path += ".so";
  return path;
}

}  // namespace malv::mlaas
