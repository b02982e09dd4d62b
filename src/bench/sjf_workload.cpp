// The learned-sjf workload (see sjf_workload.h).
#include "bench/sjf_workload.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <random>

#include "accel/kernel_ids.h"
#include "base/atomic_file.h"
#include "base/clock.h"

namespace malv::bench {
namespace {

constexpr std::int64_t kMaxGemm = 512;
constexpr std::size_t kMaxMemset = 16u << 20;
constexpr std::int64_t kMaxElements = 4 << 20;  // add, relu

// Enqueue and completion times of every item of a run.
class Completions {
 public:
  void reserve(std::size_t n) { items_.reserve(n); }
  accel::Completion stamp(bool long_item) {
    std::lock_guard lock(mu_);
    items_.push_back({mono_now_ns(), 0, long_item});
    return {&Completions::on_done, this, items_.size() - 1};
  }
  [[nodiscard]] Status wait_all() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return done_ == items_.size(); })) {
      return Error(ErrorCode::kDeadlineExceeded, "work items did not complete within 60 s");
    }
    if (errors_ != 0) return Error(ErrorCode::kInternal, "a work item failed");
    return ok_status();
  }
  SjfWorkloadFigures figures() const {
    SjfWorkloadFigures f;
    double sums[2] = {0, 0};
    std::size_t counts[2] = {0, 0};
    for (const Item& item : items_) {
      const double ms = static_cast<double>(item.completed - item.enqueued) / 1e6;
      sums[item.long_item ? 1 : 0] += ms;
      ++counts[item.long_item ? 1 : 0];
      f.max_ms = std::max(f.max_ms, ms);
    }
    f.items = items_.size();
    f.mean_ms = (sums[0] + sums[1]) / static_cast<double>(std::max<std::size_t>(1, f.items));
    f.short_mean_ms = sums[0] / static_cast<double>(std::max<std::size_t>(1, counts[0]));
    f.long_mean_ms = sums[1] / static_cast<double>(std::max<std::size_t>(1, counts[1]));
    return f;
  }

 private:
  struct Item {
    std::int64_t enqueued;
    std::int64_t completed;
    bool long_item;
  };
  static void on_done(void* context, std::uint64_t index, ErrorCode status) {
    auto* self = static_cast<Completions*>(context);
    // Notify under the lock: the waiter may go away as soon as it sees the
    // last item done.
    std::lock_guard lock(self->mu_);
    self->items_[index].completed = mono_now_ns();
    ++self->done_;
    if (status != ErrorCode::kOk) ++self->errors_;
    self->cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Item> items_;  // reserved up front: stamp() never reallocates under a callback
  std::size_t done_ = 0;
  std::size_t errors_ = 0;
};

accel::KernelArgValue buffer_arg(accel::DevicePtr ptr, std::uint64_t extent) {
  return {.kind = accel::ArgKind::kBuffer, .ptr = ptr, .extent = extent};
}
accel::KernelArgValue i64_arg(std::int64_t value) {
  return {.kind = accel::ArgKind::kI64, .i64 = value};
}
accel::KernelArgValue f32_arg(float value) { return {.kind = accel::ArgKind::kF32, .f32 = value}; }

// The VM's buffers: three matrices of kMaxGemm^2 floats and a scratch of
// kMaxMemset bytes (also kMaxElements floats).
struct Buffers {
  accel::DevicePtr a, b, c, scratch;
  static constexpr std::uint64_t kMatrix = kMaxGemm * kMaxGemm * sizeof(float);
};

