// CheckpointWriter: one session's background writer of checkpoint snapshots.
//
// A session snapshots a guest's buffers into host memory in stream order,
// then hands the snapshot here, so the guest's stream goes on at once while
// a thread of this writer puts the file on disk (CheckpointStore::save,
// atomic and fsynced) and reports through the job's callback.
//
// Snapshot memory is host RAM a guest could otherwise grow without bound:
// reserve() counts it against the store's cap per session, and against the
// VM's host-memory quota when one is given, before the snapshot is taken,
// and the bytes return once the job is done. Each save checks the VM's
// checkpoint disk quota (CheckpointQuota) as it is at that moment.
//
// Destruction writes every queued job (a guest that died after its snapshot
// was taken still gets its file), runs their callbacks, and joins the
// thread; after the destructor returns no callback runs any more.
//
//   CheckpointWriter writer(store, "vm-a");
//   MALV_TRY(writer.reserve(bytes));
//   ... fill contents ...
//   writer.submit("run1", std::move(contents), bytes, [](Result<std::uint64_t> r) { ... });
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/byte_quota.h"
#include "offload/checkpoint_store.h"

namespace malv::offload {

// What the VM's limits say about its checkpoints (both optional).
struct CheckpointWriterLimits {
  std::shared_ptr<ByteQuota> host_memory;       // snapshots are charged here too
  std::function<CheckpointQuota()> disk_quota;  // read at every save
};

class CheckpointWriter {
 public:
  // Called on the writer thread with the file's size or the error.
  using Done = std::function<void(Result<std::uint64_t>)>;

  CheckpointWriter(const CheckpointStore& store, std::string vm, CheckpointWriterLimits limits = {})
      : store_(store), vm_(std::move(vm)), limits_(std::move(limits)) {}
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  [[nodiscard]] Status reserve(std::uint64_t bytes);
  void release(std::uint64_t bytes);
  // Queues a write of `contents` as `name`; releases `reserved` when done.
  void submit(std::string name, std::unique_ptr<CheckpointContents> contents,
              std::uint64_t reserved, Done done);

  const CheckpointStore& store() const { return store_; }
  const std::string& vm() const { return vm_; }

 private:
  struct Job {
    std::string name;
    std::unique_ptr<CheckpointContents> contents;
    std::uint64_t reserved = 0;
    Done done;
  };
  void run();

  const CheckpointStore& store_;
  const std::string vm_;
  const CheckpointWriterLimits limits_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;        // guarded by mutex_
  std::uint64_t reserved_ = 0;  // guarded by mutex_
  bool stopping_ = false;       // guarded by mutex_
  std::thread thread_;          // started by the first submit(); guarded by mutex_
};

}  // namespace malv::offload
