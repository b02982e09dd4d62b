// InferenceService: the CPU and accelerator paths agree, the crossover is
// measured and can be overridden, and modules reach it through the C table.
#include "mlaas/inference_service.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "accel/backend.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"

namespace malv::mlaas {
namespace {

Mlp random_mlp(const std::vector<std::size_t>& widths, const std::vector<Activation>& acts,
               unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<DenseLayer> layers;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    DenseLayer l{widths[i], widths[i + 1], {}, {}, acts[i]};
    l.weight.resize(l.in * l.out);
    for (float& w : l.weight) w = dist(rng);
    l.bias.resize(l.out);
    for (float& b : l.bias) b = dist(rng);
    layers.push_back(std::move(l));
  }
  return Mlp::create(std::move(layers)).value();
}

// Plain loops, the reference both paths must match.
std::vector<float> reference(const Mlp& mlp, const std::vector<float>& in, std::size_t batch) {
  std::vector<float> x = in;
  for (const DenseLayer& l : mlp.layers()) {
    std::vector<float> y(batch * l.out);
    for (std::size_t r = 0; r < batch; ++r) {
      for (std::size_t o = 0; o < l.out; ++o) {
        double acc = l.bias[o];
        for (std::size_t i = 0; i < l.in; ++i)
          acc += double(l.weight[o * l.in + i]) * x[r * l.in + i];
        y[r * l.out + o] = static_cast<float>(acc);
      }
    }
    apply_activation(l.activation, y.data(), batch, l.out);
    x = std::move(y);
  }
  return x;
}

std::vector<float> inputs(std::size_t n) {
  std::vector<float> in(n);
  for (std::size_t i = 0; i < n; ++i) in[i] = std::sin(static_cast<float>(i) * 0.37f);
  return in;
}

class InferenceTest : public ::testing::Test {
 protected:
  std::unique_ptr<accel::Backend> backend =
      accel::make_cpu_backend(accel::CpuBackendOptions{.memory_bytes = 256 << 20, .workers = 2});
};

TEST_F(InferenceTest, InlineAndAcceleratorPathsAgreeWithTheReference) {
  InferenceService service(backend.get(), InferenceOptions{.calibrate = false});
  const std::vector<std::vector<Activation>> cases = {
      {Activation::kRelu, Activation::kRelu, Activation::kIdentity},
      {Activation::kRelu, Activation::kIdentity, Activation::kSigmoid},
      {Activation::kIdentity, Activation::kRelu, Activation::kSoftmax},
      {Activation::kRelu, Activation::kRelu, Activation::kTanh},
  };
  unsigned seed = 1;
  for (const auto& acts : cases) {
    Mlp mlp = random_mlp({12, 32, 16, 5}, acts, seed++);
    ModelId id = service.add(mlp).value();
    EXPECT_TRUE(service.info(id).value().accelerator_capable);
    for (std::size_t batch : {1u, 7u, 130u}) {
      std::vector<float> in = inputs(batch * 12);
      std::vector<float> want = reference(mlp, in, batch);
      std::vector<float> cpu(batch * 5), acc(batch * 5, -1.0f);
      ASSERT_TRUE(service.infer(id, in.data(), batch, cpu.data(), InferencePath::kCpu).ok());
      auto ran = service.infer(id, in.data(), batch, acc.data(), InferencePath::kAccelerator);
      ASSERT_TRUE(ran.ok()) << ran.error().to_string();
      for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(cpu[i], want[i], 1e-4f) << "cpu " << i;
        EXPECT_NEAR(acc[i], want[i], 1e-4f) << "accelerator " << i;
      }
    }
  }
}

TEST_F(InferenceTest, ABatchLargerThanTheScratchRunsInChunksWithTheSameResults) {
  // 4096 wide: infer_cpu's 512 KiB scratch holds 32 rows; 100 rows is 4 chunks.
  Mlp mlp = random_mlp({5, 4096, 3}, {Activation::kRelu, Activation::kSoftmax}, 17);
  std::vector<float> in = inputs(100 * 5), out(100 * 3);
  mlp.infer_cpu(in.data(), 100, out.data());
  std::vector<float> want = reference(mlp, in, 100);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-4f) << i;
}

TEST_F(InferenceTest, HiddenActivationsWithoutKernelsStayOnTheCpu) {
  InferenceService service(backend.get(), InferenceOptions{.calibrate = false});
  Mlp mlp = random_mlp({4, 8, 2}, {Activation::kTanh, Activation::kIdentity}, 3);
  ModelId id = service.add(mlp).value();
  EXPECT_FALSE(service.info(id).value().accelerator_capable);
  std::vector<float> in = inputs(4), out(2);
  EXPECT_EQ(service.infer(id, in.data(), 1, out.data(), InferencePath::kAccelerator).error().code(),
            ErrorCode::kUnimplemented);
  ASSERT_TRUE(service.infer(id, in.data(), 1, out.data()).ok());
  EXPECT_NEAR(out[0], reference(mlp, in, 1)[0], 1e-5f);
}

