// `malv bench cuda`: the CUDA backend seen through a VM against CUDA used
// directly, in one run. Needs an NVIDIA GPU: without one it exits 1 with one
// line saying why (the same "no CUDA device: ..." as `--backend cuda`).
//
//  1. Through a VM: a host (`malv serve --backend cuda`) runs as a child
//     process and this process is its guest over the shared-memory channel.
//     4096^3 sgemm (the gemm kernel, back to back on one stream, timed from
//     the first launch to synchronize), and 64 MiB host->device and
//     device->host copies from a HostBuffer in the shared arena (zero-copy:
//     the host DMAs straight from the registered arena).
//  2. Direct, after the host has gone: the same sgemm through cuBLAS and the
//     same copies from cuMemHostAlloc'ed (pinned) memory, in this process,
//     through the CUDA plugin (accel/cuda/cuda_plugin.h). Ratios say what
//     the VM path keeps of it (goal for sgemm: at least 0.95).
//  3. MLaaS inference, in this process on a CUDA backend: the crossover
//     batch from which the GPU beats CPU inline inference for the 31-256-2
//     (LinnOS) and 15-10-1 (MLLB) MLPs, as the inference service calibrates
//     it (LAKE measured the GPU winning from about 8 and 256 for these).
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "accel/backend.h"
#include "accel/cuda/cuda_plugin.h"
#include "base/clock.h"
#include "bench/bench.h"
#include "bench/models.h"
#include "harness/host_process.h"
#include "harness/report.h"
#include "malv/connection.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"

namespace malv::bench {
namespace {

using guest::KernelArg;

struct VmFigures {
  std::string device;
  double gemm_ms = 0;
  double h2d_gbps = 0;
  double d2h_gbps = 0;
};

Result<guest::Buffer> upload_random(guest::Connection& conn, guest::Stream& stream,
                                    std::size_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  MALV_ASSIGN_OR_RETURN(guest::Buffer buffer, conn.allocate(count * sizeof(float)));
  MALV_TRY(stream.write(buffer, 0, std::as_bytes(std::span(values))));
  return buffer;
}

Result<VmFigures> measure_vm(const CudaOptions& flags) {
  const std::uint64_t transfer = std::uint64_t(flags.transfer_mib) << 20;
  MALV_ASSIGN_OR_RETURN(auto host,
                        harness::HostProcess::spawn({"--backend", "cuda", "--arena-mib",
                                                     std::to_string(flags.transfer_mib + 64),
                                                     "--memory-mib", "4096", "--open"}));
  MALV_ASSIGN_OR_RETURN(
      auto conn, guest::Connection::connect_unix(host->socket_path(), {.vm_name = "bench-cuda"}));
  MALV_ASSIGN_OR_RETURN(guest::DeviceInfo info, conn->device_info());
  if (info.backend != "cuda") {
    return Error(ErrorCode::kFailedPrecondition,
                 fmt::format("the host runs the {} backend, not cuda", info.backend));
  }
  VmFigures vm;
  vm.device = info.name;

  if (!flags.json)
    fmt::print(stderr, "bench cuda: {0}x{0}x{0} sgemm through a VM ...\n", flags.gemm_dim);
  const auto dim = static_cast<std::int64_t>(flags.gemm_dim);
  const auto elements = static_cast<std::size_t>(dim * dim);
  MALV_ASSIGN_OR_RETURN(guest::Kernel gemm, conn->kernel("gemm"));
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, conn->create_stream());
  MALV_ASSIGN_OR_RETURN(guest::Buffer a, upload_random(*conn, stream, elements, 1));
  MALV_ASSIGN_OR_RETURN(guest::Buffer b, upload_random(*conn, stream, elements, 2));
  MALV_ASSIGN_OR_RETURN(guest::Buffer c, conn->allocate(elements * sizeof(float)));
  auto launch = [&] {
    return stream.launch(
        gemm, {KernelArg::buffer(a), KernelArg::buffer(b), KernelArg::buffer(c),
               KernelArg::i64(dim), KernelArg::i64(dim), KernelArg::i64(dim), KernelArg::i64(0),
               KernelArg::i64(0), KernelArg::f32(1.0f), KernelArg::f32(0.0f)});
  };
  for (int i = 0; i < 2; ++i) MALV_TRY(launch());  // warm up: cuBLAS set-up, first touch
  MALV_TRY(stream.synchronize());
  Stopwatch watch;
  for (int i = 0; i < flags.gemm_iterations; ++i) MALV_TRY(launch());
  MALV_TRY(stream.synchronize());
  vm.gemm_ms = watch.elapsed_s() * 1e3 / flags.gemm_iterations;

