#include "offload/checkpoint_writer.h"

#include <fmt/format.h>

#include "base/log.h"

namespace malv::offload {

CheckpointWriter::~CheckpointWriter() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  wake_.notify_all();
  if (thread.joinable()) thread.join();
}

Status CheckpointWriter::reserve(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  const std::uint64_t cap = store_.max_checkpoint_bytes();
  if (bytes > cap || reserved_ > cap - bytes) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("checkpoint of {} bytes with {} bytes of snapshots still being "
                             "written exceeds the host's cap of {}",
                             bytes, reserved_, cap));
  }
  if (limits_.host_memory) MALV_TRY(limits_.host_memory->reserve(bytes));
  if (limits_.disk_quota) {
    // A checkpoint larger than the whole disk quota fails before its snapshot.
    const CheckpointQuota quota = limits_.disk_quota();
    if (quota.max_bytes != 0 && bytes > quota.max_bytes) {
      if (limits_.host_memory) limits_.host_memory->release(bytes);
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("VM '{}' checkpoint disk: a checkpoint of {} bytes > limit {}", vm_,
                               bytes, quota.max_bytes));
    }
  }
  reserved_ += bytes;
  return ok_status();
}

void CheckpointWriter::release(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  reserved_ -= bytes;
  if (limits_.host_memory) limits_.host_memory->release(bytes);
}

void CheckpointWriter::submit(std::string name, std::unique_ptr<CheckpointContents> contents,
                              std::uint64_t reserved, Done done) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back({std::move(name), std::move(contents), reserved, std::move(done)});
    if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
  }
  wake_.notify_one();
}

void CheckpointWriter::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and everything is written
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    Result<std::uint64_t> written =
        store_.save(vm_, job.name, *job.contents,
                    limits_.disk_quota ? limits_.disk_quota() : CheckpointQuota{});
    if (!written.ok()) {
      log::error("offload", "VM {}: checkpoint {} was not written: {}", vm_,
                 store_.path_of(vm_, job.name), written.error().to_string());
    }
    job.contents.reset();  // the snapshot's memory goes back before the guest hears
    release(job.reserved);
    job.done(std::move(written));
    lock.lock();
  }
}

}  // namespace malv::offload
