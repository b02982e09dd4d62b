// CheckpointStore: the host's checkpoint directory, one subdirectory per VM.
//
// The checkpoint service (kCheckpointSave/kCheckpointRestore) keeps each
// VM's checkpoints as MALVCK01 files (offload/checkpoint_file.h) in
// <root>/<vm>/<name>. Every call names the VM, which the session supplies
// from its admission, never the guest, so a VM only ever reaches its own
// directory; checkpoint names are plain file names ([A-Za-z0-9._-], 1..63
// bytes, not starting with '.'), so they cannot climb out of it.
//
// Writes are atomic: a temporary file ".tmp-<name>-<pid>-<n>" in the same
// directory, fsync, rename over <name>, fsync of the directory. A crash
// leaves the previous checkpoint or the new one, plus at most a temporary
// file, which names never collide with (they start with '.') and which
// open() deletes. One host process owns a root at a time.
//
//   MALV_ASSIGN_OR_RETURN(auto store, CheckpointStore::open({.root = dir}));
//   MALV_ASSIGN_OR_RETURN(std::uint64_t bytes, store->save("vm-a", "run1", contents));
//   MALV_ASSIGN_OR_RETURN(CheckpointImage image, store->load("vm-a", "run1"));
//
// Thread-safe: sessions of many VMs save and load concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"
#include "offload/checkpoint_file.h"

namespace malv::offload {

// A VM's share of the checkpoint disk: the bytes of its stored checkpoint
// files together, and how many it keeps (0: unlimited). A save that would
// pass either fails with kResourceExhausted and leaves what is stored as it
// was; replacing a checkpoint counts the new file instead of the old.
struct CheckpointQuota {
  std::uint64_t max_bytes = 0;
  std::uint32_t max_count = 0;
};

// What a VM has stored: file bytes and checkpoints.
struct CheckpointUsage {
  std::uint64_t bytes = 0;
  std::uint32_t count = 0;
};

struct CheckpointStoreOptions {
  std::string root;  // created (0700) if missing
  // Cap on one checkpoint's entries plus metadata; a session also holds at
  // most this many bytes of snapshots waiting to be written.
  std::uint64_t max_checkpoint_bytes = 4ull << 30;
};

class CheckpointStore {
 public:
  // Creates the root and deletes temporary files that a crashed writer left.
  [[nodiscard]] static Result<std::unique_ptr<CheckpointStore>> open(
      CheckpointStoreOptions options);

  // kInvalidArgument unless `name` is a valid checkpoint (or VM) name.
  [[nodiscard]] static Status validate_name(std::string_view name, std::string_view what);

  // Writes <root>/<vm>/<name> atomically; the file's size. kResourceExhausted
  // past the cap; I/O errors as errno says (kIo, kResourceExhausted for ENOSPC).
  [[nodiscard]] Result<std::uint64_t> save(std::string_view vm, std::string_view name,
                                           const CheckpointContents& contents,
                                           CheckpointQuota quota = {}) const;
  // Reads and verifies a checkpoint: kNotFound when it does not exist,
  // kDataLoss when it is corrupt or truncated.
  [[nodiscard]] Result<CheckpointImage> load(std::string_view vm, std::string_view name) const;
  // The VM's checkpoint names, sorted (temporary files are not checkpoints).
  [[nodiscard]] Result<std::vector<std::string>> list(std::string_view vm) const;
  // What the VM's directory holds now (no directory: nothing).
  [[nodiscard]] CheckpointUsage usage(std::string_view vm) const;
  // Deletes the temporary files in every VM directory; how many.
  std::size_t remove_stale_temporaries() const;

  std::string path_of(std::string_view vm, std::string_view name) const;
  const std::string& root() const { return options_.root; }
  std::uint64_t max_checkpoint_bytes() const { return options_.max_checkpoint_bytes; }

 private:
  explicit CheckpointStore(CheckpointStoreOptions options) : options_(std::move(options)) {}
  Result<std::string> vm_directory(std::string_view vm, bool create) const;

  // Usage of `dir`, leaving out the checkpoint `except` (being replaced).
  CheckpointUsage usage_of(const std::string& dir, std::string_view except) const;
  // One VM's saves check their quota and write one at a time: two
  // sessions of a VM cannot both pass the check with room for one.
  std::mutex& save_mutex(std::string_view vm) const;

  CheckpointStoreOptions options_;
  mutable std::atomic<std::uint64_t> temp_counter_{0};
  mutable std::mutex save_mutexes_mutex_;
  mutable std::map<std::string, std::unique_ptr<std::mutex>, std::less<>> save_mutexes_;
};

}  // namespace malv::offload
