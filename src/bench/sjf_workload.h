// The learned-sjf workload: one VM whose several streams carry a mix of
// short and long work, arriving in bursts, on a vGPU of one device slot (so
// the order the VM's gpu_sched policy picks is the order things run). What
// `malv sjf record` runs to record traces for training and what `malv bench
// mlaas` runs to compare learned-sjf with fifo (mlaas_sjf.h).
//
//   vgpu::VgpuService vgpu(device, policies, {.device_slots = 1});
//   MALV_ASSIGN_OR_RETURN(SjfWorkloadFigures f,
//                         run_sjf_workload(vgpu, "vm", {.mix = SjfMix::kBench}));
//
// Two mixes:
//  * kBench: each burst, one stream (picked at random) carries long work
//    (gemm 512^3, memset 16 MiB) and the others short groups (three gemm
//    64^3 and three memsets of 4 KiB each); every item is enqueued in one
//    shuffled order, then the burst runs to its end.
//  * kVaried: for training: each burst, every stream carries 1-4 items of
//    sizes drawn from wide ranges (gemm n in 16..512, memset 1 KiB..16 MiB,
//    add and relu over 1 Ki..4 Mi floats), so that the model sees sizes in
//    between and around the bench's.
// Both are seeded: the same seed gives the same bursts.
//
// OutcomeRecorder wraps the VM's policies and keeps every outcome the
// scheduler reports (the head item of each batch that ran and the batch's
// measured run time): the rows of a trace. write_sjf_trace() writes them as
// CSV (train/sjf_trace.h reads it).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "malv/mlaas.h"
#include "malv/result.h"
#include "vgpu/gpu_sched_policies.h"
#include "vgpu/vgpu_service.h"

namespace malv::bench {

enum class SjfMix { kBench, kVaried };

struct SjfWorkloadOptions {
  SjfMix mix = SjfMix::kBench;
  int streams = 4;
  int bursts = 20;
  std::uint64_t seed = 1;
};

struct SjfWorkloadFigures {
  std::size_t items = 0;
  double mean_ms = 0;  // enqueue to completion, every item
  double short_mean_ms = 0;
  double long_mean_ms = 0;
  double max_ms = 0;
  double seconds = 0;  // the whole run
};

// Creates the VM `vm_name` (token "t") in `vgpu`, runs the bursts on it and
// deletes it again.
[[nodiscard]] Result<SjfWorkloadFigures> run_sjf_workload(vgpu::VgpuService& vgpu,
                                                          const std::string& vm_name,
                                                          const SjfWorkloadOptions& options);

class OutcomeRecorder final : public vgpu::GpuSchedPolicies {
 public:
  explicit OutcomeRecorder(vgpu::GpuSchedPolicies& inner) : inner_(inner) {}
  void score(vgpu::Vm& vm, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override {
    inner_.score(vm, items, scores);
  }
  void feedback(vgpu::Vm& vm, const malv_gpu_sched_outcome& outcome) override;
  void prepare(vgpu::Vm& vm, std::span<const malv_gpu_sched_observation> items,
               std::span<vgpu::PreparedItem> prepared) override {
    inner_.prepare(vm, items, prepared);
  }
  void run_prepared() override { inner_.run_prepared(); }
  double prepared_output(vgpu::Vm& vm, const vgpu::PreparedItem& item) override {
    return inner_.prepared_output(vm, item);
  }
  bool prepares() const override { return inner_.prepares(); }
  std::vector<malv_gpu_sched_outcome> take();

 private:
  vgpu::GpuSchedPolicies& inner_;
  std::mutex mu_;
  std::vector<malv_gpu_sched_outcome> outcomes_;
};

// CSV with the header of train/sjf_trace.h, one line per outcome.
[[nodiscard]] Status write_sjf_trace(const std::string& path,
                                     const std::vector<malv_gpu_sched_outcome>& outcomes);

// `malv sjf record`: a host of its own on `backend` (fifo orders the VM's
// streams), the workload, and every outcome written to `out`.
struct SjfRecordReport {
  std::size_t outcomes = 0;
  SjfWorkloadFigures figures;
};
[[nodiscard]] Result<SjfRecordReport> record_sjf_trace(const std::string& backend,
                                                       const SjfWorkloadOptions& options,
                                                       const std::string& out);

}  // namespace malv::bench
