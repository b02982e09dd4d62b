// ModuleLoader: opens an MLaaS module (.so), finds its entry point and checks
// its descriptor before anything in it is called again.
//
//   Result<std::shared_ptr<LoadedModule>> module = ModuleLoader::open("/x/libfoo.so");
//
// open() uses dlopen(RTLD_NOW | RTLD_LOCAL): every symbol is resolved at
// load time (a module with a missing dependency fails here, not mid-decision)
// and a module's symbols never satisfy another module's. It refuses, with an
// error that names the file: a file dlopen cannot load, a missing
// malv_mlaas_module_get symbol, a null descriptor, another ABI version, and
// an invalid descriptor (empty names, unknown class, null required function
// pointers, duplicate policy names). The module is dlclose()d when the last
// shared_ptr to it goes, so a decision in flight keeps its code mapped.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "malv/mlaas.h"
#include "malv/result.h"

namespace malv::mlaas {

class LoadedModule {
 public:
  ~LoadedModule();
  LoadedModule(const LoadedModule&) = delete;
  LoadedModule& operator=(const LoadedModule&) = delete;

  const std::string& path() const { return path_; }
  std::string_view name() const { return descriptor_->name; }
  std::string_view version() const { return descriptor_->version; }
  const malv_mlaas_module& descriptor() const { return *descriptor_; }
  // nullptr when the module has no policy of that name.
  const malv_policy* find_policy(std::string_view policy_name) const;

 private:
  friend class ModuleLoader;
  LoadedModule(std::string path, void* handle, const malv_mlaas_module* descriptor)
      : path_(std::move(path)), handle_(handle), descriptor_(descriptor) {}

  std::string path_;
  void* handle_;  // from dlopen; null for the built-in pseudo-module
  const malv_mlaas_module* descriptor_;
};

class ModuleLoader {
 public:
  [[nodiscard]] static Result<std::shared_ptr<LoadedModule>> open(const std::string& path);
  // Wraps a descriptor compiled into the host (the baselines).
  static std::shared_ptr<LoadedModule> wrap_builtin(const malv_mlaas_module& descriptor);
  // The descriptor checks open() makes, on their own. `origin` names the
  // file in errors.
  [[nodiscard]] static Status validate(const malv_mlaas_module* descriptor,
                                       std::string_view origin);
};

}  // namespace malv::mlaas
