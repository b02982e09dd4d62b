// gemm on the CPU backend: one cblas_sgemm call (OpenBLAS).
#include <cblas.h>

#include <algorithm>

#include "accel/cpu/blas_kernels.h"
#include "accel/cpu/cpu_kernels.h"
#include "accel/kernel_args.h"
#include "base/thread_priority.h"

namespace malv::accel::cpu {

namespace {
float* as_floats(const KernelArgValue& arg) {
  return reinterpret_cast<float*>(static_cast<std::uintptr_t>(arg.ptr.value));
}
}  // namespace

void run_cpu_gemm(std::span<const KernelArgValue> args) {
  const GemmArgs g = gemm_args(args);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, g.alpha, as_floats(args[0]),
              g.lda, as_floats(args[1]), g.ldb, g.beta, as_floats(args[2]), g.n);
}

// The backend already runs different queues in parallel on its workers, one
// per core by default. If every concurrent gemm also fanned out to OpenBLAS's
// own pool of one thread per core, the machine would be oversubscribed
// cores x cores ways and OpenBLAS would serialise callers on its shared
// pool. So OpenBLAS gets the cores the workers leave over: 1 thread when
// workers >= cores (parallelism comes from queues), cores / workers when the
// backend was configured with fewer workers (a single queue's big gemm can
// still use the machine). Cores are those the host may run on (its affinity:
// `malv serve --host-cpus`), not the machine's. The setting is process-wide: with several CPU
// backends in one process, the latest one created decides.
void configure_blas_threads(unsigned backend_workers) {
  (void)blas_kernels();  // chosen before the first gemm (blas_kernels.h)
  const unsigned cores = usable_cpu_count();
  const unsigned threads = std::max(1u, cores / std::max(1u, backend_workers));
  openblas_set_num_threads(static_cast<int>(threads));
}

}  // namespace malv::accel::cpu
