// The admin API's /metrics carries the MLaaS inference service's families
// (through AdminContext::more_metrics, as `malv serve` wires it), each with
// the value of what the service did, and those of its asynchronous queue
// (the scheduler's scoring at enqueue).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "mlaas/async_inference.h"
#include "mlaas/inference_service.h"
#include "vgpu/admin_api.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

// out = relu(2 * in) then one output per row: 4 inputs, 2 hidden, 1 output.
mlaas::Mlp small_model() {
  mlaas::DenseLayer hidden{
      4, 2, std::vector<float>(8, 0.5f), {0.0f, 0.0f}, mlaas::Activation::kRelu};
  mlaas::DenseLayer out{2, 1, {1.0f, 1.0f}, {0.0f}, mlaas::Activation::kIdentity};
  return mlaas::Mlp::create({hidden, out}).value();
}

class AdminInferenceMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/malv-inference-metrics-test-" + std::to_string(::getpid()) + ".sock";
    auto api = AdminApi::start(
        path_, {.vgpu = &vgpu_, .backend = "cpu", .device = "test", .more_metrics = [this] {
                  return inference_.metrics_text() + queue_->metrics_text();
                }});
    ASSERT_TRUE(api.ok()) << api.error().to_string();
    api_ = std::move(api).value();
  }

  std::string metrics() {
    httplib::Client client(path_);
    client.set_address_family(AF_UNIX);
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) return "";
    return res->body;
  }

  static bool has(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
  }

  std::string path_;
  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 16ull << 20, .workers = 1});
  FifoPolicies fifo_;
  VgpuService vgpu_{*device_, fifo_};
  mlaas::InferenceService inference_{device_.get(), {.calibrate = false}};
  std::unique_ptr<mlaas::AsyncInference> queue_ =
      mlaas::AsyncInference::create(inference_, {.batching_thread = false}).value();
  std::unique_ptr<AdminApi> api_;
};

TEST_F(AdminInferenceMetrics, EveryInferenceFamilyShowsWhatTheServiceDid) {
  const mlaas::ModelId model = inference_.add(small_model()).value();
  ASSERT_TRUE(inference_.set_crossover(model, 3).ok());
  std::vector<float> in(4 * 3, 1.0f), out(3);
  ASSERT_TRUE(inference_.infer(model, in.data(), 1, out.data()).ok());  // inline, 1 row
  ASSERT_TRUE(inference_.infer(model, in.data(), 3, out.data()).ok());  // accelerator, 3 rows
  EXPECT_EQ(inference_.infer(model, in.data(), 1, out.data(), MonoClock::now()).error().code(),
            ErrorCode::kDeadlineExceeded);
  EXPECT_FALSE(inference_.infer(mlaas::ModelId{99}, in.data(), 1, out.data()).ok());
  ASSERT_TRUE(inference_.calibrate(model).ok());

  const std::string text = metrics();
  const std::string id = std::to_string(model.value());
  for (const char* family :
       {"malv_mlaas_inference_requests_total counter", "malv_mlaas_inference_rows_total counter",
        "malv_mlaas_inference_runs_total counter", "malv_mlaas_inference_batch_rows histogram",
        "malv_mlaas_inference_latency_seconds histogram",
        "malv_mlaas_inference_deadline_exceeded_total counter",
        "malv_mlaas_inference_errors_total counter",
        "malv_mlaas_inference_calibrations_total counter", "malv_mlaas_models gauge",
        "malv_mlaas_model_crossover_rows gauge"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family + "\n"), std::string::npos) << family;
  }
  EXPECT_TRUE(has(text, "malv_mlaas_inference_requests_total 4")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_rows_total 6")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_runs_total{path=\"cpu\"} 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_runs_total{path=\"accelerator\"} 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_bucket{le=\"1\"} 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_bucket{le=\"2\"} 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_bucket{le=\"4\"} 2")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_bucket{le=\"+Inf\"} 2")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_sum 4")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_batch_rows_count 2")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_latency_seconds_bucket{le=\"+Inf\"} 4")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_latency_seconds_count 4")) << text;
  EXPECT_NE(text.find("\nmalv_mlaas_inference_latency_seconds_sum "), std::string::npos);
  EXPECT_TRUE(has(text, "malv_mlaas_inference_deadline_exceeded_total 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_errors_total 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_inference_calibrations_total 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_models 1")) << text;
  EXPECT_TRUE(has(
      text, "malv_mlaas_model_crossover_rows{model=\"" + id + "\",shape=\"4-2relu-1identity\"} 3"))
      << text;

  inference_.release(model);
  EXPECT_TRUE(has(metrics(), "malv_mlaas_models 0"));
}

TEST_F(AdminInferenceMetrics, TheAsynchronousQueuesFamiliesShowWhatItDid) {
  const mlaas::ModelId model = inference_.add(small_model()).value();
  std::vector<float> in(4 * 3, 1.0f);
  auto a = queue_->submit(model, in.data(), 2).value();
  auto b = queue_->submit(model, in.data(), 1).value();
  auto late = queue_->submit(model, in.data(), 1, MonoClock::now()).value();
  EXPECT_EQ(queue_->submit(mlaas::ModelId{99}, in.data(), 1).error().code(), ErrorCode::kNotFound);
  queue_->run_pending();
  ASSERT_TRUE(a.ready() && b.ready() && late.ready());
  auto left = queue_->submit(model, in.data(), 1).value();
  queue_->shutdown();  // the one not yet run is aborted
  EXPECT_EQ(left.status().error().code(), ErrorCode::kAborted);

  const std::string text = metrics();
  for (const char* family :
       {"malv_mlaas_async_requests_total counter", "malv_mlaas_async_batches_total counter",
        "malv_mlaas_async_batch_rows_total counter"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family + "\n"), std::string::npos) << family;
  }
  EXPECT_TRUE(has(text, "malv_mlaas_async_requests_total{outcome=\"answered\"} 2")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_async_requests_total{outcome=\"deadline_exceeded\"} 1"))
      << text;
  EXPECT_TRUE(has(text, "malv_mlaas_async_requests_total{outcome=\"aborted\"} 1")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_async_requests_total{outcome=\"failed\"} 0")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_async_requests_total{outcome=\"rejected\"} 0")) << text;
  EXPECT_TRUE(has(text, "malv_mlaas_async_batches_total 1")) << text;
  // The late request's row rode in the batch; only its answer was withheld.
  EXPECT_TRUE(has(text, "malv_mlaas_async_batch_rows_total 4")) << text;
  inference_.release(model);
}

}  // namespace
}  // namespace malv::vgpu
