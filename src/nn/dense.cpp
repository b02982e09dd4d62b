#include "nn/dense.h"

#include <cmath>
#include <vector>

#include "nn/dataset.h"

namespace malv::nn {

Result<Dense> Dense::create(Device& device, std::int64_t in, std::int64_t out,
                            std::int64_t max_batch, Init init, std::uint64_t seed) {
  if (in <= 0 || out <= 0 || max_batch <= 0) {
    return Error(ErrorCode::kInvalidArgument, "dense layer sizes must be positive");
  }
  Dense layer;
  MALV_ASSIGN_OR_RETURN(layer.weight, Tensor::create(device, in, out));
  MALV_ASSIGN_OR_RETURN(layer.bias, Tensor::create(device, 1, out));
  MALV_ASSIGN_OR_RETURN(layer.weight_grad, Tensor::create(device, in, out));
  MALV_ASSIGN_OR_RETURN(layer.bias_grad, Tensor::create(device, 1, out));
  MALV_ASSIGN_OR_RETURN(layer.output, Tensor::create(device, max_batch, out));

  const double fan =
      init == Init::kHeUniform ? static_cast<double>(in) : static_cast<double>(in + out);
  const auto limit = static_cast<float>(std::sqrt(6.0 / fan));
  Rng rng(seed);
  std::vector<float> weights(static_cast<std::size_t>(in * out));
  for (float& w : weights) w = rng.uniform(-limit, limit);
  const std::vector<float> zeros(static_cast<std::size_t>(out), 0.0f);
  MALV_TRY(device.write(layer.weight.buffer, 0, std::as_bytes(std::span(weights))));
  MALV_TRY(device.write(layer.bias.buffer, 0, std::as_bytes(std::span(zeros))));
  return layer;
}

Status Dense::forward(Device& device, const DeviceBuffer& x, std::int64_t rows) {
  MALV_TRY(
      device.launch(BuiltinKernel::kGemm,
                    {Arg::buffer(x), weight.arg(), output.arg(), Arg::i64(rows), Arg::i64(out()),
                     Arg::i64(in()), Arg::i64(0), Arg::i64(0), Arg::f32(1.0f), Arg::f32(0.0f)}));
  return device.launch(BuiltinKernel::kBiasAdd,
                       {output.arg(), bias.arg(), Arg::i64(rows), Arg::i64(out())});
}

Status Dense::backward(Device& device, const DeviceBuffer& x, const DeviceBuffer& grad_output,
                       std::int64_t rows, const DeviceBuffer* grad_input) {
  // dW = x^T dY: op(A) = x^T is in x rows.
  MALV_TRY(device.launch(
      BuiltinKernel::kGemm,
      {Arg::buffer(x), Arg::buffer(grad_output), weight_grad.arg(), Arg::i64(in()), Arg::i64(out()),
       Arg::i64(rows), Arg::i64(1), Arg::i64(0), Arg::f32(1.0f), Arg::f32(0.0f)}));
  MALV_TRY(device.launch(BuiltinKernel::kSumRows, {Arg::buffer(grad_output), bias_grad.arg(),
                                                   Arg::i64(rows), Arg::i64(out())}));
  if (grad_input == nullptr) return ok_status();
  // dX = dY W^T: op(B) = W^T is out x in.
  return device.launch(
      BuiltinKernel::kGemm,
      {Arg::buffer(grad_output), weight.arg(), Arg::buffer(*grad_input), Arg::i64(rows),
       Arg::i64(in()), Arg::i64(out()), Arg::i64(0), Arg::i64(1), Arg::f32(1.0f), Arg::f32(0.0f)});
}

}  // namespace malv::nn
