// The inference service's /metrics text: Prometheus families over its
// counters (inference_stats.h) and each loaded model's crossover.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "mlaas/async_inference.h"
#include "mlaas/inference_service.h"

namespace malv::mlaas {
namespace {

void counter(std::string& out, const char* name, const char* help, std::uint64_t value) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
}

template <typename Bounds, typename Counts>
void histogram(std::string& out, const char* name, const char* help, const Bounds& bounds,
               const Counts& counts, double sum) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cumulative);
  }
  cumulative += counts[bounds.size()];
  out += fmt::format("{0}_bucket{{le=\"+Inf\"}} {1}\n{0}_sum {2}\n{0}_count {1}\n", name,
                     cumulative, sum);
}

}  // namespace

std::string InferenceService::metrics_text() const {
  const InferenceCounters c = stats();
  std::string out;
  counter(out, "malv_mlaas_inference_requests_total",
          "Inference calls from policies (model_infer) and the host", c.requests);
  counter(out, "malv_mlaas_inference_rows_total", "Rows those calls asked for", c.rows);
  out +=
      "# HELP malv_mlaas_inference_runs_total Model runs (one per batch across callers), by "
      "path\n# TYPE malv_mlaas_inference_runs_total counter\n";
  out += fmt::format("malv_mlaas_inference_runs_total{{path=\"cpu\"}} {}\n", c.cpu_runs);
  out += fmt::format("malv_mlaas_inference_runs_total{{path=\"accelerator\"}} {}\n",
                     c.accelerator_runs);
  histogram(out, "malv_mlaas_inference_batch_rows", "Rows per model run", kBatchRowBounds,
            c.batch_rows, static_cast<double>(c.run_rows));
  histogram(out, "malv_mlaas_inference_latency_seconds",
            "Time from an inference call to its answer", kLatencyBounds, c.latency,
            c.latency_sum_s);
  counter(out, "malv_mlaas_inference_deadline_exceeded_total",
          "Calls answered kDeadlineExceeded (the caller's budget ran out; its policy's baseline "
          "decided)",
          c.deadline_exceeded);
  counter(out, "malv_mlaas_inference_errors_total", "Calls that failed otherwise", c.errors);
  counter(out, "malv_mlaas_inference_calibrations_total",
          "Crossover measurements (CPU vs accelerator) done", c.calibrations);

  const std::vector<ModelId> models = model_ids();
  out += fmt::format(
      "# HELP malv_mlaas_models Models loaded in the inference service\n"
      "# TYPE malv_mlaas_models gauge\nmalv_mlaas_models {}\n",
      models.size());
  out +=
      "# HELP malv_mlaas_model_crossover_rows Rows from which a model's batch runs on the "
      "accelerator (+Inf: never)\n# TYPE malv_mlaas_model_crossover_rows gauge\n";
  for (ModelId id : models) {
    Result<ModelInfo> info = this->info(id);
    if (!info.ok()) continue;  // released meanwhile
    const bool never = !info->accelerator_capable || info->crossover.batch == kNeverAccelerate;
    out += fmt::format("malv_mlaas_model_crossover_rows{{model=\"{}\",shape=\"{}\"}} {}\n",
                       id.value(), info->shape,
                       never ? std::string("+Inf") : std::to_string(info->crossover.batch));
  }
  return out;
}

std::string AsyncInference::metrics_text() const {
  const AsyncInferenceCounters c = stats();
  std::string out =
      "# HELP malv_mlaas_async_requests_total Asynchronous inference requests (rows of one "
      "caller), by outcome\n# TYPE malv_mlaas_async_requests_total counter\n";
  const std::pair<const char*, std::uint64_t> outcomes[] = {
      {"answered", c.answered}, {"deadline_exceeded", c.deadline_exceeded},
      {"aborted", c.aborted},   {"failed", c.failed},
      {"rejected", c.rejected},
  };
  for (const auto& [outcome, value] : outcomes) {
    out += fmt::format("malv_mlaas_async_requests_total{{outcome=\"{}\"}} {}\n", outcome, value);
  }
  counter(out, "malv_mlaas_async_batches_total",
          "Batches the asynchronous callers' requests were run in (one service call each)",
          c.batches);
  counter(out, "malv_mlaas_async_batch_rows_total", "Rows over those batches", c.batch_rows);
  return out;
}

}  // namespace malv::mlaas
