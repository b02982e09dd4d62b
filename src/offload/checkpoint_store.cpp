#include "offload/checkpoint_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/atomic_file.h"
#include "base/log.h"

namespace malv::offload {
namespace {

constexpr std::string_view kTempPrefix = ".tmp-";
constexpr std::size_t kMaxNameBytes = 63;

Status make_directory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error(fmt::format("create directory {}", path), errno);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error(fmt::format("stat {}", path), errno);
  if (!S_ISDIR(st.st_mode)) {
    return Error(ErrorCode::kFailedPrecondition, fmt::format("{} is not a directory", path));
  }
  return ok_status();
}

// Names in a directory, without "." and "..".
std::vector<std::string> directory_names(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::open(CheckpointStoreOptions options) {
  if (options.root.empty()) {
    return Error(ErrorCode::kInvalidArgument, "checkpoint store needs a root directory");
  }
  while (options.root.size() > 1 && options.root.back() == '/') options.root.pop_back();
  MALV_TRY_CONTEXT(make_directory(options.root), "opening the checkpoint store");
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(std::move(options)));
  if (const std::size_t removed = store->remove_stale_temporaries(); removed > 0) {
    log::info("offload", "checkpoint store {}: removed {} unfinished temporary files",
              store->root(), removed);
  }
  return store;
}

Status CheckpointStore::validate_name(std::string_view name, std::string_view what) {
  const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
  if (name.empty() || name.size() > kMaxNameBytes || name.front() == '.' || !charset_ok) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} '{}' is not a plain name (1..{} of [A-Za-z0-9._-], not starting "
                             "with '.')",
                             what, name, kMaxNameBytes));
  }
  return ok_status();
}

std::string CheckpointStore::path_of(std::string_view vm, std::string_view name) const {
  return fmt::format("{}/{}/{}", options_.root, vm, name);
}

Result<std::string> CheckpointStore::vm_directory(std::string_view vm, bool create) const {
  MALV_TRY(validate_name(vm, "VM name"));
  std::string dir = fmt::format("{}/{}", options_.root, vm);
  if (create) MALV_TRY(make_directory(dir));
  return dir;
}

std::mutex& CheckpointStore::save_mutex(std::string_view vm) const {
  std::lock_guard lock(save_mutexes_mutex_);
  auto it = save_mutexes_.find(vm);
  if (it == save_mutexes_.end()) {
    it = save_mutexes_.emplace(std::string(vm), std::make_unique<std::mutex>()).first;
  }
  return *it->second;
}

CheckpointUsage CheckpointStore::usage_of(const std::string& dir, std::string_view except) const {
  CheckpointUsage usage;
  for (const std::string& n : directory_names(dir)) {
    if (n == except || !validate_name(n, "").ok()) continue;
    struct stat st {};
    if (::stat(fmt::format("{}/{}", dir, n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    usage.bytes += static_cast<std::uint64_t>(st.st_size);
    ++usage.count;
  }
  return usage;
}

CheckpointUsage CheckpointStore::usage(std::string_view vm) const {
  Result<std::string> dir = vm_directory(vm, false);
  if (!dir.ok()) return {};
  return usage_of(dir.value(), {});
}

Result<std::uint64_t> CheckpointStore::save(std::string_view vm, std::string_view name,
                                            const CheckpointContents& contents,
                                            CheckpointQuota quota) const {
  MALV_TRY(validate_name(name, "checkpoint name"));
  std::uint64_t bytes = contents.metadata.size();
  for (const CheckpointBlob& e : contents.entries) bytes += e.bytes.size();
  if (bytes > options_.max_checkpoint_bytes) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("checkpoint of {} bytes exceeds the host's cap of {}", bytes,
                             options_.max_checkpoint_bytes));
  }
  MALV_ASSIGN_OR_RETURN(std::string dir, vm_directory(vm, true));
  const std::string path = fmt::format("{}/{}", dir, name);
  std::lock_guard quota_lock(save_mutex(vm));
  if (quota.max_bytes != 0 || quota.max_count != 0) {
    const CheckpointUsage others = usage_of(dir, name);
    const std::uint64_t file_bytes = contents.file_bytes();
    if (quota.max_count != 0 && others.count + 1 > quota.max_count) {
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("VM '{}' checkpoint count: {} stored + 1 new > limit {}", vm,
                               others.count, quota.max_count));
    }
    if (quota.max_bytes != 0 &&
        (file_bytes > quota.max_bytes || others.bytes > quota.max_bytes - file_bytes)) {
      return Error(ErrorCode::kResourceExhausted,
                   fmt::format("VM '{}' checkpoint disk: {} bytes stored + {} new > limit {}", vm,
                               others.bytes, file_bytes, quota.max_bytes));
    }
  }
  AtomicWriteOptions options;
  options.temp_path = fmt::format("{}/{}{}-{}-{}", dir, kTempPrefix, name, ::getpid(),
                                  temp_counter_.fetch_add(1, std::memory_order_relaxed));
  options.mode = 0600;
  MALV_TRY(write_file_atomically(
      path,
      [&](int fd) {
        return encode_checkpoint(
            contents, [&](std::span<const std::byte> part) { return write_all(fd, part, path); });
      },
      options));
  return contents.file_bytes();
}

Result<CheckpointImage> CheckpointStore::load(std::string_view vm, std::string_view name) const {
  MALV_TRY(validate_name(name, "checkpoint name"));
  MALV_ASSIGN_OR_RETURN(std::string dir, vm_directory(vm, false));
  const std::string path = fmt::format("{}/{}", dir, name);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error(fmt::format("open {}", path), errno);
  // Generous: entry table, metadata and framing on top of the payload cap.
  const std::uint64_t limit = options_.max_checkpoint_bytes + (16ull << 20);
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > limit) {
    return Error(ErrorCode::kDataLoss,
                 fmt::format("{} is not a checkpoint this host wrote ({} bytes)", path,
                             static_cast<std::uint64_t>(st.st_size)));
  }
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> file, read_file(path));
  Result<CheckpointImage> image = CheckpointImage::parse(std::move(file));
  if (!image.ok()) return std::move(image).error().with_context("reading checkpoint " + path);
  return image;
}

Result<std::vector<std::string>> CheckpointStore::list(std::string_view vm) const {
  MALV_ASSIGN_OR_RETURN(std::string dir, vm_directory(vm, false));
  std::vector<std::string> names = directory_names(dir);
  std::erase_if(names, [](const std::string& n) { return !validate_name(n, "").ok(); });
  return names;
}

std::size_t CheckpointStore::remove_stale_temporaries() const {
  std::size_t removed = 0;
  for (const std::string& vm : directory_names(options_.root)) {
    const std::string dir = fmt::format("{}/{}", options_.root, vm);
    for (const std::string& name : directory_names(dir)) {
      if (!name.starts_with(kTempPrefix)) continue;
      if (::unlink(fmt::format("{}/{}", dir, name).c_str()) == 0) ++removed;
    }
  }
  return removed;
}

}  // namespace malv::offload
