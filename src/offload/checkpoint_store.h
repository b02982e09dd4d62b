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
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "offload/checkpoint_file.h"

namespace malv::offload {

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
                                           const CheckpointContents& contents) const;
  // Reads and verifies a checkpoint: kNotFound when it does not exist,
  // kDataLoss when it is corrupt or truncated.
  [[nodiscard]] Result<CheckpointImage> load(std::string_view vm, std::string_view name) const;
  // The VM's checkpoint names, sorted (temporary files are not checkpoints).
  [[nodiscard]] Result<std::vector<std::string>> list(std::string_view vm) const;
  // Deletes the temporary files in every VM directory; how many.
  std::size_t remove_stale_temporaries() const;

  std::string path_of(std::string_view vm, std::string_view name) const;
  const std::string& root() const { return options_.root; }
  std::uint64_t max_checkpoint_bytes() const { return options_.max_checkpoint_bytes; }

 private:
  explicit CheckpointStore(CheckpointStoreOptions options) : options_(std::move(options)) {}
  Result<std::string> vm_directory(std::string_view vm, bool create) const;

  CheckpointStoreOptions options_;
  mutable std::atomic<std::uint64_t> temp_counter_{0};
};

}  // namespace malv::offload
