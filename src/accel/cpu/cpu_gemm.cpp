// gemm on the CPU backend: one cblas_sgemm call (OpenBLAS).
#include <cblas.h>

#include <algorithm>
#include <thread>

#include "accel/cpu/cpu_kernels.h"

namespace malv::accel::cpu {

namespace {
float* as_floats(const KernelArgValue& arg) {
  return reinterpret_cast<float*>(static_cast<std::uintptr_t>(arg.ptr.value));
}
}  // namespace

void run_cpu_gemm(std::span<const KernelArgValue> args) {
  // The registry bounded m, n, k to int32 and the flags to 0/1.
  const int m = static_cast<int>(args[3].i64);
  const int n = static_cast<int>(args[4].i64);
  const int k = static_cast<int>(args[5].i64);
  const bool trans_a = args[6].i64 != 0;
  const bool trans_b = args[7].i64 != 0;
  // Row-major: op(A) is m x k, stored k x m when transposed; likewise B.
  const int lda = trans_a ? m : k;
  const int ldb = trans_b ? k : n;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, args[8].f32, as_floats(args[0]), lda,
              as_floats(args[1]), ldb, args[9].f32, as_floats(args[2]), n);
}

// The backend already runs different queues in parallel on its workers, one
// per core by default. If every concurrent gemm also fanned out to OpenBLAS's
// own pool of one thread per core, the machine would be oversubscribed
// cores x cores ways and OpenBLAS would serialise callers on its shared
// pool. So OpenBLAS gets the cores the workers leave over: 1 thread when
// workers >= cores (parallelism comes from queues), cores / workers when the
// backend was configured with fewer workers (a single queue's big gemm can
// still use the machine). The setting is process-wide: with several CPU
// backends in one process, the latest one created decides.
void configure_blas_threads(unsigned backend_workers) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = std::max(1u, cores / std::max(1u, backend_workers));
  openblas_set_num_threads(static_cast<int>(threads));
}

}  // namespace malv::accel::cpu
