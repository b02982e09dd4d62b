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
#pragma once

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

 private:
  static HostServices& self(const malv_host_services* table);

  malv_host_services table_{};
  FeatureRegistry& features_;
  InferenceService* inference_;
};

}  // namespace malv::mlaas