TEST_F(InferenceTest, TheCrossoverIsMeasuredAtTheFiveBatchSizesAndCachedPerShape) {
  InferenceService service(backend.get());
  Mlp mlp = random_mlp({8, 16, 1}, {Activation::kRelu, Activation::kIdentity}, 5);
  ModelId id = service.add(mlp).value();
  Crossover crossover = service.info(id).value().crossover;
  EXPECT_TRUE(crossover.measured);
  ASSERT_EQ(crossover.points.size(), 5u);
  EXPECT_EQ(crossover.points[0].batch, 1u);
  EXPECT_EQ(crossover.points[4].batch, 4096u);
  for (const auto& p : crossover.points) {
    EXPECT_GT(p.cpu_us, 0.0);
    EXPECT_GT(p.accelerator_us, 0.0);
  }
  // The same shape again reuses the measurement.
  ModelId twin =
      service.add(random_mlp({8, 16, 1}, {Activation::kRelu, Activation::kIdentity}, 6)).value();
  EXPECT_EQ(service.info(twin).value().crossover.points.size(), 5u);
  EXPECT_EQ(service.info(twin).value().crossover.batch, crossover.batch);
}

TEST_F(InferenceTest, AnOverriddenCrossoverPicksThePathAndResultsStayTheSame) {
  InferenceService service(backend.get(), InferenceOptions{.calibrate = false});
  Mlp mlp = random_mlp({6, 10, 3}, {Activation::kRelu, Activation::kSoftmax}, 9);
  ModelId id = service.add(mlp).value();
  EXPECT_EQ(service.info(id).value().crossover.batch, kNeverAccelerate);
  ASSERT_TRUE(service.set_crossover(id, 16).ok());
  EXPECT_TRUE(service.info(id).value().crossover.overridden);
  for (std::size_t batch : {1u, 16u, 100u}) {
    std::vector<float> in = inputs(batch * 6), out(batch * 3);
    ASSERT_TRUE(service.infer(id, in.data(), batch, out.data()).ok());
    std::vector<float> want = reference(mlp, in, batch);
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-4f);
  }
}

TEST_F(InferenceTest, WithoutABackendEverythingRunsInline) {
  InferenceService service(nullptr);
  Mlp mlp = random_mlp({3, 4, 2}, {Activation::kRelu, Activation::kIdentity}, 11);
  ModelId id = service.add(mlp).value();
  std::vector<float> in = inputs(3), out(2);
  ASSERT_TRUE(service.infer(id, in.data(), 1, out.data()).ok());
  EXPECT_EQ(service.infer(id, in.data(), 1, out.data(), InferencePath::kAccelerator).error().code(),
            ErrorCode::kUnimplemented);
  service.release(id);
  EXPECT_EQ(service.infer(id, in.data(), 1, out.data()).error().code(), ErrorCode::kNotFound);
}

TEST_F(InferenceTest, AModuleLoadsAndRunsAModelThroughTheCTable) {
  InferenceService service(backend.get(), InferenceOptions{.calibrate = false});
  FeatureRegistry features;
  HostServices services(features, &service);
  const malv_host_services* t = services.table();
  Mlp mlp = random_mlp({4, 8, 2}, {Activation::kRelu, Activation::kSigmoid}, 13);
  std::string path = ::testing::TempDir() + "/module_model.safetensors";
  ASSERT_TRUE(mlp.save(path).ok());
  malv_model model = 0;
  ASSERT_EQ(t->model_load(t, path.c_str(), &model), MALV_MLAAS_OK);
  std::size_t in_dim = 0, out_dim = 0;
  ASSERT_EQ(t->model_dims(t, model, &in_dim, &out_dim), MALV_MLAAS_OK);
  EXPECT_EQ(in_dim, 4u);
  EXPECT_EQ(out_dim, 2u);
  std::vector<float> in = inputs(8), out(4);
  ASSERT_EQ(t->model_infer(t, model, in.data(), 2, out.data()), MALV_MLAAS_OK);
  std::vector<float> want = reference(mlp, in, 2);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-5f);
  t->model_release(t, model);
  EXPECT_EQ(t->model_infer(t, model, in.data(), 2, out.data()), MALV_MLAAS_ERR_NOT_FOUND);
  EXPECT_EQ(t->model_load(t, "/nonexistent.safetensors", &model), MALV_MLAAS_ERR_NOT_FOUND);
}

}  // namespace
}  // namespace malv::mlaas
