// What PyTorch's meta kernels said about a call, kept by call signature.
//
// The torch device's fallback (device_ops.cpp) runs each operator's meta
// kernel in the guest for its output shapes and checks. The answer depends
// only on the operator and on its arguments' geometry and values (meta
// tensors carry no data), so it is kept per thread, keyed by that
// signature: a training loop, which calls the same operators on the same
// shapes every step, then makes no meta tensor and runs no meta kernel
// after its first step. A call whose arguments the signature cannot
// describe (tensor lists, generators) is not kept.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace malv::torch_device {

// A tensor's geometry as a meta kernel returned it.
struct Geometry {
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  std::int64_t storage_offset = 0;
  c10::ScalarType dtype = c10::ScalarType::Float;
};

// One return of the operator: a tensor, a list of tensors, or a value
// only the host's run gives.
struct ReturnShape {
  enum class Kind { kValue, kTensor, kTensorList };
  Kind kind = Kind::kValue;
  std::vector<Geometry> tensors;  // one for kTensor
};
using MetaAnswer = std::vector<ReturnShape>;

// The meta kernel's returns, as shapes.
MetaAnswer answer_of(const std::vector<c10::IValue>& meta_returns);

// The call's signature (the operator, then each argument's kind and
// geometry or value) into `key` (reused: its capacity stays), false when
// an argument is not describable.
bool call_signature(const c10::OperatorHandle& op, const std::vector<c10::IValue>& args,
                    std::string& key);

// This thread's answers (bounded: emptied when full).
std::shared_ptr<const MetaAnswer> find_answer(const std::string& signature);
void keep_answer(const std::string& signature, std::shared_ptr<const MetaAnswer> answer);

}  // namespace malv::torch_device
