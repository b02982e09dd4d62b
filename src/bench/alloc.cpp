// `malv bench alloc`: what clearing device memory costs (issue 15), on the
// CPU backend, in one run.
//
// A VM that frees a buffer must not leave its bytes for the next VM to read,
// so the backend hands out memory that holds zeros (cpu/cpu_device_memory.h
// says how). This measures allocation throughput with that clearing and
// without it (CpuBackendOptions::clear_memory = false, which exists only for
// this benchmark), over the same sequence of sizes:
//
//  * alloc: allocate + free cycles. `--live` buffers stay allocated; each
//    cycle frees a random one and allocates a new one in its place, sized
//    log-uniformly in [--min-bytes, --max-bytes] (4 KiB..16 MiB by default).
//  * touch: the same cycles, and each new buffer is then written once in
//    full (a Memset op on a queue, waited for), as a guest's first upload
//    would: a scheme that clears lazily (on first touch) pays for it here.
//
// Runs alternate between the two backends, `--repeats` times; the median
// rate of each is reported, and the ratio noclear/clear is the median of
// the per-round ratios (goal: at most 2).
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "accel/backend.h"
#include "base/clock.h"
#include "bench/bench.h"
#include "harness/report.h"

namespace malv::bench {

namespace {

struct Workload {
  std::vector<std::size_t> slots;  // which live buffer each cycle replaces
  std::vector<std::size_t> sizes;  // the size of the buffer each cycle allocates
  std::vector<std::size_t> warm;   // the sizes the live buffers start with
};

Workload make_workload(const AllocOptions& flags, int cycles) {
  std::mt19937_64 rng(flags.seed);
  const double low = std::log2(static_cast<double>(flags.min_bytes));
  const double high = std::log2(static_cast<double>(flags.max_bytes));
  std::uniform_real_distribution<double> exponent(low, high);
  std::uniform_int_distribution<std::size_t> slot(0, static_cast<std::size_t>(flags.live) - 1);
  auto size = [&] { return static_cast<std::size_t>(std::exp2(exponent(rng))); };
  Workload w;
  for (int i = 0; i < flags.live; ++i) w.warm.push_back(size());
  for (int i = 0; i < cycles; ++i) {
    w.slots.push_back(slot(rng));
    w.sizes.push_back(size());
  }
  return w;
}

// One run of the workload on `backend`: allocations per second.
Result<double> run_cycles(accel::Backend& backend, accel::QueueId queue, const Workload& w,
                          bool touch) {
  std::vector<accel::DevicePtr> live;
  for (std::size_t bytes : w.warm) {
    MALV_ASSIGN_OR_RETURN(accel::DevicePtr ptr, backend.allocate(bytes));
    live.push_back(ptr);
  }
  Stopwatch watch;
  for (std::size_t i = 0; i < w.sizes.size(); ++i) {
    accel::DevicePtr& slot = live[w.slots[i]];
    backend.free(slot);
    Result<accel::DevicePtr> ptr = backend.allocate(w.sizes[i]);
    if (!ptr.ok()) {
      for (std::size_t j = 0; j < live.size(); ++j) {
        if (j != w.slots[i]) backend.free(live[j]);
      }
      return ptr.error();
    }
    slot = *ptr;
    if (touch) {
      backend.enqueue(queue, accel::Memset{slot, 0xa5, w.sizes[i]}, accel::Completion{});
      backend.synchronize_all();
    }
  }
  const double seconds = watch.elapsed_s();
  for (accel::DevicePtr ptr : live) backend.free(ptr);
  return static_cast<double>(w.sizes.size()) / seconds;
}

struct Rates {
  double clear = 0.0;
  double noclear = 0.0;
  double ratio = 0.0;
};

}  // namespace

Status run_alloc(const AllocOptions& flags) {
  if (flags.min_bytes == 0 || flags.min_bytes > flags.max_bytes) {
    return Error(ErrorCode::kInvalidArgument, "--min-bytes must be in [1, --max-bytes]");
  }
  // Room for every live buffer at the largest size, and some to spare.
  const std::uint64_t capacity =
      std::max<std::uint64_t>(std::uint64_t{1} << 30, 2 * flags.max_bytes * flags.live);
  auto make = [&](bool clear) {
    return accel::make_cpu_backend(accel::CpuBackendOptions{.memory_bytes = capacity,
                                                            .workers = 1,
                                                            .high_priority_workers = 0,
                                                            .worker_nice = 0,
                                                            .clear_memory = clear});
  };
  std::unique_ptr<accel::Backend> clear = make(true);
  std::unique_ptr<accel::Backend> noclear = make(false);
  MALV_ASSIGN_OR_RETURN(accel::QueueId clear_queue,
                        clear->create_queue(accel::QueuePriority::kNormal));
  MALV_ASSIGN_OR_RETURN(accel::QueueId noclear_queue,
                        noclear->create_queue(accel::QueuePriority::kNormal));

  auto measure = [&](int cycles, bool touch) -> Result<Rates> {
    const Workload w = make_workload(flags, cycles);
    std::vector<double> with, without, ratios;
    for (int r = 0; r < flags.repeats; ++r) {
      if (!flags.json) {
        fmt::print(stderr, "  {} round {}/{}\n", touch ? "touch" : "alloc", r + 1, flags.repeats);
      }
      MALV_ASSIGN_OR_RETURN(double a, run_cycles(*clear, clear_queue, w, touch));
      MALV_ASSIGN_OR_RETURN(double b, run_cycles(*noclear, noclear_queue, w, touch));
      with.push_back(a);
      without.push_back(b);
      ratios.push_back(b / a);
    }
    return Rates{harness::median(with), harness::median(without), harness::median(ratios)};
  };
  MALV_ASSIGN_OR_RETURN(Rates alloc, measure(flags.cycles, false));
  MALV_ASSIGN_OR_RETURN(Rates touch, measure(flags.touch_cycles, true));
  clear->destroy_queue(clear_queue);
  noclear->destroy_queue(noclear_queue);

  const std::string sizes =
      fmt::format("{} live buffers of {}..{} bytes", flags.live, flags.min_bytes, flags.max_bytes);
  harness::print_figures(
      "malv bench alloc (cpu backend: allocation with and without clearing freed memory)",
      {
          {"allocs_per_s_clear", alloc.clear, "1/s", "allocate + free, memory cleared"},
          {"allocs_per_s_noclear", alloc.noclear, "1/s", "allocate + free, not cleared"},
          {"ratio", alloc.ratio, "x", "noclear / clear, median of rounds; goal <= 2"},
          {"touch_allocs_per_s_clear", touch.clear, "1/s",
           "allocate + write it all + free, cleared"},
          {"touch_allocs_per_s_noclear", touch.noclear, "1/s",
           "allocate + write it all + free, not cleared"},
          {"touch_ratio", touch.ratio, "x", "noclear / clear, median of rounds; goal <= 2"},
      },
      flags.json,
      {{"cycles", flags.cycles},
       {"touch_cycles", flags.touch_cycles},
       {"repeats", flags.repeats},
       {"workload", sizes},
       {"device", clear->info().name}});
  return ok_status();
}

}  // namespace malv::bench
