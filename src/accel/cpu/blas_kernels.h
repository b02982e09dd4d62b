// Which of OpenBLAS's kernels the process runs, chosen by what the CPU can do.
//
// OpenBLAS (Debian builds it with DYNAMIC_ARCH) picks its kernels once, when
// it loads, by the CPU's family and model numbers. A CPU newer than the
// library is unknown to it and gets the generic SSE3 kernels ("Prescott"):
// Debian 12's OpenBLAS 0.3.21 does that on these machines' model-207 Xeons,
// which have AVX-512 (docs/benchmarks.md measures what it cost). So before
// main() the process asks OpenBLAS for the kernels its CPU's *features* allow
// (`SkylakeX` with AVX-512 F/CD/BW/DQ/VL, `Haswell` with AVX2 and FMA), through
// the library's own switch (OPENBLAS_CORETYPE and its dynamic init, the same
// path its start-up takes), when it had picked weaker ones. Child processes
// inherit OPENBLAS_CORETYPE, so a host and its process guests run the same
// kernels (bitwise-equal results). An OPENBLAS_CORETYPE already set is obeyed
// and nothing is switched; so is a library built for one core only.
//
//   log::info("accel", "OpenBLAS kernels: {}", blas_kernels().describe());
#pragma once

#include <string>

namespace malv::accel::cpu {

struct BlasKernels {
  std::string chosen_by_library;  // what OpenBLAS picked at load ("Prescott")
  std::string in_use;             // what runs now ("SkylakeX")
  std::string reason;             // why they differ, or why nothing was switched
  std::string describe() const;
};

// Decided once per process (before main() in any program that links the CPU
// kernels or the inference service; thread-safe on first use otherwise).
const BlasKernels& blas_kernels();

}  // namespace malv::accel::cpu
