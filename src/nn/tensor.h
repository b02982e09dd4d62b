// Tensor: a float32 (or int32) matrix in device memory, rows x cols,
// row-major. Vectors are 1 x n. The shape is the capacity; ops may use
// fewer rows (a last, short batch) by passing their own row count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nn/device.h"

namespace malv::nn {

struct Tensor {
  DeviceBuffer buffer;
  std::int64_t rows = 0;
  std::int64_t cols = 0;

  std::int64_t numel() const { return rows * cols; }
  Arg arg() const { return Arg::buffer(buffer); }

  // Four bytes per element: float32 and int32 alike.
  [[nodiscard]] static Result<Tensor> create(Device& device, std::int64_t rows, std::int64_t cols) {
    MALV_ASSIGN_OR_RETURN(DeviceBuffer buffer,
                          device.allocate(static_cast<std::uint64_t>(rows * cols) * 4));
    return Tensor{std::move(buffer), rows, cols};
  }
};

// A trainable tensor and the gradient the backward pass leaves for it.
struct Parameter {
  std::string name;  // "dense0.weight"
  Tensor* value = nullptr;
  Tensor* grad = nullptr;
};

}  // namespace malv::nn
