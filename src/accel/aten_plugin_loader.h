// The host's PyTorch operators, from the ATen plugin (accel/aten/
// aten_plugin.h), loaded when first used: make_aten_operators() returns at
// once and loads nothing; the first intern() loads libmalv_aten.so (and
// libtorch) once per process, and a host where it is missing or fails to
// load answers every call with kUnimplemented and the reason.
//
// Where: $MALV_ATEN_PLUGIN if set, else the installed plugin beside an
// installed malv, else the path the build put it at (MALV_ATEN_PLUGIN,
// defined only when libtorch-dev was found).
#pragma once

#include <memory>

#include "accel/aten/aten_plugin.h"
#include "accel/aten_operators.h"

namespace malv::accel {

std::unique_ptr<AtenOperators> make_aten_operators(AtenPluginOptions options = {});

}  // namespace malv::accel
