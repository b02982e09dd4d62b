// The ATen executor as a plugin, libmalv_aten.so: the one part of the host
// that needs libtorch (about 400 MB of shared objects that take a good part
// of a second to load). As a plugin, loaded by the first guest that asks
// for a PyTorch operator (accel/aten_plugin_loader.h), `malv` and every
// program linking the host start without it, and the guest VM image, which
// packs `malv` with its libraries, stays small.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "accel/aten_operators.h"

namespace malv::accel {

inline constexpr std::uint32_t kAtenPluginAbi = 1;

struct AtenPluginOptions {
  std::vector<std::string> denied;  // AllowList::denied
  int intra_op_threads = 0;         // ExecutorOptions::intra_op_threads
};

// Entry points (extern "C", the only exported symbols).
inline constexpr const char* kAtenPluginAbiSymbol = "malv_aten_plugin_abi";
inline constexpr const char* kAtenCreateSymbol = "malv_aten_create_operators";
using AtenPluginAbiFn = std::uint32_t (*)();
// A new executor (owned by the caller; deleted through AtenOperators'
// virtual destructor, whose code is the plugin's).
using AtenCreateFn = AtenOperators* (*)(const AtenPluginOptions* options);

}  // namespace malv::accel
