// AtenExecutor: runs PyTorch (ATen) operators, named by the guest, over a
// backend's memory, with the host's libtorch (issue 21: the `malv` torch
// device; docs/torch.md).
//
//   AtenExecutor exec({});
//   auto id = exec.intern("aten::add.Tensor");     // allow-list, once per name
//   auto returned = exec.run(*id, decoded_record, resolve_buffer);
//
// A guest names operators, never code: intern() accepts only `aten::`
// operators this libtorch has, with a CPU (or composite) kernel, on the
// allow-list (AllowList: everything but what reaches outside the VM's
// memory or the CPU, plus what the admin denies), and gives them ids.
// run() checks the whole record against the operator's schema before
// anything runs (seL4's decode-then-invoke): each value's kind against the
// argument's type, each tensor's dtype, sizes, strides and byte offset
// against the buffer `resolve` gives for its handle (the view may not reach
// past the buffer; no negative sizes or strides). Tensors become
// `at::from_blob` views of that memory: the operator reads and writes the
// VM's buffers in place (in-place and out= variants, and the running
// statistics batch norm updates). A functional operator's tensor returns
// are copied into the output tensors the record ends with (same sizes and
// dtype, else refused), so no output buffer travels. Non-tensor returns
// (an int, a float, a bool) come back as values.
//
// Errors, each for this call only: kNotFound (no such operator),
// kPermissionDenied (not allowed), kInvalidArgument (a value of the wrong
// kind, a bad view, an output that does not fit, or PyTorch's own check
// failing: its message, without the C++ backtrace), kOutOfRange (a view
// past its buffer), kUnimplemented (an argument type the wire cannot
// carry, e.g. a Generator other than the default, a Storage).
//
// Thread-safety: intern() and run() from any thread. Intra-op threads are
// libtorch's process-wide setting (Options::intra_op_threads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"
#include "proto/aten_record.h"

namespace malv::accel::aten {

// A tensor argument's buffer on the host.
struct BufferMemory {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
};
// The buffer a handle names for this caller, or the error to report
// (a forged or stale handle).
using ResolveBuffer = std::function<Result<BufferMemory>(std::uint64_t handle)>;

struct AllowList {
  // Substrings of an operator name that keep it off the list, on top of
  // the built-in ones (devices other than the CPU, file and pinned memory,
  // sparse, quantized and MKL-DNN layouts).
  std::vector<std::string> denied;
};

struct ExecutorOptions {
  AllowList allow;
  int intra_op_threads = 0;  // > 0: at::set_num_threads; 0: libtorch's default
};

class AtenExecutor {
 public:
  explicit AtenExecutor(ExecutorOptions options = {});
  ~AtenExecutor();
  AtenExecutor(const AtenExecutor&) = delete;
  AtenExecutor& operator=(const AtenExecutor&) = delete;

  // "aten::add.Tensor" (or "aten::relu" for the overload-less name).
  [[nodiscard]] Result<std::uint32_t> intern(std::string_view schema_name);
  // The interned operator's schema, as PyTorch prints it ("" for an unknown id).
  std::string schema(std::uint32_t id) const;
  // Why a name is off the allow-list, or "" when it is allowed.
  std::string denial(std::string_view schema_name) const;

  [[nodiscard]] Result<std::vector<proto::AtenValue>> run(std::uint32_t id,
                                                          std::span<const proto::AtenValue> args,
                                                          const ResolveBuffer& resolve);

 private:
  struct Operator;
  const Operator* find(std::uint32_t id) const;

  ExecutorOptions options_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Operator>> operators_;  // id - 1
};

}  // namespace malv::accel::aten
