// The built-in kernels other than gemm, as plain loops over host memory.
//
// softmax subtracts the row maximum first and sums its exponentials in
// double, so it stays finite and close to a reference on long rows.
#include "accel/cpu/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "accel/kernel_args.h"
#include "accel/kernel_ids.h"

namespace malv::accel::cpu {
namespace {

using Args = KernelArgs;

float* f32_ptr(const KernelArgValue& arg) {
  return reinterpret_cast<float*>(static_cast<std::uintptr_t>(arg.ptr.value));
}
std::int32_t* i32_ptr(const KernelArgValue& arg) {
  return reinterpret_cast<std::int32_t*>(static_cast<std::uintptr_t>(arg.ptr.value));
}
std::size_t size_arg(const KernelArgValue& arg) { return static_cast<std::size_t>(arg.i64); }

void add(Args a) {
  const float* x = f32_ptr(a[0]);
  const float* y = f32_ptr(a[1]);
  float* out = f32_ptr(a[2]);
  const std::size_t n = size_arg(a[3]);
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] + y[i];
}

void scale(Args a) {
  const float* x = f32_ptr(a[0]);
  float* out = f32_ptr(a[1]);
  const std::size_t n = size_arg(a[2]);
  const float alpha = a[3].f32;
  for (std::size_t i = 0; i < n; ++i) out[i] = alpha * x[i];
}

void axpy(Args a) {
  const float* x = f32_ptr(a[0]);
  float* y = f32_ptr(a[1]);
  const std::size_t n = size_arg(a[2]);
  const float alpha = a[3].f32;
  for (std::size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void bias_add(Args a) {
  float* x = f32_ptr(a[0]);
  const float* bias = f32_ptr(a[1]);
  const std::size_t rows = size_arg(a[2]);
  const std::size_t cols = size_arg(a[3]);
  for (std::size_t i = 0; i < rows; ++i) {
    float* row = x + i * cols;
    for (std::size_t j = 0; j < cols; ++j) row[j] += bias[j];
  }
}

void relu(Args a) {
  const float* x = f32_ptr(a[0]);
  float* out = f32_ptr(a[1]);
  const std::size_t n = size_arg(a[2]);
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(Args a) {
  const float* grad_out = f32_ptr(a[0]);
  const float* x = f32_ptr(a[1]);
  float* grad_in = f32_ptr(a[2]);
  const std::size_t n = size_arg(a[3]);
  for (std::size_t i = 0; i < n; ++i) grad_in[i] = x[i] > 0.0f ? grad_out[i] : 0.0f;
}

// A label outside [0, cols) is the data fault a kernel can find. Labels
// live in device memory that the kernel's own outputs may alias, and that
// another queue may rewrite while the kernel runs, so they are read exactly
// once, into a copy that nothing else can write; the copy is checked, for
// every row before anything is written (a faulting launch leaves its
// outputs untouched), and only the copy is used as an index.
//
// The copy is taken with relaxed atomic loads, one per label: a guest
// racing its own kernel gets some value per label, never a torn or
// re-read one.
bool snapshot_labels(const std::int32_t* labels, std::size_t rows, std::size_t cols,
                     std::vector<std::int32_t>& out) {
  out.resize(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    const std::int32_t label = __atomic_load_n(&labels[i], __ATOMIC_RELAXED);
    if (label < 0 || static_cast<std::size_t>(label) >= cols) return false;
    out[i] = label;
  }
  return true;
}

// probs may alias logits (softmax in place): each row's loss term is taken
// before the row is overwritten, as the CUDA kernels do (loss first).
ErrorCode softmax_xent(Args a) {
  const float* logits = f32_ptr(a[0]);
  const std::int32_t* device_labels = i32_ptr(a[1]);
  float* probs = f32_ptr(a[2]);
  float* loss = f32_ptr(a[3]);
  const std::size_t rows = size_arg(a[4]);
  const std::size_t cols = size_arg(a[5]);
  std::vector<std::int32_t> labels;
  if (!snapshot_labels(device_labels, rows, cols, labels)) return ErrorCode::kInvalidArgument;
  double total_loss = 0.0;
  for (std::size_t i = 0; i < rows; ++i) {
    const float* in = logits + i * cols;
    float* out = probs + i * cols;
    const float max = *std::max_element(in, in + cols);
    double sum = 0.0;
    for (std::size_t j = 0; j < cols; ++j) sum += std::exp(static_cast<double>(in[j] - max));
    const double log_sum = std::log(sum);
    // -log(softmax[label]) = log(sum) - (logit[label] - max), without log(0).
    total_loss += log_sum - static_cast<double>(in[labels[i]] - max);
    for (std::size_t j = 0; j < cols; ++j) {
      out[j] = static_cast<float>(std::exp(static_cast<double>(in[j] - max) - log_sum));
    }
  }
  loss[0] = static_cast<float>(total_loss / static_cast<double>(rows));
  return ErrorCode::kOk;
}

// grad may alias probs (in place): the label's probability is read before
// its row is overwritten.
ErrorCode softmax_xent_backward(Args a) {
  const float* probs = f32_ptr(a[0]);
  const std::int32_t* device_labels = i32_ptr(a[1]);
  float* grad = f32_ptr(a[2]);
  const std::size_t rows = size_arg(a[3]);
  const std::size_t cols = size_arg(a[4]);
  std::vector<std::int32_t> labels;
  if (!snapshot_labels(device_labels, rows, cols, labels)) return ErrorCode::kInvalidArgument;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    const float* p = probs + i * cols;
    float* g = grad + i * cols;
    const std::size_t label = static_cast<std::size_t>(labels[i]);
    const float p_label = p[label];
    for (std::size_t j = 0; j < cols; ++j) g[j] = p[j] * inv_rows;
    g[label] = (p_label - 1.0f) * inv_rows;
  }
  return ErrorCode::kOk;
}

void sum_rows(Args a) {
  const float* x = f32_ptr(a[0]);
  float* out = f32_ptr(a[1]);
  const std::size_t rows = size_arg(a[2]);
  const std::size_t cols = size_arg(a[3]);
  // Row by row keeps the reads sequential; out may alias nothing else.
  std::fill(out, out + cols, 0.0f);
  for (std::size_t i = 0; i < rows; ++i) {
    const float* row = x + i * cols;
    for (std::size_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

void adam_step(Args a) {
  float* param = f32_ptr(a[0]);
  const float* grad = f32_ptr(a[1]);
  float* m = f32_ptr(a[2]);
  float* v = f32_ptr(a[3]);
  const std::size_t n = size_arg(a[4]);
  const float lr = a[5].f32;
  const float beta1 = a[6].f32;
  const float beta2 = a[7].f32;
  const float eps = a[8].f32;
  const AdamCorrections corrections = adam_corrections(a);
  for (std::size_t i = 0; i < n; ++i) {
    const float g = grad[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    const float m_hat = m[i] / corrections.first;
    const float v_hat = v[i] / corrections.second;
    param[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

void sgd_step(Args a) {
  float* param = f32_ptr(a[0]);
  const float* grad = f32_ptr(a[1]);
  const std::size_t n = size_arg(a[2]);
  const float lr = a[3].f32;
  for (std::size_t i = 0; i < n; ++i) param[i] -= lr * grad[i];
}

void fill(Args a) {
  float* x = f32_ptr(a[0]);
  std::fill(x, x + size_arg(a[1]), a[2].f32);
}

void argmax_rows(Args a) {
  const float* x = f32_ptr(a[0]);
  std::int32_t* out = i32_ptr(a[1]);
  const std::size_t rows = size_arg(a[2]);
  const std::size_t cols = size_arg(a[3]);
  for (std::size_t i = 0; i < rows; ++i) {
    const float* row = x + i * cols;
    // max_element returns the first of equal maxima.
    out[i] = static_cast<std::int32_t>(std::max_element(row, row + cols) - row);
  }
}

}  // namespace

ErrorCode run_cpu_kernel(KernelId kernel, std::span<const KernelArgValue> args) {
  switch (static_cast<BuiltinKernel>(kernel.value())) {
    case BuiltinKernel::kNop: return ErrorCode::kOk;
    case BuiltinKernel::kGemm: run_cpu_gemm(args); return ErrorCode::kOk;
    case BuiltinKernel::kAdd: add(args); return ErrorCode::kOk;
    case BuiltinKernel::kScale: scale(args); return ErrorCode::kOk;
    case BuiltinKernel::kAxpy: axpy(args); return ErrorCode::kOk;
    case BuiltinKernel::kBiasAdd: bias_add(args); return ErrorCode::kOk;
    case BuiltinKernel::kRelu: relu(args); return ErrorCode::kOk;
    case BuiltinKernel::kReluBackward: relu_backward(args); return ErrorCode::kOk;
    case BuiltinKernel::kSoftmaxXent: return softmax_xent(args);
    case BuiltinKernel::kSoftmaxXentBackward: return softmax_xent_backward(args);
    case BuiltinKernel::kSumRows: sum_rows(args); return ErrorCode::kOk;
    case BuiltinKernel::kAdamStep: adam_step(args); return ErrorCode::kOk;
    case BuiltinKernel::kSgdStep: sgd_step(args); return ErrorCode::kOk;
    case BuiltinKernel::kFill: fill(args); return ErrorCode::kOk;
    case BuiltinKernel::kArgmaxRows: argmax_rows(args); return ErrorCode::kOk;
  }
  return ErrorCode::kNotFound;  // not a registered kernel id
}

}  // namespace malv::accel::cpu
