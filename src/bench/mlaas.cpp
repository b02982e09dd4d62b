// `malv bench mlaas`: what the MLaaS subsystem costs and what it buys, in one
// run, in process, on the CPU backend (--backend picks another).
//
// Figures:
//  * decide_ns: time per observation of PolicyRunner::decide (guardrails
//    included) for each built-in gpu_sched policy and for lru, batches of 64.
//  * inference throughput of a 31-256-2 MLP (the LinnOS shape) and a
//    15-10-1 MLP (the MLLB shape) at batch 1..4096, inline on the CPU and
//    through the accelerator queue, and the crossover batch between them
//    (InferenceService's rule: the smallest batch from which the accelerator
//    wins at every larger measured batch).
//  * concurrent callers (mlaas_callers.h): 1, 8, 64 and 512 threads asking
//    for one row at a time, batched across callers and not; the crossover
//    the service's own calibration measures per shape.
//  * hot_swap_us: while a VM keeps the vGPU scheduler busy, the time from
//    load_module() of a module not loaded yet to the first decision its
//    policy makes for that VM (load + select + wait for the next decision).
//  * learned-sjf against fifo on a mixed workload of small and large work
//    items (gemm 64^3 / 512^3, memset 4 KiB / 16 MiB) from four VMs,
//    arriving in bursts on a one-slot device: mean and max completion time
//    (enqueue to completion callback), and their ratios. Each policy first
//    runs unmeasured warm-up bursts (learned-sjf keeps learning from their
//    feedback; it starts from its shipped model). Since the scheduler is
//    two-level, each VM's policy orders only its own streams' heads here.
//  * learned-sjf from a cold start over fifo, one VM with several streams
//    (mlaas_sjf.h): learned_sjf_cold_over_fifo.
//
// The hot swap runs first: libmalv_sched_basic.so is the one module of
// policy_dir() held back at start-up, so its load is a real first dlopen;
// afterwards every module of the directory is loaded for the other phases.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "accel/kernel_ids.h"
#include "base/clock.h"
#include "base/log.h"
#include "bench/bench.h"
#include "bench/mlaas_callers.h"
#include "bench/mlaas_prefetch.h"
#include "bench/mlaas_sjf.h"
#include "bench/models.h"
#include "harness/report.h"
#include "mlaas/async_inference.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "vgpu/mlaas_gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::bench {
namespace {

using mlaas::PolicyClass;

constexpr std::string_view kSwapModule = "malv_sched_basic";
constexpr std::size_t kDecideBatch = 64;

// The MLaaS host side, as `malv serve` assembles it. Members are destroyed
// in reverse order, so nothing outlives what it points at.
struct MlaasHost {
  std::unique_ptr<accel::Backend> device;
  mlaas::FeatureRegistry features;
  std::unique_ptr<mlaas::InferenceService> inference;
  std::unique_ptr<mlaas::HostServices> services;
  std::unique_ptr<mlaas::PolicyRegistry> registry;
  std::unique_ptr<mlaas::PolicyRunner> runner;
  std::unique_ptr<mlaas::AsyncInference> enqueue_inference;  // scores at enqueue (ABI 6)
  std::unique_ptr<vgpu::MlaasGpuSchedPolicies> sched_policies;
};

// Loads every module of policy_dir() except the one the hot swap loads.
Result<std::unique_ptr<MlaasHost>> start_host(const std::string& backend) {
  auto host = std::make_unique<MlaasHost>();
  MALV_ASSIGN_OR_RETURN(host->device,
                        accel::make_backend(backend, {.memory_bytes = 1ull << 30, .workers = 0}));
  host->inference = std::make_unique<mlaas::InferenceService>(
      host->device.get(), mlaas::InferenceOptions{.calibrate = false});
  host->services = std::make_unique<mlaas::HostServices>(host->features, host->inference.get());
  host->registry = std::make_unique<mlaas::PolicyRegistry>(host->services->table());
  host->runner = std::make_unique<mlaas::PolicyRunner>(*host->registry);
  MALV_ASSIGN_OR_RETURN(host->enqueue_inference, mlaas::AsyncInference::create(
                                                     *host->inference, vgpu::kEnqueueScoringQueue));
  host->sched_policies = std::make_unique<vgpu::MlaasGpuSchedPolicies>(
      *host->runner, host->inference.get(), host->enqueue_inference.get());

  const std::string dir = mlaas::policy_dir();
  const std::filesystem::path held_back = mlaas::policy_module_path(kSwapModule);
  std::error_code ec;
  if (!std::filesystem::exists(held_back, ec)) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("{} not found (build malv_policies or set MALV_POLICY_DIR)",
                             held_back.string()));
  }
  std::vector<std::filesystem::path> modules;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".so" && entry.path().filename() != held_back.filename()) {
      modules.push_back(entry.path());
    }
  }
  if (ec) return Error(ErrorCode::kNotFound, fmt::format("listing {}: {}", dir, ec.message()));
  std::sort(modules.begin(), modules.end());
  for (const auto& path : modules) {
    MALV_TRY_CONTEXT(host->registry->load_module(path.string()), "loading " + path.string());
  }
  return host;
}