accel::Op gemm(const Buffers& m, std::int64_t n) {
  const std::uint64_t e = Buffers::kMatrix;
  return accel::Launch{
      accel::kernel_id(accel::BuiltinKernel::kGemm),
      {buffer_arg(m.a, e), buffer_arg(m.b, e), buffer_arg(m.c, e), i64_arg(n), i64_arg(n),
       i64_arg(n), i64_arg(0), i64_arg(0), f32_arg(1.0f), f32_arg(0.0f)},
      10};
}
accel::Op memset_op(const Buffers& m, std::size_t bytes) {
  return accel::Memset{m.scratch, 1, bytes};
}
accel::Op add(const Buffers& m, std::int64_t n) {
  const std::uint64_t e = kMaxMemset;
  return accel::Launch{
      accel::kernel_id(accel::BuiltinKernel::kAdd),
      {buffer_arg(m.scratch, e), buffer_arg(m.scratch, e), buffer_arg(m.scratch, e), i64_arg(n)},
      4};
}
accel::Op relu(const Buffers& m, std::int64_t n) {
  const std::uint64_t e = kMaxMemset;
  return accel::Launch{accel::kernel_id(accel::BuiltinKernel::kRelu),
                       {buffer_arg(m.scratch, e), buffer_arg(m.scratch, e), i64_arg(n)},
                       3};
}

struct Work {
  int stream;
  accel::Op op;
  bool long_item;
};

// One burst's items, in the order they are enqueued.
std::vector<Work> make_burst(const Buffers& m, const SjfWorkloadOptions& o, std::mt19937_64& rng) {
  std::vector<Work> burst;
  if (o.mix == SjfMix::kBench) {
    const int long_stream = static_cast<int>(rng() % static_cast<std::uint64_t>(o.streams));
    for (int s = 0; s < o.streams; ++s) {
      if (s == long_stream) {
        burst.push_back({s, gemm(m, kMaxGemm), true});
        burst.push_back({s, memset_op(m, kMaxMemset), true});
        continue;
      }
      for (int i = 0; i < 3; ++i) {
        burst.push_back({s, gemm(m, 64), false});
        burst.push_back({s, memset_op(m, 4096), false});
      }
    }
  } else {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    auto log_uniform = [&](double lo, double hi) {
      return std::exp(std::log(lo) + unit(rng) * (std::log(hi) - std::log(lo)));
    };
    for (int s = 0; s < o.streams; ++s) {
      const int items = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < items; ++i) {
        switch (rng() % 4) {
          case 0: {
            const auto n = static_cast<std::int64_t>(log_uniform(16, kMaxGemm + 0.99));
            burst.push_back({s, gemm(m, n), n >= 256});
            break;
          }
          case 1: {
            const auto bytes = static_cast<std::size_t>(log_uniform(1024, kMaxMemset + 0.99));
            burst.push_back({s, memset_op(m, bytes), bytes >= (1u << 20)});
            break;
          }
          case 2: {
            const auto n = static_cast<std::int64_t>(log_uniform(1024, kMaxElements / 3 + 0.99));
            burst.push_back({s, add(m, n), n >= (1 << 18)});
            break;
          }
          default: {
            const auto n = static_cast<std::int64_t>(log_uniform(1024, kMaxElements + 0.99));
            burst.push_back({s, relu(m, n), n >= (1 << 20)});
            break;
          }
        }
      }
    }
  }
  std::shuffle(burst.begin(), burst.end(), rng);  // each stream keeps its own order
  return burst;
}

}  // namespace

