// cpu_relax(): one pause of a spin-wait loop, telling the core that this
// thread is polling (x86 PAUSE, AArch64 YIELD), so a sibling hyper-thread
// gets the core's resources and the loop's exit does not flush the pipeline.
//
//   while (!ready.load(std::memory_order_acquire)) cpu_relax();
#pragma once

#include <atomic>

namespace malv {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace malv