// ------------------------------------------------------------- hot swap --

// Keeps `outstanding` small memsets queued on one VM stream until stopped.
class BackgroundLoad {
 public:
  static Result<std::unique_ptr<BackgroundLoad>> start(vgpu::VmBackend& vm) {
    auto load = std::unique_ptr<BackgroundLoad>(new BackgroundLoad(vm));
    MALV_ASSIGN_OR_RETURN(load->buffer_, vm.allocate(kBytes));
    MALV_ASSIGN_OR_RETURN(load->stream_, vm.create_queue(accel::QueuePriority::kNormal));
    load->thread_ = std::thread([l = load.get()] { l->run(); });
    return load;
  }
  ~BackgroundLoad() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (stream_.valid()) vm_.destroy_queue(stream_);  // drains it
    if (buffer_.value != 0) vm_.free(buffer_);
  }
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

 private:
  static constexpr std::size_t kBytes = 4096;
  static constexpr int kMaxOutstanding = 32;

  explicit BackgroundLoad(vgpu::VmBackend& vm) : vm_(vm) {}
  static void on_done(void* context, std::uint64_t, ErrorCode) {
    static_cast<BackgroundLoad*>(context)->outstanding_.fetch_sub(1);
  }
  void run() {
    while (!stop_.load()) {
      if (outstanding_.load() >= kMaxOutstanding) {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
        continue;
      }
      outstanding_.fetch_add(1);
      vm_.enqueue(stream_, accel::Memset{buffer_, 0, kBytes}, {&on_done, this, 0});
    }
  }

  vgpu::VmBackend& vm_;
  accel::DevicePtr buffer_{};
  accel::QueueId stream_{};
  std::atomic<bool> stop_{false};
  std::atomic<int> outstanding_{0};
  std::thread thread_;
};

struct SwapFigures {
  std::vector<double> total_us;  // load_module() start to first decision
  std::vector<double> load_us;   // load_module() alone
};

