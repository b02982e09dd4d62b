// make_backend(): the backend for a name given on the command line or in
// the host's configuration, and the "auto" rule.
//
// "auto" asks the CUDA plugin for a device and takes the CPU when there is
// none, whatever the reason (no toolkit at build time, no driver, no device);
// the log line says which backend was picked and why, and `malv serve`
// prints it in its ready line. "cuda" never falls back: an operator who asked
// for the GPU gets the reason it is not there.
#include <fmt/format.h>

#include "accel/backend.h"
#include "base/log.h"

namespace malv::accel {
namespace {

std::unique_ptr<Backend> make_cpu(const BackendOptions& options) {
  return make_cpu_backend({.memory_bytes = options.memory_bytes,
                           .workers = options.workers,
                           .worker_nice = options.cpu_worker_nice});
}

Result<std::unique_ptr<Backend>> make_cuda(const BackendOptions& options) {
  return make_cuda_backend({.device = options.cuda_device, .memory_bytes = options.memory_bytes});
}

}  // namespace

Result<std::unique_ptr<Backend>> make_backend(std::string_view name,
                                              const BackendOptions& options) {
  if (name == "cpu") return make_cpu(options);
  if (name == "cuda") {
    Result<std::unique_ptr<Backend>> cuda = make_cuda(options);
    if (!cuda.ok()) return std::move(cuda).error().with_context("backend cuda");
    log::info("accel", "backend cuda: {}", (*cuda)->info().name);
    return cuda;
  }
  if (name == "auto") {
    Result<std::unique_ptr<Backend>> cuda = make_cuda(options);
    if (cuda.ok()) {
      log::info("accel", "backend auto: using cuda ({})", (*cuda)->info().name);
      return cuda;
    }
    const Error& why = cuda.error();
    if (why.code() == ErrorCode::kUnavailable || why.code() == ErrorCode::kUnimplemented) {
      log::info("accel", "backend auto: using cpu ({})", why.message());
    } else {
      // A device may be there but unusable: say so louder than "no GPU".
      log::warn("accel", "backend auto: using cpu, the CUDA backend failed: {}", why.to_string());
    }
    return make_cpu(options);
  }
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("unknown backend '{}' (cpu, cuda, auto)", name));
}

}  // namespace malv::accel
