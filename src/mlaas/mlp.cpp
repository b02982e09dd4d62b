// Dense MLP: validation, .safetensors layout, CPU inference (see mlp.h).
#include "mlaas/mlp.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <functional>
#include <semaphore>
#include <thread>

#include "accel/cpu/blas_kernels.h"

namespace malv::mlaas {
namespace {

constexpr std::size_t kMaxLayers = 64;
constexpr std::size_t kMaxDim = 1 << 20;

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    std::size_t at = text.find(sep);
    std::string_view part = text.substr(0, at);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    parts.push_back(part);
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

}  // namespace

std::string_view activation_name(Activation activation) {
  switch (activation) {
    case Activation::kIdentity: return "identity";
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
    case Activation::kSoftmax: return "softmax";
  }
  return "unknown";
}

Result<Activation> parse_activation(std::string_view name) {
  for (Activation a : {Activation::kIdentity, Activation::kRelu, Activation::kSigmoid,
                       Activation::kTanh, Activation::kSoftmax}) {
    if (activation_name(a) == name) return a;
  }
  return Error(
      ErrorCode::kInvalidArgument,
      fmt::format("unknown activation '{}' (identity, relu, sigmoid, tanh, softmax)", name));
}

void apply_activation(Activation activation, float* v, std::size_t rows, std::size_t cols) {
  const std::size_t n = rows * cols;
  switch (activation) {
    case Activation::kIdentity: return;
    case Activation::kRelu:
      for (std::size_t i = 0; i < n; ++i) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
      return;
    case Activation::kSigmoid:
      for (std::size_t i = 0; i < n; ++i) v[i] = 1.0f / (1.0f + std::exp(-v[i]));
      return;
    case Activation::kTanh:
      for (std::size_t i = 0; i < n; ++i) v[i] = std::tanh(v[i]);
      return;
    case Activation::kSoftmax:
      for (std::size_t r = 0; r < rows; ++r) {
        float* row = v + r * cols;
        float max = *std::max_element(row, row + cols);
        float sum = 0.0f;
        for (std::size_t c = 0; c < cols; ++c) sum += (row[c] = std::exp(row[c] - max));
        for (std::size_t c = 0; c < cols; ++c) row[c] /= sum;
      }
      return;
  }
}

Result<Mlp> Mlp::create(std::vector<DenseLayer> layers) {
  if (layers.empty() || layers.size() > kMaxLayers) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("an MLP has 1-{} layers, got {}", kMaxLayers, layers.size()));
  }
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const DenseLayer& l = layers[i];
    if (l.in == 0 || l.out == 0 || l.in > kMaxDim || l.out > kMaxDim) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("layer {}: dimensions {}x{} must be 1-{}", i, l.out, l.in, kMaxDim));
    }
    if (l.weight.size() != l.in * l.out || l.bias.size() != l.out) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("layer {}: weight has {} values (want {}x{}), bias {} (want {})", i,
                               l.weight.size(), l.out, l.in, l.bias.size(), l.out));
    }
    for (std::size_t j = 0; j < l.weight.size(); ++j) {
      if (!std::isfinite(l.weight[j])) {
        return Error(ErrorCode::kInvalidArgument, fmt::format("layer {}: weight [{}, {}] is {}", i,
                                                              j / l.in, j % l.in, l.weight[j]));
      }
    }
    for (std::size_t j = 0; j < l.bias.size(); ++j) {
      if (!std::isfinite(l.bias[j])) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("layer {}: bias [{}] is {}", i, j, l.bias[j]));
      }
    }
    if (i > 0 && layers[i - 1].out != l.in) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("layer {} takes {} inputs but layer {} gives {} outputs", i, l.in,
                               i - 1, layers[i - 1].out));
    }
  }
  return Mlp(std::move(layers));
}

Result<Mlp> Mlp::from_safetensors(const SafetensorsFile& file, std::string_view origin) {
  auto fail = [&](std::string message) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("MLP {}: {}", origin, message));
  };
  std::vector<std::string_view> activations;
  if (auto it = file.metadata.find("activations"); it != file.metadata.end()) {
    activations = split(it->second, ',');
  }
  std::vector<DenseLayer> layers;
  for (std::size_t i = 0;; ++i) {
    auto weight = file.tensors.find(fmt::format("layers.{}.weight", i));
    auto bias = file.tensors.find(fmt::format("layers.{}.bias", i));
    if (weight == file.tensors.end()) {
      if (bias != file.tensors.end()) return fail(fmt::format("layers.{}.bias without weight", i));
      break;
    }
    if (bias == file.tensors.end()) return fail(fmt::format("layers.{}.weight without bias", i));
    const TensorF32& w = weight->second;
    const TensorF32& b = bias->second;
    if (w.shape.size() != 2) {
      return fail(fmt::format("layers.{}.weight must be 2-D [out, in], has {} dimensions", i,
                              w.shape.size()));
    }
    if (b.shape.size() != 1 || b.shape[0] != w.shape[0]) {
      return fail(fmt::format("layers.{}.bias must be [{}] to match the weight's out dimension", i,
                              w.shape[0]));
    }
    DenseLayer layer;
    layer.out = static_cast<std::size_t>(w.shape[0]);
    layer.in = static_cast<std::size_t>(w.shape[1]);
    layer.weight = w.data;
    layer.bias = b.data;
    if (i < activations.size()) {
      Result<Activation> a = parse_activation(activations[i]);
      if (!a.ok()) return fail(fmt::format("layer {}: {}", i, a.error().message()));
      layer.activation = *a;
    }
    layers.push_back(std::move(layer));
  }
  if (layers.empty()) return fail("no tensor named layers.0.weight");
  if (!activations.empty() && activations.size() != layers.size()) {
    return fail(fmt::format("{} activations for {} layers", activations.size(), layers.size()));
  }
  Result<Mlp> mlp = create(std::move(layers));
  if (!mlp.ok()) return fail(mlp.error().message());
  return mlp;
}