Result<SwapFigures> run_hot_swap(MlaasHost& host, const MlaasOptions& flags) {
  vgpu::VgpuService vgpu(*host.device, *host.sched_policies);
  const std::string vm_name = "bench-swap";
  MALV_TRY(vgpu.vms().create({.name = vm_name, .token = "t"}));
  MALV_ASSIGN_OR_RETURN(auto view, vgpu.open_session(vm_name, "t"));
  MALV_ASSIGN_OR_RETURN(auto load, BackgroundLoad::start(*view));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the load build up

  const std::string path = mlaas::policy_module_path(kSwapModule);
  const std::string policy = fmt::format("{}/learned-sjf", kSwapModule);
  SwapFigures figures;
  for (int rep = 0; rep < flags.swaps; ++rep) {
    if (rep > 0) {
      host.registry->select_baseline(vm_name, PolicyClass::kGpuSched);
      MALV_TRY(host.registry->unload_module(kSwapModule, mlaas::UnloadMode::kForce));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const std::uint64_t before = host.runner->counters(vm_name, kSwapModule).decisions;
    Stopwatch watch;
    MALV_TRY_CONTEXT(host.registry->load_module(path), "loading " + path);
    figures.load_us.push_back(watch.elapsed_us());
    MALV_TRY(host.registry->select(vm_name, PolicyClass::kGpuSched, policy));
    const Deadline deadline = Deadline::after(std::chrono::seconds(5));
    while (host.runner->counters(vm_name, kSwapModule).decisions == before) {
      if (deadline.expired()) {
        return Error(ErrorCode::kDeadlineExceeded, "the swapped-in policy never decided");
      }
      std::this_thread::yield();
    }
    figures.total_us.push_back(watch.elapsed_us());
  }
  host.registry->remove_vm(vm_name);
  return figures;
}

// ---------------------------------------------------------- decide cost --

struct DecideCase {
  const char* key;
  const char* policy;
  PolicyClass cls;
};

constexpr DecideCase kDecideCases[] = {
    {"decide_ns_builtin_fifo", "builtin/fifo", PolicyClass::kGpuSched},
    {"decide_ns_fifo", "malv_sched_basic/fifo", PolicyClass::kGpuSched},
    {"decide_ns_fair_share", "malv_sched_basic/fair-share", PolicyClass::kGpuSched},
    {"decide_ns_learned_sjf", "malv_sched_basic/learned-sjf", PolicyClass::kGpuSched},
    {"decide_ns_builtin_lru", "builtin/lru", PolicyClass::kMemory},
    {"decide_ns_lru", "malv_memory_basic/lru", PolicyClass::kMemory},
};

struct DecideFigures {
  std::vector<double> ns_per_observation;  // by kDecideCases index
  std::vector<std::uint64_t> fallbacks;    // by kDecideCases index
  std::vector<std::string> notes;          // by kDecideCases index: why it fell back
};

Result<DecideFigures> run_decide(MlaasHost& host, const MlaasOptions& flags) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const std::int64_t now = mono_now_ns();
  std::vector<malv_gpu_sched_observation> gpu(kDecideBatch);
  std::vector<malv_memory_observation> memory(kDecideBatch);
  for (std::size_t i = 0; i < kDecideBatch; ++i) {
    const auto age = static_cast<std::int64_t>(unit(rng) * 1e7);
    gpu[i] = {.vm_id = 1 + i % 4,
              .queue_id = 1 + i,
              .kernel_id = static_cast<std::uint32_t>(1 + i % accel::kBuiltinKernelCount),
              .priority_class = static_cast<std::uint32_t>(i % 2),
              .vm_weight = 1.0 + static_cast<double>(i % 3),
              .est_flops = unit(rng) * 1e9,
              .est_bytes = unit(rng) * 1e7,
              .enqueue_time_ns = now - age,
              .waited_ns = age,
              .vm_busy_ns = static_cast<std::int64_t>(unit(rng) * 1e9)};
    memory[i] = {.vm_id = 1,
                 .buffer_id = 1 + i,
                 .bytes = 4096ull << (i % 12),
                 .last_use_ns = now - age,
                 .age_ns = age,
                 .access_count = i};
  }
  std::vector<std::byte> decisions(kDecideBatch * sizeof(malv_gpu_sched_decision));

  const std::string vm = "bench-decide";
  DecideFigures figures;
  for (const DecideCase& c : kDecideCases) {
    MALV_TRY_CONTEXT(host.registry->select(vm, c.cls, c.policy), c.policy);
    const void* observations = c.cls == PolicyClass::kGpuSched
                                   ? static_cast<const void*>(gpu.data())
                                   : static_cast<const void*>(memory.data());
    std::uint64_t fallbacks = 0;
    std::set<std::string> kinds;
    auto decide_once = [&] {
      mlaas::DecisionReport report =
          host.runner->decide(vm, c.cls, observations, kDecideBatch, decisions.data());
      if (report.source == mlaas::DecisionSource::kFallback) {
        ++fallbacks;
        kinds.emplace(mlaas::failure_kind_name(report.failure));
      }
    };
    for (int i = 0; i < 200; ++i) decide_once();  // warm up
    std::vector<double> runs;
    for (int r = 0; r < flags.decide_runs; ++r) {
      Stopwatch watch;
      for (int i = 0; i < flags.decide_batches; ++i) decide_once();
      runs.push_back(static_cast<double>(watch.elapsed_ns()) /
                     (static_cast<double>(flags.decide_batches) * kDecideBatch));
    }
    figures.ns_per_observation.push_back(harness::median(runs));
    figures.fallbacks.push_back(fallbacks);
    std::string note = fmt::format("{}", fmt::join(kinds, "/"));
    // Five failures in a row switch the policy off; later batches then
    // measured the baseline, so the figure is not the policy's.
    if (host.registry->selected(vm, c.cls) != c.policy) note += ", switched off: figure invalid";
    figures.notes.push_back(std::move(note));
    host.registry->select_baseline(vm, c.cls);
  }
  host.registry->remove_vm(vm);
  return figures;
}

// ------------------------------------------------------------ inference --

constexpr std::size_t kInferBatches[] = {1, 8, 64, 512, 4096};