Result<SjfWorkloadFigures> run_sjf_workload(vgpu::VgpuService& vgpu, const std::string& vm_name,
                                            const SjfWorkloadOptions& options) {
  if (options.streams < 1 || options.streams > 32 || options.bursts < 1) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("sjf workload: {} streams (1-32), {} bursts (>= 1)", options.streams,
                             options.bursts));
  }
  MALV_TRY(vgpu.vms().create({.name = vm_name, .token = "t"}));
  Result<std::unique_ptr<vgpu::VmBackend>> opened = vgpu.open_session(vm_name, "t");
  if (!opened.ok()) {
    (void)vgpu.vms().remove(vm_name);
    return opened.error();
  }
  std::unique_ptr<vgpu::VmBackend> view = std::move(*opened);
  std::vector<accel::QueueId> streams;
  Buffers m{};
  Completions log;
  Stopwatch watch;
  Status ran = [&]() -> Status {
    for (int s = 0; s < options.streams; ++s) {
      MALV_ASSIGN_OR_RETURN(accel::QueueId q, view->create_queue(accel::QueuePriority::kNormal));
      streams.push_back(q);
    }
    MALV_ASSIGN_OR_RETURN(m.a, view->allocate(Buffers::kMatrix));
    MALV_ASSIGN_OR_RETURN(m.b, view->allocate(Buffers::kMatrix));
    MALV_ASSIGN_OR_RETURN(m.c, view->allocate(Buffers::kMatrix));
    MALV_ASSIGN_OR_RETURN(m.scratch, view->allocate(kMaxMemset));
    std::mt19937_64 rng(options.seed);
    std::vector<std::vector<Work>> bursts;
    std::size_t total = 0;
    for (int b = 0; b < options.bursts; ++b) {
      bursts.push_back(make_burst(m, options, rng));
      total += bursts.back().size();
    }
    for (const auto& burst : bursts) {
      for (const Work& w : burst) {
        if (const auto* launch = std::get_if<accel::Launch>(&w.op)) {
          MALV_TRY(accel::validate_launch(*accel::find_kernel(launch->kernel),
                                          {launch->args.data(), launch->argc}));
        }
      }
    }
    log.reserve(total);
    watch.restart();
    for (const auto& burst : bursts) {
      for (const Work& w : burst) {
        view->enqueue(streams[static_cast<std::size_t>(w.stream)], w.op, log.stamp(w.long_item));
      }
      MALV_TRY(log.wait_all());
    }
    return ok_status();
  }();
  const double seconds = watch.elapsed_s();
  for (accel::QueueId q : streams) view->destroy_queue(q);
  for (accel::DevicePtr p : {m.a, m.b, m.c, m.scratch}) {
    if (p.value != 0) view->free(p);
  }
  view.reset();
  (void)vgpu.vms().remove(vm_name);
  MALV_TRY(ran);
  SjfWorkloadFigures figures = log.figures();
  figures.seconds = seconds;
  return figures;
}

void OutcomeRecorder::feedback(vgpu::Vm& vm, const malv_gpu_sched_outcome& outcome) {
  {
    std::lock_guard lock(mu_);
    outcomes_.push_back(outcome);
  }
  inner_.feedback(vm, outcome);
}

std::vector<malv_gpu_sched_outcome> OutcomeRecorder::take() {
  std::lock_guard lock(mu_);
  std::vector<malv_gpu_sched_outcome> taken;
  taken.swap(outcomes_);
  return taken;
}

Status write_sjf_trace(const std::string& path,
                       const std::vector<malv_gpu_sched_outcome>& outcomes) {
  std::string text = "kernel_id,priority_class,est_flops,est_bytes,queue_id,waited_ns,run_ns\n";
  for (const malv_gpu_sched_outcome& o : outcomes) {
    text += fmt::format("{},{},{},{},{},{},{}\n", o.item.kernel_id, o.item.priority_class,
                        o.item.est_flops, o.item.est_bytes, o.item.queue_id, o.item.waited_ns,
                        o.run_ns);
  }
  return write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

Result<SjfRecordReport> record_sjf_trace(const std::string& backend,
                                         const SjfWorkloadOptions& options,
                                         const std::string& out) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<accel::Backend> device,
                        accel::make_backend(backend, {.memory_bytes = 1ull << 30}));
  vgpu::FifoPolicies fifo;
  OutcomeRecorder recorder(fifo);
  SjfRecordReport report;
  {
    vgpu::VgpuService vgpu(*device, recorder, {.device_slots = 1});
    MALV_ASSIGN_OR_RETURN(report.figures, run_sjf_workload(vgpu, "sjf-record", options));
  }
  const std::vector<malv_gpu_sched_outcome> outcomes = recorder.take();
  report.outcomes = outcomes.size();
  MALV_TRY(write_sjf_trace(out, outcomes));
  return report;
}

}  // namespace malv::bench
