// OpenBLAS kernels chosen by the CPU's features (see blas_kernels.h).
#include "accel/cpu/blas_kernels.h"

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <string_view>

extern "C" {
char* openblas_get_corename(void);
// In DYNAMIC_ARCH builds only: weak, so that a single-core build still links.
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace malv::accel::cpu {
namespace {

// The best core OpenBLAS 0.3.x has kernels for that this CPU's features
// allow ("" when none beyond the generic ones).
std::string_view best_core_for_features() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// Cores whose kernels are weaker than `target`'s: a switch pays. The newer
// AVX-512 cores (Cooperlake, SapphireRapids) are left as they are.
bool weaker_than(std::string_view core, std::string_view target) {
  constexpr std::array<std::string_view, 12> kGeneric = {
      "Prescott", "Core2",  "Penryn", "Dunnington", "Nehalem",    "Sandybridge",
      "Katmai",   "Banias", "Atom",   "Northwood",  "Coppermine", "Unknown"};
  for (std::string_view g : kGeneric) {
    if (core == g) return true;
  }
  return target == "SkylakeX" && core == "Haswell";
}

BlasKernels choose() {
  BlasKernels k;
  k.chosen_by_library = openblas_get_corename();
  k.in_use = k.chosen_by_library;
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE"); forced != nullptr) {
    k.reason = fmt::format("OPENBLAS_CORETYPE={} is set", forced);
    return k;
  }
  const std::string_view target = best_core_for_features();
  if (target.empty() || !weaker_than(k.chosen_by_library, target)) {
    k.reason = "the library's choice";
    return k;
  }
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) {
    k.reason = fmt::format("the CPU could run {}, but this OpenBLAS has one core only", target);
    return k;
  }
  ::setenv("OPENBLAS_CORETYPE", std::string(target).c_str(), 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  k.in_use = openblas_get_corename();
  k.reason = fmt::format("the library picked {} by the CPU's model number; its features allow {}",
                         k.chosen_by_library, target);
  return k;
}

// Before main(): no BLAS call can be in flight while the kernels change.
[[maybe_unused]] const BlasKernels& g_chosen_at_start = blas_kernels();

}  // namespace

std::string BlasKernels::describe() const {
  if (in_use == chosen_by_library) return fmt::format("{} ({})", in_use, reason);
  return fmt::format("{} instead of {} ({})", in_use, chosen_by_library, reason);
}

const BlasKernels& blas_kernels() {
  static const BlasKernels chosen = choose();
  return chosen;
}

}  // namespace malv::accel::cpu