struct InferPoint {
  std::size_t batch = 0;
  double cpu_per_s = 0;
  double accelerator_per_s = 0;
};

// Inferences per second on one path: median of three runs of at least
// min_ms each.
Result<double> inferences_per_s(mlaas::InferenceService& inference, mlaas::ModelId model,
                                const std::vector<float>& in, std::size_t batch,
                                std::vector<float>& out, mlaas::InferencePath path, double min_ms) {
  MALV_TRY(inference.infer(model, in.data(), batch, out.data(), path));  // warm up
  std::vector<double> rates;
  for (int r = 0; r < 3; ++r) {
    Stopwatch watch;
    std::uint64_t calls = 0;
    do {
      MALV_TRY(inference.infer(model, in.data(), batch, out.data(), path));
      ++calls;
    } while (watch.elapsed_us() < min_ms * 1e3 || calls < 2);
    rates.push_back(static_cast<double>(calls * batch) / watch.elapsed_s());
  }
  return harness::median(rates);
}

Result<std::vector<InferPoint>> run_inference(MlaasHost& host, const ModelCase& shape,
                                              const MlaasOptions& flags) {
  std::mt19937 rng(11);
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp mlp, random_mlp(shape, rng));
  MALV_ASSIGN_OR_RETURN(mlaas::ModelId model, host.inference->add(std::move(mlp)));
  MALV_ASSIGN_OR_RETURN(mlaas::ModelInfo info, host.inference->info(model));
  if (!info.accelerator_capable) {
    return Error(ErrorCode::kInternal, fmt::format("{} cannot run on the accelerator", shape.what));
  }
  std::uniform_real_distribution<float> x(-1.0f, 1.0f);
  std::vector<InferPoint> points;
  for (std::size_t batch : kInferBatches) {
    std::vector<float> in(batch * shape.in);
    for (float& v : in) v = x(rng);
    std::vector<float> out(batch * shape.out);
    InferPoint p{.batch = batch};
    MALV_ASSIGN_OR_RETURN(p.cpu_per_s,
                          inferences_per_s(*host.inference, model, in, batch, out,
                                           mlaas::InferencePath::kCpu, flags.infer_min_ms));
    MALV_ASSIGN_OR_RETURN(p.accelerator_per_s,
                          inferences_per_s(*host.inference, model, in, batch, out,
                                           mlaas::InferencePath::kAccelerator, flags.infer_min_ms));
    points.push_back(p);
  }
  host.inference->release(model);
  return points;
}

// The smallest measured batch from which the accelerator wins at every
// larger measured batch (InferenceService's calibration rule).
std::optional<std::size_t> crossover(const std::vector<InferPoint>& points) {
  std::optional<std::size_t> from;
  for (auto it = points.rbegin(); it != points.rend() && it->accelerator_per_s > it->cpu_per_s;
       ++it) {
    from = it->batch;
  }
  return from;
}

// ------------------------------------------------------- mixed workload --

// Enqueue and completion times of every work item of a phase.
class CompletionLog {
 public:
  explicit CompletionLog(std::size_t capacity) : enqueued_(capacity), completed_(capacity) {}

  // Stamps item `index` as enqueued now; pass the result to enqueue().
  accel::Completion stamp(std::size_t index) {
    enqueued_[index] = mono_now_ns();
    return {&CompletionLog::on_done, this, index};
  }
  [[nodiscard]] Status wait_for(std::size_t count) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return done_ >= count; })) {
      return Error(ErrorCode::kDeadlineExceeded, "work items did not complete within 30 s");
    }
    if (errors_ != 0) return Error(ErrorCode::kInternal, "a work item failed");
    return ok_status();
  }
  // Completion times in ms of items [first, last).
  std::vector<double> completion_ms(std::size_t first, std::size_t last) const {
    std::vector<double> ms;
    for (std::size_t i = first; i < last; ++i) {
      ms.push_back(static_cast<double>(completed_[i] - enqueued_[i]) / 1e6);
    }
    return ms;
  }

 private:
  static void on_done(void* context, std::uint64_t index, ErrorCode status) {
    auto* log = static_cast<CompletionLog*>(context);
    // Notify under the lock: the waiter may destroy the log as soon as it
    // sees the last item done, which it cannot before we unlock.
    std::lock_guard lock(log->mu_);
    log->completed_[index] = mono_now_ns();
    ++log->done_;
    if (status != ErrorCode::kOk) ++log->errors_;
    log->cv_.notify_all();
  }

  std::vector<std::int64_t> enqueued_;
  std::vector<std::int64_t> completed_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t done_ = 0;
  std::size_t errors_ = 0;
};