Result<Mlp> Mlp::load(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(SafetensorsFile file, read_safetensors(path));
  return from_safetensors(file, path);
}

SafetensorsFile Mlp::to_safetensors() const {
  SafetensorsFile file;
  std::string activations;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& l = layers_[i];
    file.tensors[fmt::format("layers.{}.weight", i)] =
        TensorF32{{static_cast<std::int64_t>(l.out), static_cast<std::int64_t>(l.in)}, l.weight};
    file.tensors[fmt::format("layers.{}.bias", i)] =
        TensorF32{{static_cast<std::int64_t>(l.out)}, l.bias};
    if (i > 0) activations += ",";
    activations += activation_name(l.activation);
  }
  file.metadata["format"] = "malv-mlp";
  file.metadata["activations"] = activations;
  return file;
}

Status Mlp::save(const std::string& path) const {
  return write_safetensors(path, to_safetensors());
}

std::size_t Mlp::widest() const {
  std::size_t widest = 0;
  for (const DenseLayer& l : layers_) widest = std::max({widest, l.in, l.out});
  return widest;
}

std::string Mlp::shape_key() const {
  std::string key = std::to_string(input_dim());
  for (const DenseLayer& l : layers_)
    key += fmt::format("-{}{}", l.out, activation_name(l.activation));
  return key;
}

namespace {

// At most kCpuSlots threads run infer_cpu at once, each with a slot's
// scratch buffers:
//  * OpenBLAS 0.3.21 (Debian 12) keeps a fixed table of per-call buffers;
//    with a few hundred threads inside cblas_sgemm at once (512 policy
//    threads inferring) it prints "precompiled NUM_THREADS exceeded" and
//    crashes. 64 callers at once stay far below that.
//  * Scratch kept between calls, at most 512 KiB a buffer (larger batches
//    run in chunks of rows): allocating it per call made glibc map and
//    unmap it for batches of 512 rows and more (docs/benchmarks.md: the
//    LinnOS shape ran 20x slower per row at batch 512 than at 64).
// Taking and returning a slot is lock-free unless all 64 are in use.
class CpuSlots {
 public:
  static constexpr std::size_t kCount = 64;
  // The kernels are chosen before the first gemm (blas_kernels.h).
  CpuSlots() { (void)accel::cpu::blas_kernels(); }
  struct Slot {
    std::atomic<bool> busy{false};
    std::vector<float> a, b;
  };

  Slot& take() {
    free_.acquire();
    std::size_t i = std::hash<std::thread::id>{}(std::this_thread::get_id()) % kCount;
    for (;; i = (i + 1) % kCount) {
      bool expected = false;
      if (!slots_[i].busy.load(std::memory_order_relaxed) &&
          slots_[i].busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        return slots_[i];
      }
    }
  }
  void give_back(Slot& slot) {
    slot.busy.store(false, std::memory_order_release);
    free_.release();
  }

 private:
  std::counting_semaphore<kCount> free_{kCount};
  std::array<Slot, kCount> slots_;
};

CpuSlots& cpu_slots() {
  static CpuSlots slots;
  return slots;
}

}  // namespace

void Mlp::infer_cpu(const float* in, std::size_t batch, float* out) const {
  if (batch == 0) return;
  CpuSlots& slots = cpu_slots();
  CpuSlots::Slot& slot = slots.take();
  struct GiveBack {
    CpuSlots& slots;
    CpuSlots::Slot& slot;
    ~GiveBack() { slots.give_back(slot); }
  } give_back{slots, slot};
  // A slot's scratch holds at most 512 KiB a buffer; a batch that needs more
  // runs in chunks of rows that fit (512 rows of the LinnOS shape: as fast
  // per row as any larger GEMM).
  constexpr std::size_t kScratchFloats = (512u << 10) / sizeof(float);
  const std::size_t chunk = std::max<std::size_t>(1, kScratchFloats / widest());
  for (std::size_t first = 0; first < batch; first += chunk) {
    const std::size_t rows = std::min(chunk, batch - first);
    infer_rows(in + first * input_dim(), rows, out + first * output_dim(), slot.a, slot.b);
  }
}

void Mlp::infer_rows(const float* in, std::size_t batch, float* out, std::vector<float>& a,
                     std::vector<float>& b) const {
  const std::size_t need = batch * widest();
  if (a.size() < need) a.resize(need);
  if (b.size() < need) b.resize(need);
  const float* x = in;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& l = layers_[i];
    float* y = i + 1 == layers_.size() ? out : (i % 2 == 0 ? a.data() : b.data());
    for (std::size_t r = 0; r < batch; ++r) std::copy(l.bias.begin(), l.bias.end(), y + r * l.out);
    // y[batch x out] = x[batch x in] * W^T + y
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch),
                static_cast<int>(l.out), static_cast<int>(l.in), 1.0f, x, static_cast<int>(l.in),
                l.weight.data(), static_cast<int>(l.in), 1.0f, y, static_cast<int>(l.out));
    apply_activation(l.activation, y, batch, l.out);
    x = y;
  }
}

}  // namespace malv::mlaas
