// Models a module updates and keeps (ABI v5): Mlp::train_sgd computes the
// gradient of the mean squared error and refuses what it cannot train on;
// the host services model_train, model_save and model_open check what a
// module passes, and a saved model comes back after the policy's unload and
// after a host restart (a new service over the same state directory); a
// persisted file that does not load falls back to the shipped one, with the
// reason in the log.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include "accel/backend.h"
#include "base/log.h"
#include "mlaas/decision_deadline.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"

namespace malv::mlaas {
namespace {

namespace fs = std::filesystem;

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

std::vector<float> rows(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double mse(const Mlp& mlp, const std::vector<float>& in, const std::vector<float>& targets) {
  std::vector<float> out(targets.size());
  mlp.infer_cpu(in.data(), in.size() / mlp.input_dim(), out.data());
  double sum = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    sum += double(out[i] - targets[i]) * (out[i] - targets[i]);
  return sum / static_cast<double>(out.size());
}

// A model with one weight changed by delta.
Mlp nudged(const Mlp& mlp, std::size_t layer, std::size_t index, float delta) {
  std::vector<DenseLayer> layers = mlp.layers();
  layers[layer].weight[index] += delta;
  return Mlp::create(std::move(layers)).value();
}

TEST(MlpTraining, OneStepMovesEachWeightAgainstTheNumericalGradient) {
  const Mlp mlp =
      random_mlp({3, 5, 4, 2}, {Activation::kTanh, Activation::kSigmoid, Activation::kIdentity}, 3);
  const std::vector<float> in = rows(6 * 3, 1), targets = rows(6 * 2, 2);
  const float lr = 1e-3f;
  Mlp trained = mlp;
  const float loss = trained.train_sgd(in.data(), targets.data(), 6, lr, 1).value();
  EXPECT_NEAR(loss, mse(mlp, in, targets), 1e-5);
  for (std::size_t layer = 0; layer < mlp.layers().size(); ++layer) {
    for (std::size_t i = 0; i < mlp.layers()[layer].weight.size(); i += 3) {
      const float h = 1e-2f;
      const double numeric = (mse(nudged(mlp, layer, i, h), in, targets) -
                              mse(nudged(mlp, layer, i, -h), in, targets)) /
                             (2.0 * h);
      const double step = mlp.layers()[layer].weight[i] - trained.layers()[layer].weight[i];
      EXPECT_NEAR(step / lr, numeric, 2e-2 + 2e-2 * std::abs(numeric))
          << "layer " << layer << " weight " << i;
    }
  }
}

TEST(MlpTraining, ReluLayersLearnASmoothFunction) {
  Mlp mlp = random_mlp({2, 16, 1}, {Activation::kRelu, Activation::kIdentity}, 5);
  const std::vector<float> in = rows(256 * 2, 7);
  std::vector<float> targets(256);
  for (std::size_t r = 0; r < 256; ++r) targets[r] = 2 * in[2 * r] - in[2 * r + 1] + 0.5f;
  const double before = mse(mlp, in, targets);
  for (int round = 0; round < 40; ++round) {
    ASSERT_TRUE(mlp.train_sgd(in.data(), targets.data(), 256, 0.05f, 16).ok());
  }
  EXPECT_LT(mse(mlp, in, targets), before / 20);
}

TEST(MlpTraining, BadInputsAndSoftmaxAreRefusedAndADivergingCallIsUndone) {
  Mlp mlp = random_mlp({2, 4, 1}, {Activation::kRelu, Activation::kIdentity}, 9);
  std::vector<float> in = rows(2 * 4, 3), targets = rows(4, 4);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> bad = in;
  bad[3] = nan;
  EXPECT_EQ(mlp.train_sgd(bad.data(), targets.data(), 4, 0.1f, 1).error().code(),
            ErrorCode::kInvalidArgument);
  bad = targets;
  bad[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(mlp.train_sgd(in.data(), bad.data(), 4, 0.1f, 1).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(mlp.train_sgd(in.data(), targets.data(), 4, 0.0f, 1).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(mlp.train_sgd(in.data(), targets.data(), 4, nan, 1).error().code(),
            ErrorCode::kInvalidArgument);
  Mlp softmax = random_mlp({2, 3}, {Activation::kSoftmax}, 1);
  std::vector<float> t3 = rows(3 * 4, 5);
  EXPECT_EQ(softmax.train_sgd(in.data(), t3.data(), 4, 0.1f, 1).error().code(),
            ErrorCode::kUnimplemented);

  // Inputs of 1e30 with a learning rate of 1: the first step overflows.
  std::vector<float> huge(2 * 4, 1e30f);
  const std::vector<DenseLayer> before = mlp.layers();
  Result<float> diverged = mlp.train_sgd(huge.data(), targets.data(), 4, 1.0f, 4);
  ASSERT_FALSE(diverged.ok());
  EXPECT_EQ(diverged.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(diverged.error().message().find("non-finite"), std::string::npos);
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(mlp.layers()[i].weight, before[i].weight);
    EXPECT_EQ(mlp.layers()[i].bias, before[i].bias);
  }
}

TEST(MlpFile, NanOrInfiniteWeightsAreRefusedWithTheTensor) {
  SafetensorsFile file =
      random_mlp({2, 3, 1}, {Activation::kRelu, Activation::kIdentity}, 2).to_safetensors();
  file.tensors["layers.1.weight"].data[2] = std::numeric_limits<float>::quiet_NaN();
  Result<Mlp> nan = Mlp::from_safetensors(file, "nan.safetensors");
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.error().message().find("nan.safetensors"), std::string::npos);
  EXPECT_NE(nan.error().message().find("layer 1: weight [0, 2] is nan"), std::string::npos)
      << nan.error().message();
  file = random_mlp({2, 3, 1}, {Activation::kRelu, Activation::kIdentity}, 2).to_safetensors();
  file.tensors["layers.0.bias"].data[1] = -std::numeric_limits<float>::infinity();
  Result<Mlp> inf = Mlp::from_safetensors(file, "inf.safetensors");
  ASSERT_FALSE(inf.ok());
  EXPECT_NE(inf.error().message().find("layer 0: bias [1] is -inf"), std::string::npos)
      << inf.error().message();
}

TEST(MlpFile, TensorsOfTheWrongShapeAreRefusedWithTheReason) {
  SafetensorsFile file =
      random_mlp({2, 3, 1}, {Activation::kRelu, Activation::kIdentity}, 2).to_safetensors();
  file.tensors["layers.0.weight"] = TensorF32{{3, 2, 1}, std::vector<float>(6, 0.1f)};
  Result<Mlp> three_d = Mlp::from_safetensors(file, "f");
  ASSERT_FALSE(three_d.ok());
  EXPECT_NE(three_d.error().message().find("must be 2-D"), std::string::npos);
  file = random_mlp({2, 3, 1}, {Activation::kRelu, Activation::kIdentity}, 2).to_safetensors();
  file.tensors["layers.0.bias"] = TensorF32{{4}, std::vector<float>(4, 0.1f)};
  Result<Mlp> bias = Mlp::from_safetensors(file, "f");
  ASSERT_FALSE(bias.ok());
  EXPECT_NE(bias.error().message().find("layers.0.bias must be [3]"), std::string::npos)
      << bias.error().message();
}

// A host's services over a CPU backend, with a state directory.
class ModelStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) /
          ("model_state_" +
           std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    shipped = (dir / "shipped.safetensors").string();
    ASSERT_TRUE(
        random_mlp({3, 8, 1}, {Activation::kRelu, Activation::kIdentity}, 17).save(shipped).ok());
    start_host();
  }
  void start_host() {
    services.reset();
    inference.reset();
    inference =
        std::make_unique<InferenceService>(backend.get(), InferenceOptions{.calibrate = false});
    services = std::make_unique<HostServices>(features, inference.get());
    services->set_state_dir((dir / "state").string());
    t = services->table();
  }
  std::vector<float> infer(malv_model model, const std::vector<float>& in) {
    std::vector<float> out(in.size() / 3);
    EXPECT_EQ(t->model_infer(t, model, in.data(), out.size(), out.data()), MALV_MLAAS_OK);
    return out;
  }
  // Trains `model` towards targets 1.0 for 4 calls.
  void train(malv_model model) {
    const std::vector<float> in = rows(8 * 3, 21);
    const std::vector<float> targets(8, 1.0f);
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(t->model_train(t, model, in.data(), targets.data(), 8, 0.05f, 8, nullptr),
                MALV_MLAAS_OK);
    }
  }

  std::unique_ptr<accel::Backend> backend =
      accel::make_cpu_backend(accel::CpuBackendOptions{.memory_bytes = 64 << 20, .workers = 1});
  FeatureRegistry features;
  std::unique_ptr<InferenceService> inference;
  std::unique_ptr<HostServices> services;
  const malv_host_services* t = nullptr;
  fs::path dir;
  std::string shipped;
  const std::vector<float> probe = rows(4 * 3, 99);
};

TEST_F(ModelStateTest, TrainingLowersTheLossAndChangesWhatInferenceAnswers) {
  malv_model model = 0;
  std::uint32_t source = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_SHIPPED);
  const std::vector<float> before = infer(model, probe);
  const std::vector<float> in = rows(8 * 3, 21);
  const std::vector<float> targets(8, 1.0f);
  float first = -1, last = -1;
  ASSERT_EQ(t->model_train(t, model, in.data(), targets.data(), 8, 0.05f, 8, &first),
            MALV_MLAAS_OK);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(t->model_train(t, model, in.data(), targets.data(), 8, 0.05f, 8, &last),
              MALV_MLAAS_OK);
  }
  EXPECT_GE(first, 0.0f);
  EXPECT_LT(last, first);
  EXPECT_NE(infer(model, probe), before);
  // model_open shares one model per name (ABI 6): another instance opening
  // "sjf" gets the trained model; a model of its own (model_load) from the
  // same file answers as before.
  malv_model again = 0;
  std::uint32_t again_source = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &again, &again_source), MALV_MLAAS_OK);
  EXPECT_EQ(again, model);
  EXPECT_EQ(again_source, MALV_MODEL_FROM_SHIPPED);
  EXPECT_EQ(services->shared_model_refs("sjf"), 2u);
  EXPECT_EQ(infer(again, probe), infer(model, probe));
  malv_model own = 0;
  ASSERT_EQ(t->model_load(t, shipped.c_str(), &own), MALV_MLAAS_OK);
  EXPECT_NE(own, model);
  EXPECT_EQ(infer(own, probe), before);
  // Each open is undone by one release; the model goes with the last.
  t->model_release(t, again);
  EXPECT_EQ(services->shared_model_refs("sjf"), 1u);
  EXPECT_EQ(infer(model, probe), infer(again, probe));  // still there
  t->model_release(t, model);
  EXPECT_EQ(services->shared_model_refs("sjf"), 0u);
  float out = 0;
  const std::vector<float> row = rows(3, 5);
  EXPECT_EQ(t->model_infer(t, model, row.data(), 1, &out), MALV_MLAAS_ERR_NOT_FOUND);
  t->model_release(t, own);
}