// One VM of the mixed workload: a stream for its small items and one for
// its large items (the scheduler never reorders within a stream).
struct MixVm {
  std::unique_ptr<vgpu::VmBackend> view;
  accel::QueueId small_stream{};
  accel::QueueId large_stream{};
  std::vector<accel::DevicePtr> buffers;
  std::vector<accel::Op> small_ops;
  std::vector<accel::Op> large_ops;
};

constexpr std::int64_t kSmallGemm = 64;
constexpr std::int64_t kLargeGemm = 512;
constexpr std::size_t kSmallMemset = 4096;
constexpr std::size_t kLargeMemset = 16u << 20;
constexpr int kMixVms = 4;

accel::KernelArgValue buffer_arg(accel::DevicePtr ptr, std::uint64_t extent) {
  return {.kind = accel::ArgKind::kBuffer, .ptr = ptr, .extent = extent};
}
accel::KernelArgValue i64_arg(std::int64_t value) {
  return {.kind = accel::ArgKind::kI64, .i64 = value};
}
accel::KernelArgValue f32_arg(float value) { return {.kind = accel::ArgKind::kF32, .f32 = value}; }

accel::Launch gemm(accel::DevicePtr a, accel::DevicePtr b, accel::DevicePtr c, std::int64_t n,
                   std::uint64_t extent) {
  return accel::Launch{
      accel::kernel_id(accel::BuiltinKernel::kGemm),
      {buffer_arg(a, extent), buffer_arg(b, extent), buffer_arg(c, extent), i64_arg(n), i64_arg(n),
       i64_arg(n), i64_arg(0), i64_arg(0), f32_arg(1.0f), f32_arg(0.0f)},
      10};
}

Result<MixVm> open_mix_vm(vgpu::VgpuService& vgpu, const std::string& name) {
  MixVm vm;
  MALV_TRY(vgpu.vms().create({.name = name, .token = "t"}));
  MALV_ASSIGN_OR_RETURN(vm.view, vgpu.open_session(name, "t"));
  MALV_ASSIGN_OR_RETURN(vm.small_stream, vm.view->create_queue(accel::QueuePriority::kNormal));
  MALV_ASSIGN_OR_RETURN(vm.large_stream, vm.view->create_queue(accel::QueuePriority::kNormal));
  const std::uint64_t matrix = kLargeGemm * kLargeGemm * sizeof(float);
  for (std::uint64_t bytes : {matrix, matrix, matrix, std::uint64_t{kLargeMemset}}) {
    MALV_ASSIGN_OR_RETURN(accel::DevicePtr p, vm.view->allocate(bytes));
    vm.buffers.push_back(p);
  }
  const auto& b = vm.buffers;
  accel::Launch small = gemm(b[0], b[1], b[2], kSmallGemm, matrix);
  accel::Launch large = gemm(b[0], b[1], b[2], kLargeGemm, matrix);
  for (const accel::Launch& l : {small, large}) {
    MALV_TRY(accel::validate_launch(*accel::find_kernel(l.kernel), {l.args.data(), l.argc}));
  }
  // Per burst: three small gemms and three small memsets; one large of each.
  for (int i = 0; i < 3; ++i) {
    vm.small_ops.push_back(small);
    vm.small_ops.push_back(accel::Memset{b[3], 1, kSmallMemset});
  }
  vm.large_ops.push_back(large);
  vm.large_ops.push_back(accel::Memset{b[3], 2, kLargeMemset});
  return vm;
}

void close_mix_vm(MixVm& vm) {
  vm.view->destroy_queue(vm.small_stream);
  vm.view->destroy_queue(vm.large_stream);
  for (accel::DevicePtr p : vm.buffers) vm.view->free(p);
}

struct MixFigures {
  double mean_ms = 0;
  double small_mean_ms = 0;
  double large_mean_ms = 0;
  double max_ms = 0;
  std::uint64_t fallbacks = 0;  // decisions the baseline answered instead
};

