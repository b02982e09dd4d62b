// The `malv bench` benchmarks as a library: each measures ours and the named
// baseline in one run and prints a table or, with `json`, one JSON object
// whose keys docs/benchmarks.md quotes. `cli` parses the flags into these
// options and calls the run function; nothing here reads argv.
//
//   bench::IpcOptions options;
//   options.json = true;
//   MALV_TRY(bench::run_ipc(options));  // prints {"unix_roundtrip_us": ...}
//
// The hidden guests of the sharing and soak benchmarks (`malv bench
// sharing-guest`, `soak-guest`) are this same binary started again; their
// entry points are here too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "malv/result.h"
#include "nn/dataset.h"

namespace malv::bench {

// `malv bench ipc`: round trips, launch rate and transfers over the
// channel, against plain sockets and memcpy.
struct IpcOptions {
  bool json = false;
  int roundtrips = 20000;
  int launches = 1'000'000;
  int transfer_mib = 64;
  int repeats = 5;
  std::string backend = "cpu";
};

[[nodiscard]] Status run_ipc(const IpcOptions& options);

// `malv bench mlaas`: a policy decision's cost, the inline vs accelerator
// inference crossover, hot swap, learned-sjf vs fifo.
struct MlaasOptions {
  bool json = false;
  bool quick = false;  // tiny sizes: checks that every phase runs, not timings
  int decide_batches = 2000;
  int decide_runs = 5;
  double infer_min_ms = 15;
  int swaps = 5;
  int warmup_bursts = 200;  // unmeasured, before the mixed workload's bursts
  int bursts = 40;
  std::string backend = "cpu";
  // Concurrent callers of the inference service (mlaas_callers.h).
  double caller_ms = 300;      // per measurement
  int caller_rounds = 3;       // batched and unbatched alternate this many times
  double batch_window_us = 0;  // InferenceOptions::batch_window
  int max_concurrent_runs = 1;
  bool callers_only = false;  // only that phase
  // Prefetch (mlaas_prefetch.h): fixed, adaptive and learned on a training
  // VM whose data step varies.
  int prefetch_steps = 300;         // training steps per run
  int prefetch_rounds = 3;          // runs per policy
  std::uint64_t prefetch_seed = 1;  // the data-step schedule's (round r: seed + r)
  bool prefetch_only = false;       // only that phase
  // learned-sjf cold vs fifo (mlaas_sjf.h): one VM, several streams.
  int sjf_streams = 4;
  int sjf_bursts = 30;  // per run, no warm-up
  int sjf_rounds = 3;   // fifo and learned-sjf alternate
  std::uint64_t sjf_seed = 1;
  bool sjf_only = false;  // only that phase
};

[[nodiscard]] Status run_mlaas(const MlaasOptions& options);

// `malv bench overhead`: training through the vGPU against the same
// training on an in-process backend.
struct OverheadOptions {
  bool json = false;
  std::uint64_t steps = 300;
  unsigned repeats = 8;
  std::string backend = "cpu";
  std::string data_dir = nn::kFashionMnistDir;
};

[[nodiscard]] Status run_overhead(const OverheadOptions& options);

// `malv bench vm`: training in a QEMU guest (over ivshmem) against a
// process guest and native, and the VM's shared-memory round trip.
struct VmOptions {
  bool json = false;
  std::uint64_t steps = 300;
  unsigned repeats = 3;
  unsigned pings = 2000;
  std::string accel = "auto";  // vm-boot.sh's --accel
  std::string image;           // a built guest image; empty: built into a temp directory
  std::string scripts_dir;     // vm-boot.sh's; empty: the repository's scripts/
  std::string data_dir = nn::kFashionMnistDir;
  bool keep = false;  // keep the consoles and logs
};

[[nodiscard]] Status run_vm(const VmOptions& options);

// `malv bench cuda`: the GPU path against the same work on the GPU directly.
struct CudaOptions {
  bool json = false;
  int gemm_dim = 4096;
  int gemm_iterations = 20;
  int transfer_mib = 64;
  int repeats = 5;
};

[[nodiscard]] Status run_cuda(const CudaOptions& options);

// `malv bench alloc`: allocation with clearing (tenant isolation) against
// allocation without.
struct AllocOptions {
  bool json = false;
  int cycles = 20000;
  int touch_cycles = 2000;
  int live = 32;
  int repeats = 5;
  std::uint64_t min_bytes = 4096;
  std::uint64_t max_bytes = 16ull << 20;
  std::uint32_t seed = 15;
};

[[nodiscard]] Status run_alloc(const AllocOptions& options);

// `malv bench sharing`: several VMs on one accelerator, shares and latency
// under each gpu_sched policy, and the cost of a policy switch.
struct SharingOptions {
  bool json = false;
  // 10 s at 200 requests/s: the p99 of a latency phase is then the 20th
  // worst of 2,000 requests rather than the 8th of 800, which one burst of
  // unrelated host activity can set on its own.
  double phase_seconds = 10.0;
  double infer_rate = 200.0;
  int workers = 2;
  int switches = 20;
  std::string backend = "cpu";
};

[[nodiscard]] Status run_sharing(const SharingOptions& options);

// Composition of per-VM policies (issue 20): three batch VMs with weights
// 1:1:2 select three different gpu_sched policies (fifo, fair-share,
// learned-sjf) and run the same GEMM loop under the scheduler's host level
// fair-share. Jain's index of their busy time per unit of weight (1: shared
// exactly by weight); bench sharing and bench mlaas report it as
// mixed_policy_jain. Starts its own host.
struct MixedPolicyFigures {
  double jain = 0;
  std::vector<double> shares;  // of the three VMs' busy time, in weight order 1, 1, 2
  std::vector<std::string> policies;
};
[[nodiscard]] Result<MixedPolicyFigures> measure_mixed_policies(const SharingOptions& options);

// `malv bench soak`: guests come and go (some killed) for a while; nothing
// may leak or go wrong.
struct SoakOptions {
  bool json = false;
  double seconds = 60;
  int guests = 64;
  int concurrency = 12;
  double kill_fraction = 0.2;
  std::uint64_t seed = 1;
  int vms = 4;
  int rounds = 3;
  int sample_ms = 500;
  double warmup_seconds = -1;  // < 0: min(10, seconds / 4)
  double progress_seconds = 5;
  double max_rss_growth_mb = 16;
  int workers = 2;
};

[[nodiscard]] Status run_soak(const SoakOptions& options);

// `malv bench memory`: a training job on an oversubscribed VM at resident
// quotas of 1, 1/1.5, 1/2 and 1/3 of its footprint, under the lru and
// lookahead memory policies, queued and synchronous, against the run where
// everything fits (time) and against Belady's replay of its trace (bytes).
struct MemoryOptions {
  bool json = false;
  bool quick = false;  // tiny sizes: checks that every phase runs, not timings
  std::uint64_t steps = 40;
  unsigned rounds = 3;
  std::string model;        // "": mlp:784-512-512-512-512-512-10 (quick: a smaller one)
  double link_gbps = 12.0;  // the paced host's --spill-link-gbps
  bool prefetch = true;     // false: the hosts run with --no-memory-prefetch
  std::string data_dir = nn::kFashionMnistDir;
};

[[nodiscard]] Status run_memory(const MemoryOptions& options);

// `malv bench cpu`: an inference VM, two training VMs (one loading and
// augmenting its own data on its CPU) and a CPU hog, all real processes on
// the machine's cores, under each cpu_sched policy (bench/cpu.cpp).
struct CpuOptions {
  bool json = false;
  double seconds = 10;  // the measured window per policy
  double warmup_s = 3;  // before it, with every VM running
  std::vector<std::string> policies{"none", "class", "gpu-aware", "mllb"};
  double infer_rate = 100;         // inference requests per second
  unsigned hog_threads = 2;        // busy threads of the hog VM
  unsigned workers = 2;            // the host's CPU backend workers
  unsigned interval_ms = 50;       // the host's --cpu-interval-ms
  std::string mechanism = "auto";  // the host's --cpu-mechanism
  std::string mllb_data;           // MLLB's dump; "": $MALV_MLLB_DATA (none: no MLLB figures)
  int mllb_decisions = 2000;       // timed migration decisions per path
  std::string data_dir = nn::kFashionMnistDir;
};

[[nodiscard]] Status run_cpu(const CpuOptions& options);
// `malv bench cpu-hog` (hidden): the hog VM's process; busy threads until killed.
[[nodiscard]] Status run_cpu_hog(unsigned threads);

// One guest of `malv bench sharing` (bench/sharing_guest.h says how the
// benchmark drives it).
struct SharingGuestSpec {
  std::string socket;
  std::string vm;
  std::string token;
  std::string mode = "gemm";  // gemm | infer | tiny
  double seconds = 4.0;
  double rate = 200.0;  // infer: requests per second
};

[[nodiscard]] Status run_sharing_guest(const SharingGuestSpec& spec);

// One guest of `malv bench soak` (bench/soak_guest.h says what it does).
struct SoakGuestSpec {
  std::string socket;
  std::string vm;
  std::string token;
  std::uint64_t seed = 1;
  std::uint64_t index = 0;  // the guest's number in the run; names its checkpoint
  int rounds = 3;
};

// run_soak_guest's error code when a check found wrong data (kDataLoss);
// `malv bench soak-guest` exits with this status then.
inline constexpr int kSoakGuestWrongResult = 3;

[[nodiscard]] Status run_soak_guest(const SoakGuestSpec& spec);

}  // namespace malv::bench
