// nn::Mlp to mlaas::Mlp (see mlaas_export.h).
#include "train/mlaas_export.h"

#include <fmt/format.h>

namespace malv::train {
namespace {

const std::vector<float>* find_array(const nn::Checkpoint& checkpoint, const std::string& name) {
  for (const nn::NamedArray& a : checkpoint.arrays) {
    if (a.name == name) return &a.values;
  }
  return nullptr;
}

}  // namespace

Result<mlaas::Mlp> export_mlaas_model(nn::Mlp& model, const ExportOptions& options) {
  const std::vector<std::int64_t>& widths = model.spec().widths;
  const bool regression = model.loss() == nn::Loss::kMeanSquaredError;
  if (options.inputs != nullptr &&
      options.inputs->columns() != static_cast<std::size_t>(model.spec().inputs())) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("input scaling has {} columns, the model takes {} inputs",
                             options.inputs->columns(), model.spec().inputs()));
  }
  if (options.targets != nullptr) {
    if (!regression) {
      return Error(ErrorCode::kInvalidArgument,
                   "target scaling is for a regression model; this one is a classifier");
    }
    if (options.targets->columns() != static_cast<std::size_t>(model.spec().classes())) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("target scaling has {} columns, the model has {} outputs",
                               options.targets->columns(), model.spec().classes()));
    }
  }
  MALV_ASSIGN_OR_RETURN(nn::Checkpoint parameters, model.parameters_checkpoint());

  const std::size_t count = widths.size() - 1;
  std::vector<mlaas::DenseLayer> layers(count);
  for (std::size_t l = 0; l < count; ++l) {
    const auto in = static_cast<std::size_t>(widths[l]);
    const auto out = static_cast<std::size_t>(widths[l + 1]);
    const std::vector<float>* w = find_array(parameters, fmt::format("dense{}.weight", l));
    const std::vector<float>* b = find_array(parameters, fmt::format("dense{}.bias", l));
    if (w == nullptr || b == nullptr || w->size() != in * out || b->size() != out) {
      return Error(ErrorCode::kInternal, fmt::format("model {} has no {}x{} dense{} parameters",
                                                     model.spec().to_string(), in, out, l));
    }
    // weight[o][i] = W[i][o] * row_scale[i] * col_scale[o]; bias[o] likewise.
    std::vector<double> weight(in * out);
    std::vector<double> bias(b->begin(), b->end());
    for (std::size_t i = 0; i < in; ++i) {
      for (std::size_t o = 0; o < out; ++o) weight[o * in + i] = (*w)[i * out + o];
    }
    if (l == 0 && options.inputs != nullptr) {
      const Standardisation& s = *options.inputs;
      for (std::size_t o = 0; o < out; ++o) {
        double shift = 0;
        for (std::size_t i = 0; i < in; ++i) {
          weight[o * in + i] /= s.scale[i];
          shift += s.mean[i] * weight[o * in + i];
        }
        bias[o] -= shift;
      }
    }
    const bool last = l + 1 == count;
    if (last && options.targets != nullptr) {
      const Standardisation& s = *options.targets;
      for (std::size_t o = 0; o < out; ++o) {
        for (std::size_t i = 0; i < in; ++i) weight[o * in + i] *= s.scale[o];
        bias[o] = bias[o] * s.scale[o] + s.mean[o];
      }
    }
    mlaas::DenseLayer& layer = layers[l];
    layer.in = in;
    layer.out = out;
    layer.weight.assign(weight.begin(), weight.end());
    layer.bias.assign(bias.begin(), bias.end());
    layer.activation = !last        ? mlaas::Activation::kRelu
                       : regression ? mlaas::Activation::kIdentity
                                    : mlaas::Activation::kSoftmax;
  }
  return mlaas::Mlp::create(std::move(layers));
}

}  // namespace malv::train
