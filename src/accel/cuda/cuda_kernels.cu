// The built-in kernels of the registry (kernel_registry.cpp), other than
// gemm (cuBLAS), as CUDA C++. nvcc compiles this file alone into a fatbin
// (sm_80 and sm_90 code plus compute_90 PTX, see CMakeLists.txt) that the
// plugin embeds and loads with cuModuleLoadData; cuda_launch.cpp launches
// these by their unmangled names.
//
// Each kernel computes what cpu_kernels.cpp computes, with the same
// expressions in the same order, and the file is compiled with
// --fmad=false: element-wise kernels then round exactly as the CPU does
// (g++ contracts nothing under -std=c++20). Reductions that the CPU does in
// a loop (sum_rows, argmax_rows, the per-row softmax sums) run in the same
// order on one thread where that costs little, or sum in double.
//
// Arguments were validated against the registry before launch; sizes come
// as long long (the registry's i64) and every index is 64-bit. Grid-stride
// loops make any grid size correct; cuda_launch.cpp picks the grid.
//
// The one data-dependent fault is a label outside [0, cols). Labels live in
// device memory that the launch's own outputs may alias and that another
// stream may rewrite while the launch runs, so a check made before use
// proves nothing about the value used: every kernel that uses a label reads
// it exactly once (through a volatile load, so the compiler cannot load it
// again), checks that value, and on a bad one stores kInvalidArgument (1)
// in the launch's status word (mapped host memory, see
// cuda_status_slots.h) and writes nothing for it. Kernels later in the
// launch return at once when that word is set. softmax_xent's loss kernel
// runs first and checks every label as it uses it; softmax_xent_backward
// keeps a check kernel in front, so that a launch whose labels are simply
// wrong leaves its outputs untouched, as on the CPU, and checks again at
// use.

namespace {

constexpr int kWarp = 32;
constexpr int kInvalidArgument = 1;  // malv::ErrorCode::kInvalidArgument
constexpr int kLossThreads = 256;    // cuda_launch.cpp: kLossThreads

__device__ unsigned long long first_index() {
  return static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ unsigned long long grid_stride() {
  return static_cast<unsigned long long>(gridDim.x) * blockDim.x;
}

// Whether the launch has faulted; read once per block.
__device__ bool launch_faulted(const volatile int* status) {
  __shared__ int faulted;
  if (threadIdx.x == 0) faulted = *status;
  __syncthreads();
  return faulted != 0;
}

// The label of row `row`, read once; -1 when it lies outside [0, cols),
// after storing kInvalidArgument in *status.
__device__ long long checked_label(const int* labels, unsigned long long row, long long cols,
                                   volatile int* status) {
  const int label = *static_cast<const volatile int*>(labels + row);
  if (label < 0 || label >= cols) {
    *status = kInvalidArgument;
    return -1;
  }
  return label;
}

__device__ float warp_max(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = value < other ? other : value;
  }
  return value;
}

__device__ double warp_sum(double value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

}  // namespace

extern "C" {

__global__ void malv_nop() {}

__global__ void malv_add(const float* x, const float* y, float* out, long long n) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) out[i] = x[i] + y[i];
}

__global__ void malv_scale(const float* x, float* out, long long n, float alpha) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) out[i] = alpha * x[i];
}

__global__ void malv_axpy(const float* x, float* y, long long n, float alpha) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) y[i] += alpha * x[i];
}

__global__ void malv_bias_add(float* x, const float* bias, long long rows, long long cols) {
  const auto width = static_cast<unsigned long long>(cols);
  const auto count = static_cast<unsigned long long>(rows) * width;
  for (auto i = first_index(); i < count; i += grid_stride()) x[i] += bias[i % width];
}

__global__ void malv_relu(const float* x, float* out, long long n) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

__global__ void malv_relu_backward(const float* grad_out, const float* x, float* grad_in,
                                   long long n) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) {
    grad_in[i] = x[i] > 0.0f ? grad_out[i] : 0.0f;
  }
}

// Stores kInvalidArgument in *status if any label lies outside [0, cols).
// Every faulting thread stores the same value, so plain stores suffice.
__global__ void malv_check_labels(const int* labels, long long rows, long long cols,
                                  volatile int* status) {
  const auto count = static_cast<unsigned long long>(rows);
  for (auto i = first_index(); i < count; i += grid_stride()) {
    if (labels[i] < 0 || labels[i] >= cols) *status = kInvalidArgument;
  }
}