  if (!flags.json)
    fmt::print(stderr, "bench cuda: {} MiB copies from the arena ...\n", flags.transfer_mib);
  MALV_ASSIGN_OR_RETURN(guest::Buffer device, conn->allocate(transfer));
  MALV_ASSIGN_OR_RETURN(guest::HostBuffer arena, conn->allocate_host(transfer));
  std::memset(arena.data().data(), 1, transfer);
  MALV_TRY(stream.write(device, 0, arena, 0, transfer));  // first touch
  MALV_TRY(stream.synchronize());
  MALV_ASSIGN_OR_RETURN(vm.h2d_gbps, harness::median_gbps(flags.repeats, transfer, [&]() -> Status {
                          MALV_TRY(stream.write(device, 0, arena, 0, transfer));
                          return stream.synchronize();
                        }));
  MALV_ASSIGN_OR_RETURN(vm.d2h_gbps, harness::median_gbps(flags.repeats, transfer, [&]() -> Status {
                          MALV_TRY(stream.read(device, 0, arena, 0, transfer));
                          return stream.synchronize();
                        }));
  return vm;
}

Result<std::vector<mlaas::Crossover>> measure_crossovers(const CudaOptions& flags) {
  if (!flags.json) fmt::print(stderr, "bench cuda: inference crossover, CPU inline vs GPU ...\n");
  MALV_ASSIGN_OR_RETURN(auto backend, accel::make_cuda_backend({.memory_bytes = 1ull << 30}));
  mlaas::InferenceOptions options;
  options.calibrate = false;
  options.calibration_batches = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  options.calibration_runs = 5;
  // The service's accelerator path runs on its own high-priority queue.
  mlaas::InferenceService inference(backend.get(), options);
  std::mt19937 rng(11);
  std::vector<mlaas::Crossover> crossovers;
  for (const ModelCase& shape : kModelCases) {
    MALV_ASSIGN_OR_RETURN(mlaas::Mlp mlp, random_mlp(shape, rng));
    MALV_ASSIGN_OR_RETURN(mlaas::ModelId model, inference.add(std::move(mlp)));
    MALV_ASSIGN_OR_RETURN(mlaas::Crossover crossover, inference.calibrate(model));
    crossovers.push_back(std::move(crossover));
    inference.release(model);
  }
  return crossovers;
}

}  // namespace

Status run_cuda(const CudaOptions& flags) {
  // No device, no run: the same reason `--backend cuda` would give.
  MALV_TRY(accel::make_cuda_backend({.memory_bytes = 64ull << 20}));
  MALV_ASSIGN_OR_RETURN(VmFigures vm, measure_vm(flags));
  if (!flags.json) fmt::print(stderr, "bench cuda: the same, directly through cuBLAS ...\n");
  MALV_ASSIGN_OR_RETURN(
      accel::CudaBaseline direct,
      accel::run_cuda_baseline({.gemm_dim = flags.gemm_dim,
                                .gemm_iterations = flags.gemm_iterations,
                                .transfer_bytes = std::uint64_t(flags.transfer_mib) << 20,
                                .transfer_repeats = flags.repeats}));
  MALV_ASSIGN_OR_RETURN(std::vector<mlaas::Crossover> crossovers, measure_crossovers(flags));

  const double flop = 2.0 * std::pow(static_cast<double>(flags.gemm_dim), 3);
  auto tflops = [flop](double ms) { return ms > 0 ? flop / (ms * 1e-3) / 1e12 : 0.0; };
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  std::vector<harness::Figure> figures{
      {"sgemm_vm_ms", vm.gemm_ms, "ms", "4096^3 sgemm through a VM (shm channel)"},
      {"sgemm_direct_ms", direct.gemm_ms, "ms", "the same, cuBLAS called directly"},
      {"sgemm_vm_tflops", tflops(vm.gemm_ms), "TFLOP/s", ""},
      {"sgemm_direct_tflops", tflops(direct.gemm_ms), "TFLOP/s", ""},
      {"sgemm_vm_over_direct", ratio(direct.gemm_ms, vm.gemm_ms), "", "goal >= 0.95"},
      {"h2d_arena_gbps", vm.h2d_gbps, "GB/s", "guest arena -> device through a VM (DMA)"},
      {"d2h_arena_gbps", vm.d2h_gbps, "GB/s", "device -> guest arena through a VM (DMA)"},
      {"h2d_pinned_gbps", direct.h2d_pinned_gbps, "GB/s", "pinned memory -> device, directly"},
      {"d2h_pinned_gbps", direct.d2h_pinned_gbps, "GB/s", "device -> pinned memory, directly"},
      {"h2d_arena_over_pinned", ratio(vm.h2d_gbps, direct.h2d_pinned_gbps), "", ""},
      {"d2h_arena_over_pinned", ratio(vm.d2h_gbps, direct.d2h_pinned_gbps), "", ""},
  };
  nlohmann::json points = nlohmann::json::object();
  for (std::size_t i = 0; i < crossovers.size(); ++i) {
    const mlaas::Crossover& c = crossovers[i];
    const bool never = c.batch == mlaas::kNeverAccelerate;
    figures.push_back(
        {fmt::format("{}_crossover_batch", kModelCases[i].key),
         never ? -1.0 : static_cast<double>(c.batch), "batch",
         fmt::format("{}: GPU faster from here on (-1: never)", kModelCases[i].what)});
    nlohmann::json rows = nlohmann::json::array();
    for (const mlaas::CalibrationPoint& p : c.points) {
      rows.push_back({{"batch", p.batch}, {"cpu_us", p.cpu_us}, {"gpu_us", p.accelerator_us}});
    }
    points[kModelCases[i].key] = rows;
  }
  const nlohmann::json extra{{"backend", "cuda"},
                             {"device", vm.device},
                             {"gemm_dim", flags.gemm_dim},
                             {"gemm_iterations", flags.gemm_iterations},
                             {"transfer_mib", flags.transfer_mib},
                             {"inference_points", points}};
  harness::print_figures("malv bench cuda", figures, flags.json, extra);
  return ok_status();
}

}  // namespace malv::bench
