// Atomic files: a file is replaced whole or not at all.
//
// write_file_atomically() writes a temporary file in the target's directory,
// fsyncs it, renames it over the target and fsyncs the directory, so a crash
// at any point leaves the old file or the new one under the target name,
// never a torn mix; at most the temporary file is left behind, and whoever
// owns the directory may delete such leftovers.
//
//   MALV_TRY(write_file_atomically(path, bytes));
//   // or, streaming, with a temporary name the caller recognises later:
//   MALV_TRY(write_file_atomically(path, [&](int fd) { return write_all(fd, part, path); },
//                                  {.temp_path = dir + "/.tmp-x", .mode = 0600}));
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv {

struct AtomicWriteOptions {
  std::string temp_path;      // empty: "<path>.tmp.<pid>"; must be in the same directory
  std::uint32_t mode = 0644;  // permissions of the new file
};

// Writes the content into the open temporary file (its descriptor).
using FileFiller = std::function<Status(int fd)>;

[[nodiscard]] Status write_file_atomically(const std::string& path, const FileFiller& fill,
                                           const AtomicWriteOptions& options = {});
[[nodiscard]] Status write_file_atomically(const std::string& path,
                                           std::span<const std::byte> bytes);

// write(2) until every byte is written; `what` names the file in errors.
[[nodiscard]] Status write_all(int fd, std::span<const std::byte> bytes, std::string_view what);
// Makes renames and unlinks in `dir` durable.
[[nodiscard]] Status fsync_directory(const std::string& dir);
[[nodiscard]] Result<std::vector<std::byte>> read_file(const std::string& path);

}  // namespace malv