// Runs warm-up then measured bursts with every mix VM under `policy`. Each
// burst enqueues every VM's items in one shuffled order (the same for every
// policy) and waits until all have completed.
Result<MixFigures> run_mix_phase(MlaasHost& host, std::vector<MixVm>& vms,
                                 const std::vector<std::string>& names, const std::string& policy,
                                 const MlaasOptions& flags) {
  auto fallbacks = [&] {
    std::uint64_t n = 0;
    for (const std::string& name : names) n += host.runner->counters(name, kSwapModule).fallbacks;
    return n;
  };
  for (const std::string& name : names) {
    MALV_TRY_CONTEXT(host.registry->select(name, PolicyClass::kGpuSched, policy), policy);
  }
  const std::uint64_t fallbacks_before = fallbacks();
  struct Work {
    MixVm* vm;
    bool large;
    const accel::Op* op;
  };
  std::vector<Work> burst;
  for (MixVm& vm : vms) {
    for (const accel::Op& op : vm.small_ops) burst.push_back({&vm, false, &op});
    for (const accel::Op& op : vm.large_ops) burst.push_back({&vm, true, &op});
  }
  const int total_bursts = flags.warmup_bursts + flags.bursts;
  CompletionLog log(burst.size() * static_cast<std::size_t>(total_bursts));
  std::vector<bool> large;
  std::mt19937 rng(3);
  std::size_t next = 0;
  for (int b = 0; b < total_bursts; ++b) {
    std::shuffle(burst.begin(), burst.end(), rng);
    for (const Work& w : burst) {
      accel::QueueId stream = w.large ? w.vm->large_stream : w.vm->small_stream;
      large.push_back(w.large);
      w.vm->view->enqueue(stream, *w.op, log.stamp(next++));
    }
    MALV_TRY(log.wait_for(next));
  }
  const std::size_t first = burst.size() * static_cast<std::size_t>(flags.warmup_bursts);
  std::vector<double> ms = log.completion_ms(first, next);
  MixFigures figures;
  double sums[2] = {0, 0};
  std::size_t counts[2] = {0, 0};
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const int kind = large[first + i] ? 1 : 0;
    sums[kind] += ms[i];
    ++counts[kind];
    figures.max_ms = std::max(figures.max_ms, ms[i]);
  }
  figures.mean_ms = (sums[0] + sums[1]) / static_cast<double>(std::max<std::size_t>(1, ms.size()));
  figures.small_mean_ms = sums[0] / static_cast<double>(std::max<std::size_t>(1, counts[0]));
  figures.large_mean_ms = sums[1] / static_cast<double>(std::max<std::size_t>(1, counts[1]));
  figures.fallbacks = fallbacks() - fallbacks_before;
  return figures;
}

struct MixResult {
  MixFigures fifo;
  MixFigures learned;
};

Result<MixResult> run_mix(MlaasHost& host, const MlaasOptions& flags) {
  // One slot: one batch on the device at a time, so the order is the policy's.
  vgpu::VgpuService vgpu(*host.device, *host.sched_policies, {.device_slots = 1});
  std::vector<MixVm> vms;
  std::vector<std::string> names;
  for (int i = 0; i < kMixVms; ++i) {
    names.push_back(fmt::format("bench-mix-{}", i));
    MALV_ASSIGN_OR_RETURN(MixVm vm, open_mix_vm(vgpu, names.back()));
    vms.push_back(std::move(vm));
  }
  Result<MixFigures> fifo =
      run_mix_phase(host, vms, names, fmt::format("{}/fifo", kSwapModule), flags);
  Result<MixFigures> learned =
      fifo.ok() ? run_mix_phase(host, vms, names, fmt::format("{}/learned-sjf", kSwapModule), flags)
                : Result<MixFigures>(fifo.error());
  for (MixVm& vm : vms) close_mix_vm(vm);
  MALV_TRY(fifo);
  MALV_TRY(learned);
  for (const std::string& name : names) host.registry->remove_vm(name);
  return MixResult{.fifo = *fifo, .learned = *learned};
}

// ---------------------------------------------------------------- report --

}  // namespace

