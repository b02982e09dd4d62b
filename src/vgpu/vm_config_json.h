// The JSON form of a VM's settings: what the admin API's POST and PATCH
// /vms accept, what GET /vms shows under "limits", and what the admin state
// file (admin_state.h) keeps. One place, so the three cannot drift apart.
//
//   VmConfig config = vm->config();
//   MALV_TRY(apply_vm_fields(body, config, {"gpu_policy"}));  // others refused
//   nlohmann::json saved = vm_settings_json(config);          // apply_vm_fields reads it back
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string_view>

#include "malv/result.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

// Applies the settings present in `body` to `config`, checking types and
// ranges. A key that is neither a setting nor one of `also_allowed` (keys
// the caller handles itself) is refused with kInvalidArgument naming it, so
// a misspelt field is never silently dropped. "name" must match the
// config's name when present (a VM cannot be renamed).
[[nodiscard]] Status apply_vm_fields(const nlohmann::json& body, VmConfig& config,
                                     std::initializer_list<std::string_view> also_allowed = {});

// Every setting of `config`, keyed as apply_vm_fields reads them.
nlohmann::json vm_settings_json(const VmConfig& config);

}  // namespace malv::vgpu
