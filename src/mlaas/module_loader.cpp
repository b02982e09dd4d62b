// dlopen + descriptor validation for MLaaS modules.
#include "mlaas/module_loader.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstring>
#include <set>

#include "mlaas/policy_class.h"

namespace malv::mlaas {
namespace {

constexpr std::uint32_t kMaxPolicies = 256;
constexpr std::size_t kMaxNameLength = 64;

// Names appear in commands and logs: keep them short and plain.
bool valid_name(const char* name) {
  if (name == nullptr || name[0] == '\0') return false;
  std::size_t length = std::strlen(name);
  if (length > kMaxNameLength) return false;
  for (std::size_t i = 0; i < length; ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Error invalid(std::string_view origin, std::string message) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("module {}: invalid descriptor: {}", origin, message));
}

}  // namespace

LoadedModule::~LoadedModule() {
  if (handle_ != nullptr) dlclose(handle_);
}

const malv_policy* LoadedModule::find_policy(std::string_view policy_name) const {
  for (std::uint32_t i = 0; i < descriptor_->policy_count; ++i) {
    if (policy_name == descriptor_->policies[i].name) return &descriptor_->policies[i];
  }
  return nullptr;
}

Status ModuleLoader::validate(const malv_mlaas_module* d, std::string_view origin) {
  if (d == nullptr) {
    return invalid(origin, fmt::format("{}() returned NULL", MALV_MLAAS_ENTRY_POINT));
  }
  if (d->abi_version != MALV_MLAAS_ABI_VERSION) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("module {}: built against MLaaS ABI version {}, the host speaks "
                             "version {}; rebuild it against this include/malv/mlaas.h",
                             origin, d->abi_version, MALV_MLAAS_ABI_VERSION));
  }
  if (!valid_name(d->name)) {
    return invalid(origin, "module name must be 1-64 characters of [A-Za-z0-9_.-]");
  }
  if (d->version == nullptr || d->version[0] == '\0') {
    return invalid(origin, fmt::format("module '{}' has an empty version string", d->name));
  }
  if (d->policy_count == 0 || d->policy_count > kMaxPolicies || d->policies == nullptr) {
    return invalid(
        origin, fmt::format("module '{}' must have 1-{} policies, has {}{}", d->name, kMaxPolicies,
                            d->policy_count, d->policies == nullptr ? " (policies is NULL)" : ""));
  }
  std::set<std::string_view> names;
  for (std::uint32_t i = 0; i < d->policy_count; ++i) {
    const malv_policy& p = d->policies[i];
    if (!valid_name(p.name)) {
      return invalid(origin, fmt::format("policy {} of '{}': name must be 1-64 characters of "
                                         "[A-Za-z0-9_.-]",
                                         i, d->name));
    }
    if (!policy_class_from_abi(p.policy_class)) {
      return invalid(origin, fmt::format("policy '{}': unknown class {}", p.name, p.policy_class));
    }
    if (p.create == nullptr || p.destroy == nullptr || p.decide == nullptr) {
      return invalid(origin, fmt::format("policy '{}': create, destroy and decide must not be "
                                         "NULL",
                                         p.name));
    }
    if (p.enqueue_inputs != nullptr && p.policy_class != MALV_POLICY_GPU_SCHED) {
      return invalid(origin, fmt::format("policy '{}': enqueue_inputs is for gpu_sched policies "
                                         "only (class {})",
                                         p.name, p.policy_class));
    }
    if (!names.insert(p.name).second) {
      return invalid(origin, fmt::format("policy name '{}' appears twice", p.name));
    }
  }
  return ok_status();
}

Result<std::shared_ptr<LoadedModule>> ModuleLoader::open(const std::string& path) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Error(ErrorCode::kNotFound,
                 fmt::format("module {}: cannot load: {}", path, why ? why : "unknown error"));
  }
  dlerror();
  void* symbol = dlsym(handle, MALV_MLAAS_ENTRY_POINT);
  if (symbol == nullptr) {
    dlclose(handle);
    return Error(ErrorCode::kNotFound,
                 fmt::format("module {}: no symbol '{}' (is it exported as extern \"C\" with "
                             "MALV_MLAAS_EXPORT?)",
                             path, MALV_MLAAS_ENTRY_POINT));
  }
  malv_mlaas_module_get_fn get = nullptr;
  static_assert(sizeof(get) == sizeof(symbol));
  std::memcpy(&get, &symbol, sizeof(get));  // object pointer to function pointer, as POSIX allows
  const malv_mlaas_module* descriptor = get();
  Status valid = validate(descriptor, path);
  if (!valid.ok()) {
    dlclose(handle);
    return std::move(valid).error();
  }
  return std::shared_ptr<LoadedModule>(new LoadedModule(path, handle, descriptor));
}

std::shared_ptr<LoadedModule> ModuleLoader::wrap_builtin(const malv_mlaas_module& descriptor) {
  return std::shared_ptr<LoadedModule>(new LoadedModule("<built-in>", nullptr, &descriptor));
}

}  // namespace malv::mlaas