TEST_F(ModelStateTest, TheAcceleratorPathRunsTheTrainedWeights) {
  malv_model model = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  train(model);
  std::vector<float> cpu(4), device(4);
  ASSERT_TRUE(
      inference->infer(ModelId{model}, probe.data(), 4, cpu.data(), InferencePath::kCpu).ok());
  ASSERT_TRUE(
      inference->infer(ModelId{model}, probe.data(), 4, device.data(), InferencePath::kAccelerator)
          .ok());
  for (std::size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(device[i], cpu[i], 1e-5f);
}

TEST_F(ModelStateTest, InferenceDuringTrainingAnswersWithWholeWeightsBeforeOrAfterACall) {
  malv_model model = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  const std::vector<float> x = rows(3, 5);
  std::vector<float> expected = infer(model, x);  // one answer per version of the weights
  std::atomic<bool> done{false};
  std::atomic<int> answering{0};
  std::vector<std::vector<float>> seen(3);
  std::vector<std::thread> readers;
  for (auto& answers : seen) {
    readers.emplace_back([&, out = &answers] {
      float y = 0;
      while (!done.load()) {
        if (t->model_infer(t, model, x.data(), 1, &y) == MALV_MLAAS_OK) out->push_back(y);
        if (out->size() == 1) answering.fetch_add(1);
      }
    });
  }
  while (answering.load() < 3) std::this_thread::yield();  // every reader is running
  const std::vector<float> in = rows(8 * 3, 21), targets(8, 3.0f);
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(t->model_train(t, model, in.data(), targets.data(), 8, 0.02f, 1, nullptr),
              MALV_MLAAS_OK);
    expected.push_back(infer(model, x)[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // let the readers see it
  }
  done.store(true);
  for (auto& r : readers) r.join();
  std::size_t answers = 0;
  for (const auto& answers_of_one : seen) {
    for (float y : answers_of_one) {
      ++answers;
      const bool known = std::any_of(expected.begin(), expected.end(), [&](float e) {
        return std::abs(e - y) <= 1e-6f * (1 + std::abs(e));
      });
      ASSERT_TRUE(known) << y << " is no version's answer";
    }
  }
  EXPECT_GT(answers, 0u);
}

TEST_F(ModelStateTest, BadTrainingCallsGetPreciseCodes) {
  malv_model model = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  const std::vector<float> before = infer(model, probe);
  std::vector<float> in = rows(4 * 3, 1), targets(4, 0.5f);
  EXPECT_EQ(t->model_train(t, model, nullptr, targets.data(), 4, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_train(t, model, in.data(), nullptr, 4, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 0, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  std::vector<float> many_in((MALV_MODEL_TRAIN_MAX_ROWS + 1) * 3),
      many_t(MALV_MODEL_TRAIN_MAX_ROWS + 1);
  EXPECT_EQ(t->model_train(t, model, many_in.data(), many_t.data(), MALV_MODEL_TRAIN_MAX_ROWS + 1,
                           0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, 0.1f, 0, nullptr),
            MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, 0.1f,
                           MALV_MODEL_TRAIN_MAX_STEPS + 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  for (float lr : {0.0f, -0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, lr, 1, nullptr),
              MALV_MLAAS_ERR_INVALID)
        << lr;
  }
  targets[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  targets[2] = 0.5f;
  in[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_INVALID);
  in[5] = 0.0f;
  EXPECT_EQ(t->model_train(t, model + 1000, in.data(), targets.data(), 4, 0.1f, 1, nullptr),
            MALV_MLAAS_ERR_NOT_FOUND);
  {
    // Inside a guarded decide() (a deadline on the thread): refused.
    DecisionDeadlineScope scope(MonoClock::now() + std::chrono::seconds(1));
    EXPECT_EQ(t->model_train(t, model, in.data(), targets.data(), 4, 0.1f, 1, nullptr),
              MALV_MLAAS_ERR_INVALID);
  }
  std::vector<float> huge(4 * 3, 1e30f);
  EXPECT_EQ(t->model_train(t, model, huge.data(), targets.data(), 4, 1.0f, 4, nullptr),
            MALV_MLAAS_ERR_DIVERGED);
  EXPECT_EQ(infer(model, probe), before);  // nothing above changed it
}

TEST_F(ModelStateTest, BadNamesAndMissingFilesGetPreciseCodes) {
  malv_model model = 0;
  for (const char* name : {"", ".hidden", "a/b", "../x", "sp ace"}) {
    EXPECT_EQ(t->model_open(t, name, shipped.c_str(), &model, nullptr), MALV_MLAAS_ERR_INVALID)
        << name;
  }
  const std::string long_name(MALV_MODEL_STATE_NAME_MAX + 1, 'a');
  EXPECT_EQ(t->model_open(t, long_name.c_str(), shipped.c_str(), &model, nullptr),
            MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_open(t, nullptr, shipped.c_str(), &model, nullptr), MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_open(t, "sjf", nullptr, &model, nullptr), MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_open(t, "sjf", (dir / "none.safetensors").c_str(), &model, nullptr),
            MALV_MLAAS_ERR_NOT_FOUND);
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  EXPECT_EQ(t->model_save(t, model, "a/b"), MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_save(t, model, nullptr), MALV_MLAAS_ERR_INVALID);
  EXPECT_EQ(t->model_save(t, model + 1000, "sjf"), MALV_MLAAS_ERR_NOT_FOUND);
  EXPECT_FALSE(fs::exists(dir / "state" / "models"));
  // A state directory that cannot be created.
  std::ofstream(dir / "file") << "x";
  services->set_state_dir((dir / "file").string());
  EXPECT_EQ(t->model_save(t, model, "sjf"), MALV_MLAAS_ERR_IO);
  // No state directory at all: the shipped file, and nothing to save to.
  t->model_release(t, model);
  services->set_state_dir("");
  std::uint32_t source = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_SHIPPED);
  EXPECT_EQ(t->model_save(t, model, "sjf"), MALV_MLAAS_ERR_NO_STATE);
}

TEST_F(ModelStateTest, ASavedModelComesBackAfterAnUnloadAndAfterAHostRestart) {
  malv_model model = 0;
  ASSERT_EQ(t->model_open(t, "learned-sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  train(model);
  const std::vector<float> trained = infer(model, probe);
  ASSERT_EQ(t->model_save(t, model, "learned-sjf"), MALV_MLAAS_OK);
  EXPECT_TRUE(fs::exists(dir / "state" / "models" / "learned-sjf.safetensors"));
  t->model_release(t, model);  // the policy is unloaded

  std::uint32_t source = 0;
  ASSERT_EQ(t->model_open(t, "learned-sjf", shipped.c_str(), &model, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_STATE);
  EXPECT_EQ(infer(model, probe), trained);

  start_host();  // a new inference service and services table, the same state directory
  ASSERT_EQ(t->model_open(t, "learned-sjf", shipped.c_str(), &model, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_STATE);
  EXPECT_EQ(infer(model, probe), trained);
  // Another name still starts from the shipped file.
  ASSERT_EQ(t->model_open(t, "other", shipped.c_str(), &model, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_SHIPPED);
}

TEST_F(ModelStateTest, ConcurrentSavesOfOneNameLeaveOneWholeModel) {
  std::vector<malv_model> models(4);
  for (malv_model& m : models) {
    ASSERT_EQ(t->model_open(t, "shared", shipped.c_str(), &m, nullptr), MALV_MLAAS_OK);
  }
  train(models[1]);
  std::vector<std::thread> savers;
  std::atomic<int> failed{0};
  for (malv_model m : models) {
    savers.emplace_back([&, m] {
      for (int i = 0; i < 20; ++i) {
        if (t->model_save(t, m, "shared") != MALV_MLAAS_OK) failed.fetch_add(1);
      }
    });
  }
  for (auto& s : savers) s.join();
  EXPECT_EQ(failed.load(), 0);
  const std::vector<float> saved = infer(models[0], probe);
  EXPECT_EQ(infer(models[1], probe), saved);  // one shared model
  for (malv_model m : models) t->model_release(t, m);
  std::uint32_t source = 0;
  malv_model back = 0;
  ASSERT_EQ(t->model_open(t, "shared", shipped.c_str(), &back, &source), MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_STATE);  // it loads: no torn file
  EXPECT_EQ(infer(back, probe), saved);
}

TEST_F(ModelStateTest, ACorruptPersistedModelFallsBackToTheShippedOneWithTheReasonLogged) {
  malv_model model = 0;
  ASSERT_EQ(t->model_open(t, "sjf", shipped.c_str(), &model, nullptr), MALV_MLAAS_OK);
  const std::vector<float> from_shipped = infer(model, probe);
  train(model);
  ASSERT_EQ(t->model_save(t, model, "sjf"), MALV_MLAAS_OK);
  const fs::path saved = dir / "state" / "models" / "sjf.safetensors";
  fs::resize_file(saved, fs::file_size(saved) - 7);  // truncated
  t->model_release(t, model);                        // closed: the next open reads the files again

  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  log::logger().sinks().push_back(sink);
  std::uint32_t source = 0;
  const int status = t->model_open(t, "sjf", shipped.c_str(), &model, &source);
  log::logger().sinks().pop_back();
  ASSERT_EQ(status, MALV_MLAAS_OK);
  EXPECT_EQ(source, MALV_MODEL_FROM_SHIPPED);
  EXPECT_EQ(infer(model, probe), from_shipped);
  EXPECT_NE(captured.str().find("the persisted file is not used"), std::string::npos)
      << captured.str();
  EXPECT_NE(captured.str().find("sjf.safetensors"), std::string::npos) << captured.str();
}

}  // namespace
}  // namespace malv::mlaas
