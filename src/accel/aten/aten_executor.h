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
// libtorch's process-wide setting (Options::intra_op_threads), applied on
// each thread that runs a call as a native process applies it on its main
// thread (at::init_num_threads).
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

#include "accel/aten_operators.h"
#include "malv/aten_record.h"
#include "malv/result.h"

namespace malv::accel::aten {

using accel::BufferMemory;
using accel::ResolveBuffer;

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

// A call checked whole and bound to the VM's memory, to run later (on the
// worker the scheduler picks, in stream order): decode-then-invoke. The
// buffers it views must stay allocated until it has run.
class PreparedCall {
 public:
  PreparedCall(PreparedCall&&) noexcept;
  PreparedCall& operator=(PreparedCall&&) noexcept;
  ~PreparedCall();
  std::string_view name() const;  // "aten::add.Tensor"
  // This call's expected run time on this host: the operator's recent time
  // per element of its tensors, times this call's elements (0 before the
  // operator's first run).
  std::int64_t estimated_ns() const;
  // Runs it (once): the non-tensor returns, or PyTorch's error for this call.
  [[nodiscard]] Result<std::vector<wire::AtenValue>> run();

 private:
  friend class AtenExecutor;
  struct State;
  explicit PreparedCall(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class AtenExecutor final : public AtenOperators {
 public:
  explicit AtenExecutor(ExecutorOptions options = {});
  ~AtenExecutor();
  AtenExecutor(const AtenExecutor&) = delete;
  AtenExecutor& operator=(const AtenExecutor&) = delete;

  // "aten::add.Tensor" (or "aten::relu" for the overload-less name).
  [[nodiscard]] Result<std::uint32_t> intern(std::string_view schema_name) override;
  // The interned operator's schema, as PyTorch prints it ("" for an unknown id).
  std::string schema(std::uint32_t id) const;
  // Why a name is off the allow-list, or "" when it is allowed.
  std::string denial(std::string_view schema_name) const;

  // Every check of run(), nothing run yet.
  [[nodiscard]] Result<PreparedCall> prepare(std::uint32_t id,
                                             std::span<const wire::AtenValue> args,
                                             const ResolveBuffer& resolve) const;
  // prepare() as a task for a backend queue (accel::HostCall).
  [[nodiscard]] Result<std::shared_ptr<AtenTask>> prepare_task(
      std::uint32_t id, std::span<const wire::AtenValue> args,
      const ResolveBuffer& resolve) const override;
  // prepare() and run() at once.
  [[nodiscard]] Result<std::vector<wire::AtenValue>> run(std::uint32_t id,
                                                         std::span<const wire::AtenValue> args,
                                                         const ResolveBuffer& resolve);

 private:
  struct Operator;
  const Operator* find(std::uint32_t id) const;

  ExecutorOptions options_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Operator>> operators_;  // id - 1
};

}  // namespace malv::accel::aten
