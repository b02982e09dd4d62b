// Loading the ATen plugin on first use (see aten_plugin_loader.h).
#include "accel/aten_plugin_loader.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "base/install_paths.h"
#include "base/log.h"

namespace malv::accel {
namespace {

Result<AtenCreateFn> load_plugin() {
#ifdef MALV_ATEN_PLUGIN
  const char* env = std::getenv("MALV_ATEN_PLUGIN");
  std::string path = env != nullptr && env[0] != '\0' ? env : "";
  if (path.empty()) path = installed_path(MALV_INSTALLED_ATEN_PLUGIN);
  if (path.empty()) path = MALV_ATEN_PLUGIN;
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("cannot load the PyTorch executor {}: {}", path,
                             why != nullptr ? why : "unknown dlopen error"));
  }
  auto abi = reinterpret_cast<AtenPluginAbiFn>(::dlsym(handle, kAtenPluginAbiSymbol));
  auto create = reinterpret_cast<AtenCreateFn>(::dlsym(handle, kAtenCreateSymbol));
  if (abi == nullptr || create == nullptr) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("{} is not a MaLV-OS PyTorch executor (missing entry points)", path));
  }
  if (abi() != kAtenPluginAbi) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("{} speaks plugin ABI {}, this malv speaks {}: rebuild both together",
                             path, abi(), kAtenPluginAbi));
  }
  log::info("accel", "PyTorch executor loaded from {}", path);
  return create;
#else
  return Error(ErrorCode::kUnimplemented,
               "this host was built without libtorch-dev: it has no PyTorch executor");
#endif
}

// Loads the plugin on the first intern(); the plugin stays loaded for the
// life of the process (the executor's code is its).
class LazyAtenOperators final : public AtenOperators {
 public:
  explicit LazyAtenOperators(AtenPluginOptions options) : options_(std::move(options)) {}

  Result<std::uint32_t> intern(std::string_view schema_name) override {
    std::call_once(once_, [this] { load(); });
    if (!loaded_.ok()) return loaded_.error();
    return executor_->intern(schema_name);
  }
  Result<std::shared_ptr<AtenTask>> prepare_task(std::uint32_t id,
                                                 std::span<const wire::AtenValue> args,
                                                 const ResolveBuffer& resolve) const override {
    // An id comes from intern(), which loaded the executor.
    if (executor_ == nullptr) {
      return Error(ErrorCode::kNotFound, fmt::format("operator id {} was never interned", id));
    }
    return executor_->prepare_task(id, args, resolve);
  }

 private:
  void load() {
    Result<AtenCreateFn> create = load_plugin();
    if (!create.ok()) {
      log::warn("accel", "{}", create.error().message());
      loaded_ = create.error();
      return;
    }
    AtenOperators* made = (*create)(&options_);
    if (made == nullptr) {
      loaded_ = Error(ErrorCode::kUnimplemented, "the PyTorch executor failed to start");
      return;
    }
    executor_.reset(made);
  }

  const AtenPluginOptions options_;
  std::once_flag once_;
  Status loaded_ = ok_status();
  std::unique_ptr<AtenOperators> executor_;
};

}  // namespace

std::unique_ptr<AtenOperators> make_aten_operators(AtenPluginOptions options) {
  return std::make_unique<LazyAtenOperators>(std::move(options));
}

}  // namespace malv::accel
