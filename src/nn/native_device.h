// NativeDevice: an nn::Device that drives an accel::Backend in-process.
//
// No channel, no host, no validation by anyone else: buffers are backend
// allocations, every op is enqueued directly on one backend queue, and
// synchronize() waits for a Marker's completion. This is the baseline that
// RemoteDevice is measured against (what a guest pays for virtualisation).
// Launches are still checked with accel::validate_launch, so a wrong launch
// is an error here too rather than a stray memory access.
//
//   MALV_ASSIGN_OR_RETURN(auto device, NativeDevice::create_cpu({.workers = 2}));
//
// write() copies the caller's bytes into a staging buffer that lives until
// the copy has run (the backend reads host memory asynchronously).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "accel/backend.h"
#include "nn/device.h"

namespace malv::nn {

class NativeDevice final : public Device {
 public:
  // Drives `backend`, which must outlive the device, on a queue of its own.
  [[nodiscard]] static Result<std::unique_ptr<NativeDevice>> create(accel::Backend& backend);
  // Owns a CPU backend made with `options`.
  [[nodiscard]] static Result<std::unique_ptr<NativeDevice>> create_cpu(
      const accel::CpuBackendOptions& options);
  ~NativeDevice() override;

  std::string describe() const override { return description_; }
  Status write(const DeviceBuffer& dst, std::uint64_t offset,
               std::span<const std::byte> data) override;
  Status read(const DeviceBuffer& src, std::uint64_t offset, std::span<std::byte> out) override;
  Status synchronize() override;

 protected:
  Result<std::uint32_t> allocate_slot(std::uint64_t bytes) override;
  void release_slot(std::uint32_t slot) override;
  Status enqueue_launch(BuiltinKernel op, std::span<const Arg> args) override;

 private:
  NativeDevice(std::unique_ptr<accel::Backend> owned, accel::Backend& backend,
               accel::QueueId queue);

  // What an op was, packed with its sequence number into the completion
  // cookie: seq << 8 | what.
  enum What : std::uint8_t { kWrite = 0, kRead = 1, kMarker = 2, kFirstKernel = 3 };
  static void on_complete(void* context, std::uint64_t cookie, ErrorCode status);
  void enqueue(accel::Op op, std::uint8_t what);
  void reclaim_staging();

  struct Slot {
    accel::DevicePtr ptr{};
    std::uint64_t bytes = 0;
  };
  struct Staging {
    std::uint64_t seq = 0;
    std::vector<std::byte> data;
  };
  struct FailedOp {
    std::uint64_t seq = 0;
    std::uint8_t what = 0;
    ErrorCode status = ErrorCode::kOk;
  };

  std::unique_ptr<accel::Backend> owned_;
  accel::Backend& backend_;
  accel::QueueId queue_;
  std::string description_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<accel::DevicePtr> deferred_frees_;  // freed after the next synchronize
  std::deque<Staging> staging_;                   // in seq order
  std::vector<std::vector<std::byte>> spare_staging_;
  std::uint64_t submitted_seq_ = 0;

  // Written by backend threads.
  std::atomic<std::uint64_t> completed_seq_{0};
  std::mutex mu_;
  std::condition_variable marker_done_;
  std::uint64_t marker_seq_done_ = 0;    // guarded by mu_
  std::optional<FailedOp> first_error_;  // guarded by mu_
};

}  // namespace malv::nn
