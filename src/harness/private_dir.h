// PrivateDir: a fresh directory under $TMPDIR for one run's sockets, config,
// logs and checkpoints (`malv demo`, the benchmarks), removed with
// everything in it when the object goes away, however the run ends.
//
//   MALV_ASSIGN_OR_RETURN(auto dir, PrivateDir::create("sharing"));
//   std::string socket = dir->file("malv.sock");  // /tmp/malv-sharing-XXXXXX/malv.sock
#pragma once

#include <memory>
#include <string>

#include "malv/result.h"

namespace malv::harness {

class PrivateDir {
 public:
  // mkdtemp of $TMPDIR/malv-<what>-XXXXXX (mode 0700).
  [[nodiscard]] static Result<std::unique_ptr<PrivateDir>> create(const std::string& what);
  ~PrivateDir();
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit PrivateDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace malv::harness
