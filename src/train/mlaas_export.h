// Export of a trained nn::Mlp as an MLaaS model (mlaas::Mlp, the
// .safetensors file the inference service and policy modules load).
//
// nn keeps a dense layer's weight as [in, out] (y = x W + b); MLaaS files
// keep it as [out, in] (y = x W^T + b), so export transposes. Hidden layers
// get relu; the output layer gets identity for a regression model
// (nn::Loss::kMeanSquaredError) and softmax for a classifier, whose nn
// outputs are logits.
//
// Standardisation the model was trained under is folded into the weights,
// so the file takes raw features and gives targets in their own units:
//   first layer, inputs scaled as z = (x - m) / s:
//     W'[o][i] = W[i][o] / s[i],   b'[o] = b[o] - sum_i m[i] W[i][o] / s[i]
//   last layer (regression), targets scaled as t = (y - m) / s:
//     W'[o][i] = W[i][o] s[o],     b'[o] = b[o] s[o] + m[o]
// computed in double, rounded once to float.
//
//   MALV_ASSIGN_OR_RETURN(mlaas::Mlp mlp, export_mlaas_model(*model, {.inputs = &x_scaling}));
//   MALV_TRY(mlp.save("model.safetensors"));
#pragma once

#include "mlaas/mlp.h"
#include "nn/mlp.h"
#include "train/standardisation.h"

namespace malv::train {

struct ExportOptions {
  const Standardisation* inputs = nullptr;   // the model's inputs were standardised with this
  const Standardisation* targets = nullptr;  // regression only: so were its targets
};

// Reads the model's parameters (waits for its device) and builds the MLaaS
// model; the scalings must match the model's input and output widths.
[[nodiscard]] Result<mlaas::Mlp> export_mlaas_model(nn::Mlp& model,
                                                    const ExportOptions& options = {});

}  // namespace malv::train