// probs = softmax of each row of logits: one warp per row. The row maximum
// is exact in any order; the exponentials are summed in double, as on the
// CPU, so the results agree to float rounding.
__global__ void malv_softmax_xent_probs(const float* logits, float* probs, long long rows,
                                        long long cols, const volatile int* status) {
  if (launch_faulted(status)) return;
  const auto width = static_cast<unsigned long long>(cols);
  const auto warps_per_block = blockDim.x / kWarp;
  const auto lane = threadIdx.x % kWarp;
  const auto first_row =
      static_cast<unsigned long long>(blockIdx.x) * warps_per_block + threadIdx.x / kWarp;
  const auto row_stride = static_cast<unsigned long long>(gridDim.x) * warps_per_block;
  for (auto r = first_row; r < static_cast<unsigned long long>(rows); r += row_stride) {
    const float* in = logits + r * width;
    float* out = probs + r * width;
    float max = in[0];
    for (auto j = lane; j < width; j += kWarp) max = max < in[j] ? in[j] : max;
    max = warp_max(max);
    double sum = 0.0;
    for (auto j = lane; j < width; j += kWarp) sum += exp(static_cast<double>(in[j] - max));
    const double log_sum = log(warp_sum(sum));
    // Every lane has read the whole row (the shuffles above order it), so
    // probs may alias logits.
    for (auto j = lane; j < width; j += kWarp) {
      out[j] = static_cast<float>(exp(static_cast<double>(in[j] - max) - log_sum));
    }
  }
}

// loss[0] = mean over rows of -log softmax(logits)[label]. One block of
// kLossThreads threads (cuda_launch.cpp launches exactly that), each taking
// whole rows in the CPU's order, then a fixed-shape tree in double: the
// result does not depend on timing. It is the launch's first kernel and
// checks each label where it uses it: a bad one leaves loss unwritten and
// sets the status word, so the probabilities kernel after it does nothing.
__global__ void malv_softmax_xent_loss(const float* logits, const int* labels, float* loss,
                                       long long rows, long long cols, volatile int* status) {
  __shared__ double partial[kLossThreads];
  __shared__ int bad;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  const auto width = static_cast<unsigned long long>(cols);
  double total = 0.0;
  for (auto r = static_cast<unsigned long long>(threadIdx.x);
       r < static_cast<unsigned long long>(rows); r += blockDim.x) {
    const long long label = checked_label(labels, r, cols, status);
    if (label < 0) {
      bad = 1;
      continue;
    }
    const float* in = logits + r * width;
    float max = in[0];
    for (unsigned long long j = 1; j < width; ++j) max = max < in[j] ? in[j] : max;
    double sum = 0.0;
    for (unsigned long long j = 0; j < width; ++j) sum += exp(static_cast<double>(in[j] - max));
    // -log(softmax[label]) = log(sum) - (logit[label] - max), without log(0).
    total += log(sum) - static_cast<double>(in[label] - max);
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0 && bad == 0) {
    loss[0] = static_cast<float>(partial[0] / static_cast<double>(rows));
  }
}

// grad = (probs - onehot(labels)) / rows, element by element (grad may
// alias probs: each element is read and written by one thread). The label
// is checked again where it is used: the check kernel before this one saw
// the labels as they were then, and grad may alias them (a thread's write
// can change another row's label) or another stream may rewrite them. An
// element whose label is bad is not written.
__global__ void malv_softmax_xent_backward(const float* probs, const int* labels, float* grad,
                                           long long rows, long long cols, volatile int* status) {
  if (launch_faulted(status)) return;
  const auto width = static_cast<unsigned long long>(cols);
  const auto count = static_cast<unsigned long long>(rows) * width;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (auto i = first_index(); i < count; i += grid_stride()) {
    const auto row = i / width;
    const auto col = i % width;
    const long long label = checked_label(labels, row, cols, status);
    if (label < 0) continue;
    const bool is_label = static_cast<unsigned long long>(label) == col;
    grad[i] = is_label ? (probs[i] - 1.0f) * inv_rows : probs[i] * inv_rows;
  }
}

// out[j] = sum of column j, rows added in order: one thread per column.
__global__ void malv_sum_rows(const float* x, float* out, long long rows, long long cols) {
  const auto width = static_cast<unsigned long long>(cols);
  for (auto j = first_index(); j < width; j += grid_stride()) {
    float sum = 0.0f;
    for (unsigned long long i = 0; i < static_cast<unsigned long long>(rows); ++i) {
      sum += x[i * width + j];
    }
    out[j] = sum;
  }
}

// correction1/2 = 1 - beta^step, computed on the host as the CPU does.
__global__ void malv_adam_step(float* param, const float* grad, float* m, float* v, long long n,
                               float lr, float beta1, float beta2, float eps, float correction1,
                               float correction2) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) {
    const float g = grad[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    const float m_hat = m[i] / correction1;
    const float v_hat = v[i] / correction2;
    param[i] -= lr * m_hat / (sqrtf(v_hat) + eps);
  }
}

__global__ void malv_sgd_step(float* param, const float* grad, long long n, float lr) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) param[i] -= lr * grad[i];
}

__global__ void malv_fill(float* x, long long n, float value) {
  const auto count = static_cast<unsigned long long>(n);
  for (auto i = first_index(); i < count; i += grid_stride()) x[i] = value;
}

// The first of equal maxima, compared as std::max_element does: one thread
// per row.
__global__ void malv_argmax_rows(const float* x, int* out, long long rows, long long cols) {
  const auto width = static_cast<unsigned long long>(cols);
  for (auto r = first_index(); r < static_cast<unsigned long long>(rows); r += grid_stride()) {
    const float* row = x + r * width;
    unsigned long long best = 0;
    for (unsigned long long j = 1; j < width; ++j) {
      if (row[best] < row[j]) best = j;
    }
    out[r] = static_cast<int>(best);
  }
}

}  // extern "C"
