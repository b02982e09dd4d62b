// HostServices: the malv_host_services table that modules receive in
// create(), backed by a FeatureRegistry and (optionally) an
// InferenceService.
//
//   FeatureRegistry features;
//   InferenceService inference(backend.get());
//   HostServices services(features, &inference);
//   PolicyRegistry registry(services.table());
//
// Module log lines go to the host log under the component "mlaas-module".
// Without an InferenceService the model_* calls fail with
// MALV_MLAAS_ERR_NOT_FOUND. The object must outlive every registry that
// uses its table, and must not move (the table points back at it).
//
// Models a module keeps (ABI version 5: model_open, model_train,
// model_save) live in <state_dir>/models/<name>.safetensors; without a
// state directory (set_state_dir, what the host daemon calls with its
// own) model_open loads the shipped file and model_save fails with
// MALV_MLAAS_ERR_NO_STATE.
//
// model_open shares (ABI 6): every instance that opens one state name gets
// the host's one model of that name, counted (each model_release drops one
// reference; the model is released with the last), so the rows of every VM
// scoring with it can be batched into one run.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "malv/mlaas.h"
#include "mlaas/feature_registry.h"
#include "mlaas/inference_service.h"

namespace malv::mlaas {

class HostServices {
 public:
  HostServices(FeatureRegistry& features, InferenceService* inference);
  HostServices(const HostServices&) = delete;
  HostServices& operator=(const HostServices&) = delete;

  const malv_host_services* table() const { return &table_; }
  FeatureRegistry& features() { return features_; }
  InferenceService* inference() { return inference_; }

  // Where model_save writes and model_open looks first; empty: nowhere.
  void set_state_dir(std::string dir);
  std::string state_dir() const;
  // <state_dir>/models/<name>.safetensors, or kInvalidArgument for a name
  // outside [A-Za-z0-9._-]{1,64} or starting with '.', kFailedPrecondition
  // without a state directory.
  [[nodiscard]] Result<std::string> model_state_path(std::string_view name) const;
  // How many model_open references the named model has now (0: not open).
  std::size_t shared_model_refs(std::string_view name) const;

 private:
  struct SharedModel {
    std::uint64_t model = 0;
    std::size_t refs = 0;
  };
  static HostServices& self(const malv_host_services* table);
  void init_model_state_calls();  // model_open, model_train, model_save
  // model_open's body: the shared model of `name`, loading it first if needed.
  int open_shared_model(std::string_view name, const char* shipped_path, malv_model* out,
                        std::uint32_t* out_source);
  // model_release's: drops one reference of a shared model (true), or
  // returns false for a model model_open did not give.
  bool release_shared_model(std::uint64_t model);

  malv_host_services table_{};
  mutable std::mutex state_mu_;
  std::string state_dir_;  // state_mu_
  // One model_save at a time: two instances saving the same name must not
  // share a temporary file.
  std::mutex save_mu_;
  // model_open's models by state name, and which loads they came from.
  mutable std::mutex shared_mu_;
  std::map<std::string, SharedModel, std::less<>> shared_;  // shared_mu_
  std::map<std::uint64_t, std::uint32_t> shared_sources_;   // shared_mu_
  FeatureRegistry& features_;
  InferenceService* inference_;
};

}  // namespace malv::mlaas
