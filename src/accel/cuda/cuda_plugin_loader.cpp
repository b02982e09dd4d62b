// Finding and loading the CUDA backend plugin (see cuda_plugin.h for why it
// is a plugin).
//
// Where: $MALV_CUDA_PLUGIN if set, else the path the build put it at
// (MALV_CUDA_PLUGIN, defined by src/accel/CMakeLists.txt only when the
// toolkit was found), the same way MLaaS modules are found.
//
// Order of the checks, so that the error says what is really missing:
//  1. this build has a plugin at all (else kUnimplemented);
//  2. the NVIDIA driver library libcuda.so.1 loads (else kUnavailable, "no
//     CUDA device: ... not installed"): the usual case on CI and CPU hosts;
//  3. the plugin loads (its cuBLAS dependency too) and speaks our ABI;
//  4. the plugin's create() finds a device (cuInit, the device ordinal).
// The outcome of 1-3 is computed once per process; the plugin and the
// driver stay loaded for the life of the process (backends created by the
// plugin must never outlive its code).
#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "accel/cuda/cuda_plugin.h"
#include "base/install_paths.h"
#include "base/log.h"

namespace malv::accel {
namespace {

struct LoadedPlugin {
  CudaCreateBackendFn create = nullptr;
  CudaRunBaselineFn run_baseline = nullptr;
};

#ifdef MALV_CUDA_PLUGIN
std::string dl_error() {
  const char* why = ::dlerror();
  return why != nullptr ? why : "unknown dlopen error";
}

Result<LoadedPlugin> load_plugin_once() {
  // The driver first: without it the plugin cannot load either, and this
  // is the message an operator on a CPU-only host should see.
  if (::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) == nullptr) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("no CUDA device: the NVIDIA driver library libcuda.so.1 is not "
                             "installed ({})",
                             dl_error()));
  }
  const char* env = std::getenv("MALV_CUDA_PLUGIN");
  std::string path = env != nullptr && env[0] != '\0' ? env : "";
  // An installed malv: <prefix>/bin/malv finds <prefix>/lib/malv/.
  if (path.empty()) path = installed_path(MALV_INSTALLED_CUDA_PLUGIN);
  if (path.empty()) path = MALV_CUDA_PLUGIN;
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("cannot load the CUDA backend plugin {}: {}", path, dl_error()));
  }
  auto abi = reinterpret_cast<CudaPluginAbiFn>(::dlsym(handle, kCudaPluginAbiSymbol));
  LoadedPlugin plugin;
  plugin.create = reinterpret_cast<CudaCreateBackendFn>(::dlsym(handle, kCudaCreateBackendSymbol));
  plugin.run_baseline =
      reinterpret_cast<CudaRunBaselineFn>(::dlsym(handle, kCudaRunBaselineSymbol));
  if (abi == nullptr || plugin.create == nullptr || plugin.run_baseline == nullptr) {
    return Error(
        ErrorCode::kFailedPrecondition,
        fmt::format("{} is not a MaLV-OS CUDA backend plugin (missing entry points)", path));
  }
  if (abi() != kCudaPluginAbi) {
    return Error(ErrorCode::kFailedPrecondition,
                 fmt::format("{} speaks plugin ABI {}, this malv speaks {}: rebuild both together",
                             path, abi(), kCudaPluginAbi));
  }
  log::debug("accel", "cuda: loaded backend plugin {}", path);
  return plugin;
}
#endif

const Result<LoadedPlugin>& plugin() {
#ifdef MALV_CUDA_PLUGIN
  static const Result<LoadedPlugin> loaded = load_plugin_once();
#else
  static const Result<LoadedPlugin> loaded =
      Error(ErrorCode::kUnimplemented,
            "the CUDA backend is not built into this malv (no CUDA toolkit was found when it was "
            "configured, or MALV_WITH_CUDA was off)");
#endif
  return loaded;
}

}  // namespace

bool cuda_backend_built() {
#ifdef MALV_CUDA_PLUGIN
  return true;
#else
  return false;
#endif
}

Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  const Result<LoadedPlugin>& loaded = plugin();
  if (!loaded.ok()) return loaded.error();
  CudaPluginOptions plugin_options;
  plugin_options.backend = options;
  plugin_options.log_level = static_cast<int>(log::level());
  Result<std::unique_ptr<Backend>> out =
      Error(ErrorCode::kInternal, "the CUDA backend plugin did not answer");
  loaded->create(&plugin_options, &out);
  return out;
}

Result<CudaBaseline> run_cuda_baseline(const CudaBaselineRequest& request) {
  const Result<LoadedPlugin>& loaded = plugin();
  if (!loaded.ok()) return loaded.error();
  Result<CudaBaseline> out = Error(ErrorCode::kInternal, "the CUDA backend plugin did not answer");
  loaded->run_baseline(&request, &out);
  return out;
}

}  // namespace malv::accel
