// libmalv_aten.so's entry points (see aten_plugin.h).
#include "accel/aten/aten_plugin.h"

#include "accel/aten/aten_executor.h"

extern "C" __attribute__((visibility("default"))) std::uint32_t malv_aten_plugin_abi() {
  return malv::accel::kAtenPluginAbi;
}

extern "C" __attribute__((visibility("default"))) malv::accel::AtenOperators*
malv_aten_create_operators(const malv::accel::AtenPluginOptions* options) {
  try {
    malv::accel::aten::ExecutorOptions executor;
    if (options != nullptr) {
      executor.allow.denied = options->denied;
      executor.intra_op_threads = options->intra_op_threads;
    }
    return new malv::accel::aten::AtenExecutor(std::move(executor));
  } catch (...) {
    return nullptr;
  }
}
