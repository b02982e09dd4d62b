// KernelRegistry: the built-in kernels every backend provides, by name, with
// a typed signature and a bounds rule.
//
// A guest launches a kernel by name. Before anything runs, the host checks
// the argument kinds against the signature and calls the kernel's
// check_bounds() with every buffer argument's available extent (buffer size
// minus offset): each buffer access the kernel will make, derived from its
// declared shapes (e.g. gemm reads M*K floats of A), must fit, and size
// arithmetic must not overflow. Backends implement the kernels; their names
// and ids are include/malv/kernels.h's, and this file is the single
// definition of their signatures and bounds rules.
//
//   const KernelDef* gemm = find_kernel("gemm");
//   Status ok = gemm->check_bounds(args);  // before enqueue, never after
//
// Conventions: float32 data, row-major matrices, int32 for labels/indices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/strong_id.h"
#include "malv/result.h"

namespace malv::accel {

inline constexpr std::size_t kMaxKernelArgs = 10;

// Address in device memory. Opaque outside a backend.
struct DevicePtr {
  std::uint64_t value = 0;
  friend constexpr bool operator==(DevicePtr, DevicePtr) = default;
  DevicePtr operator+(std::uint64_t offset) const { return DevicePtr{value + offset}; }
};

enum class ArgKind : std::uint8_t { kBuffer = 1, kI64 = 2, kF32 = 3 };

struct KernelArgValue {
  ArgKind kind = ArgKind::kI64;
  DevicePtr ptr{};           // kBuffer: buffer base + offset
  std::uint64_t extent = 0;  // kBuffer: bytes available from ptr to buffer end
  std::int64_t i64 = 0;      // kI64
  float f32 = 0.0f;          // kF32
};

struct KernelTag {};
using KernelId = StrongId<KernelTag, std::uint32_t>;  // 1-based index into the registry

struct KernelDef {
  KernelId id;
  std::string_view name;
  std::span<const ArgKind> params;
  // Names of the parameters, for error messages and docs.
  std::span<const std::string_view> param_names;
  // Checks shapes and buffer extents; kinds were checked already.
  Status (*check_bounds)(std::span<const KernelArgValue> args);
};

// All kernels, in id order.
std::span<const KernelDef> all_kernels();
// nullptr when no kernel has this name / id.
const KernelDef* find_kernel(std::string_view name);
const KernelDef* find_kernel(KernelId id);

// Kind check + check_bounds, with an error naming the kernel and argument.
[[nodiscard]] Status validate_launch(const KernelDef& kernel, std::span<const KernelArgValue> args);

}  // namespace malv::accel
