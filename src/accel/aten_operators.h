// AtenOperators: what the host's dispatcher needs of an executor of
// PyTorch (ATen) operators, without libtorch. accel/aten/aten_executor.h
// implements it where libtorch-dev is installed; a host without it has
// none, and the torch device is refused there.
//
//   Result<std::uint32_t> id = ops.intern("aten::add.Tensor");
//   Result<std::shared_ptr<AtenTask>> task = ops.prepare_task(*id, record, resolve);
//   backend.enqueue(queue, HostCall{*task}, done);   // runs in stream order
//   ... after done: task->returns() or task->error_text()
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "accel/backend.h"
#include "malv/aten_record.h"
#include "malv/result.h"

namespace malv::accel {

// A tensor argument's buffer on the host.
struct BufferMemory {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
};
// The buffer a handle names for this caller, or the error to report
// (a forged or stale handle).
using ResolveBuffer = std::function<Result<BufferMemory>(std::uint64_t handle)>;

// A checked operator call bound to a VM's memory: run by a backend worker
// in stream order (an accel::HostCall). After run(): the non-tensor
// returns when it succeeded, PyTorch's message when it failed.
class AtenTask : public HostTask {
 public:
  virtual std::string_view name() const = 0;  // "aten::add.Tensor"
  virtual const std::vector<wire::AtenValue>& returns() const = 0;
  virtual const std::string& error_text() const = 0;
  // How long this call should take, from the operator's recent runs on
  // this host scaled to this call's size (0 before its first run): the
  // scheduler's estimate of its device time.
  virtual std::int64_t estimated_ns() const { return 0; }
};

class AtenOperators {
 public:
  virtual ~AtenOperators() = default;
  // "aten::add.Tensor" -> an id; kNotFound, kPermissionDenied (off the
  // allow-list) or kInvalidArgument with the reason.
  [[nodiscard]] virtual Result<std::uint32_t> intern(std::string_view schema_name) = 0;
  // The record checked whole against the operator's schema and every view
  // against its buffer; nothing runs until the task does.
  [[nodiscard]] virtual Result<std::shared_ptr<AtenTask>> prepare_task(
      std::uint32_t id, std::span<const wire::AtenValue> args,
      const ResolveBuffer& resolve) const = 0;
};

}  // namespace malv::accel