Status run_mlaas(const MlaasOptions& requested) {
  MlaasOptions flags = requested;
  if (flags.quick) {
    flags.decide_batches = 50;
    flags.decide_runs = 2;
    flags.infer_min_ms = 0.5;
    flags.swaps = 2;
    flags.warmup_bursts = 1;
    flags.bursts = 1;
    flags.caller_ms = 5;
    flags.caller_rounds = 1;
    flags.prefetch_steps = 40;
    flags.prefetch_rounds = 1;
    flags.sjf_bursts = 2;
    flags.sjf_rounds = 1;
  }
  // Module loads and policy switches log at info; keep stderr to progress
  // lines and warnings (a policy switched off) unless MALV_LOG says otherwise.
  if (std::getenv("MALV_LOG") == nullptr) log::set_level(log::Level::kWarn);
  fmt::print(stderr, "bench mlaas: loading modules from {} ...\n", mlaas::policy_dir());
  MALV_ASSIGN_OR_RETURN(auto host, start_host(flags.backend));
  const accel::DeviceInfo info = host->device->info();
  nlohmann::json extra = {{"backend", info.backend}, {"device", info.name}, {"quick", flags.quick}};

  if (flags.sjf_only) {
    MALV_ASSIGN_OR_RETURN(SjfPhase sjf, run_sjf_phase(flags));
    std::vector<harness::Figure> figures;
    add_sjf_figures(sjf, figures, extra);
    harness::print_figures("malv bench mlaas (learned-sjf)", figures, flags.json, extra);
    return ok_status();
  }
  if (flags.prefetch_only) {
    MALV_ASSIGN_OR_RETURN(PrefetchPhase prefetch, run_prefetch_phase(flags));
    std::vector<harness::Figure> figures;
    add_prefetch_figures(prefetch, figures, extra);
    harness::print_figures("malv bench mlaas (prefetch)", figures, flags.json, extra);
    return ok_status();
  }
  if (flags.callers_only) {
    MALV_ASSIGN_OR_RETURN(auto callers, run_concurrent_callers(*host->device, flags));
    std::vector<harness::Figure> figures;
    add_caller_figures(callers, figures, extra);
    harness::print_figures("malv bench mlaas (concurrent callers)", figures, flags.json, extra);
    return ok_status();
  }

  fmt::print(stderr, "bench mlaas: hot swap of {} under load ({}x) ...\n", kSwapModule,
             flags.swaps);
  MALV_ASSIGN_OR_RETURN(SwapFigures swap, run_hot_swap(*host, flags));

  fmt::print(stderr, "bench mlaas: decide cost per policy ...\n");
  MALV_ASSIGN_OR_RETURN(DecideFigures decide, run_decide(*host, flags));

  std::vector<std::vector<InferPoint>> inference;
  for (const ModelCase& shape : kModelCases) {
    fmt::print(stderr, "bench mlaas: inference {} ...\n", shape.what);
    MALV_ASSIGN_OR_RETURN(auto points, run_inference(*host, shape, flags));
    inference.push_back(std::move(points));
  }

  MALV_ASSIGN_OR_RETURN(auto callers, run_concurrent_callers(*host->device, flags));

  fmt::print(stderr, "bench mlaas: mixed workload, fifo vs learned-sjf ({} + {} bursts each) ...\n",
             flags.warmup_bursts, flags.bursts);
  MALV_ASSIGN_OR_RETURN(MixResult mix, run_mix(*host, flags));
  MALV_ASSIGN_OR_RETURN(SjfPhase sjf, run_sjf_phase(flags));
  MALV_ASSIGN_OR_RETURN(PrefetchPhase prefetch, run_prefetch_phase(flags));
  fmt::print(stderr, "bench mlaas: three VMs on fifo, fair-share and learned-sjf ...\n");
  MALV_ASSIGN_OR_RETURN(MixedPolicyFigures composed,
                        measure_mixed_policies({.phase_seconds = flags.quick ? 3.0 : 8.0}));

  std::vector<harness::Figure> figures;
  const std::size_t n_cases = std::size(kDecideCases);
  std::uint64_t decide_fallbacks = 0;
  for (std::size_t i = 0; i < n_cases; ++i) {
    std::string what =
        fmt::format("{} per observation, batches of {}", kDecideCases[i].policy, kDecideBatch);
    if (decide.fallbacks[i] != 0) {
      what += fmt::format(" ({} fallbacks: {})", decide.fallbacks[i], decide.notes[i]);
    }
    figures.push_back({kDecideCases[i].key, decide.ns_per_observation[i], "ns", what});
    decide_fallbacks += decide.fallbacks[i];
  }
  figures.push_back({"fifo_module_over_builtin",
                     decide.ns_per_observation[1] / decide.ns_per_observation[0], "x",
                     "cost of the module ABI vs the compiled-in baseline"});
  figures.push_back({"learned_sjf_over_fifo_decide",
                     decide.ns_per_observation[3] / decide.ns_per_observation[1], "x",
                     "cost of the MLP policy vs fifo"});
  figures.push_back({"decide_fallbacks", static_cast<double>(decide_fallbacks), "",
                     "baseline answered instead (a late call: machine load) in those runs"});

  nlohmann::json crossovers = nlohmann::json::object();
  for (std::size_t m = 0; m < std::size(kModelCases); ++m) {
    const ModelCase& shape = kModelCases[m];
    for (const InferPoint& p : inference[m]) {
      figures.push_back({fmt::format("{}_cpu_b{}_per_s", shape.key, p.batch), p.cpu_per_s, "inf/s",
                         fmt::format("{} inline CPU, batch {}", shape.what, p.batch)});
      figures.push_back({fmt::format("{}_accel_b{}_per_s", shape.key, p.batch), p.accelerator_per_s,
                         "inf/s",
                         fmt::format("{} accelerator path, batch {}", shape.what, p.batch)});
      figures.push_back({fmt::format("{}_accel_over_cpu_b{}", shape.key, p.batch),
                         p.accelerator_per_s / p.cpu_per_s, "x", ""});
    }
    std::optional<std::size_t> from = crossover(inference[m]);
    figures.push_back({fmt::format("{}_crossover_batch", shape.key),
                       from ? static_cast<double>(*from) : 0.0, "",
                       from ? "accelerator faster from this batch on"
                            : "none: the accelerator path never won (0)"});
    crossovers[shape.key] = from ? nlohmann::json(*from) : nlohmann::json("none");
  }

  std::vector<double> swap_total = swap.total_us;
  figures.push_back({"hot_swap_us", harness::median(swap.total_us), "us",
                     fmt::format("load module + select + first decision, under load; median of {}",
                                 swap.total_us.size())});
  figures.push_back({"hot_swap_first_us", swap.total_us.front(), "us", "the first (cold) swap"});
  figures.push_back({"hot_swap_max_us", harness::percentile(swap_total, 1.0), "us", ""});
  figures.push_back(
      {"hot_swap_load_us", harness::median(swap.load_us), "us", "load_module() alone, median"});

  figures.push_back({"fifo_mean_completion_ms", mix.fifo.mean_ms, "ms",
                     "mixed bursts, one device slot, every VM on fifo"});
  figures.push_back({"learned_sjf_mean_completion_ms", mix.learned.mean_ms, "ms",
                     "the same bursts, every VM on learned-sjf (after warm-up)"});
  figures.push_back({"learned_sjf_vs_fifo_mean_completion_ratio",
                     mix.learned.mean_ms / mix.fifo.mean_ms, "", "goal < 0.8"});
  figures.push_back({"fifo_max_completion_ms", mix.fifo.max_ms, "ms", ""});
  figures.push_back({"learned_sjf_max_completion_ms", mix.learned.max_ms, "ms",
                     "aging bounds the wait of large items"});
  figures.push_back(
      {"learned_sjf_vs_fifo_max_completion_ratio", mix.learned.max_ms / mix.fifo.max_ms, "", ""});
  figures.push_back({"fifo_small_mean_completion_ms", mix.fifo.small_mean_ms, "ms",
                     "small items: gemm 64^3, memset 4 KiB"});
  figures.push_back({"learned_sjf_small_mean_completion_ms", mix.learned.small_mean_ms, "ms", ""});
  figures.push_back({"fifo_large_mean_completion_ms", mix.fifo.large_mean_ms, "ms",
                     "large items: gemm 512^3, memset 16 MiB"});
  figures.push_back({"learned_sjf_large_mean_completion_ms", mix.learned.large_mean_ms, "ms", ""});
  figures.push_back({"learned_sjf_mix_fallbacks", static_cast<double>(mix.learned.fallbacks), "",
                     "learned-sjf decisions the baseline answered instead"});

  add_caller_figures(callers, figures, extra);
  add_sjf_figures(sjf, figures, extra);
  add_prefetch_figures(prefetch, figures, extra);
  figures.push_back({"mixed_policy_jain", composed.jain, "",
                     "3 VMs (weights 1:1:2) on fifo, fair-share, learned-sjf of their own, host "
                     "level fair-share: Jain of busy time per weight; goal >= 0.98"});
  extra["mixed_policy_shares"] = composed.shares;
  extra["crossover"] = crossovers;
  harness::print_figures("malv bench mlaas", figures, flags.json, extra);
  return ok_status();
}

}  // namespace malv::bench
