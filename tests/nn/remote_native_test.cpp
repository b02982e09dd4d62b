// The same model on a RemoteDevice (a real in-process host: Micro-LAKE
// server + CPU backend, reached through libmalv) and on a NativeDevice gives
// the same losses and the same parameters, bit for bit; checkpoints resume a
// run exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "../microlake/host_fixture.h"
#include "nn/dataset.h"
#include "nn/mlp.h"
#include "nn/native_device.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::nn {
namespace {

// Fashion-MNIST if installed (the first 4096 training examples), else a
// synthetic set of the same shape.
const Dataset& training_data() {
  static const Dataset data = [] {
    auto loaded = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
    if (loaded.ok()) return loaded->slice(0, 4096);
    Dataset d;
    d.count = 4096;
    d.dims = 784;
    d.classes = 10;
    Rng rng(5);
    d.features.resize(d.count * d.dims);
    for (float& v : d.features) v = rng.unit();
    d.labels.resize(d.count);
    for (std::size_t i = 0; i < d.count; ++i) {
      d.labels[i] = static_cast<std::int32_t>(d.features[i * d.dims] * 10.0f) % 10;
    }
    return d;
  }();
  return data;
}

class RemoteNativeTest : public testing::HostFixture {
 protected:
  void SetUp() override {
    HostFixture::SetUp();
    connection_ = connect("vm-nn");
    ASSERT_NE(connection_, nullptr);
    auto remote = RemoteDevice::create(*connection_);
    ASSERT_TRUE(remote.ok()) << remote.error().to_string();
    remote_ = std::move(remote).value();
    auto native = NativeDevice::create_cpu({.memory_bytes = 256ull << 20, .workers = 2});
    ASSERT_TRUE(native.ok()) << native.error().to_string();
    native_ = std::move(native).value();
  }
  void TearDown() override {
    remote_.reset();
    native_.reset();
    connection_.reset();
    HostFixture::TearDown();
  }

  static TrainOptions options(OptimizerKind kind) {
    TrainOptions o;
    o.model = "mlp:784-64-32-10";
    o.optimizer = {.kind = kind, .lr = kind == OptimizerKind::kAdam ? 1e-3f : 0.05f};
    o.batch = 64;
    o.seed = 11;
    o.epochs = 1;
    return o;
  }

  std::unique_ptr<guest::Connection> connection_;
  std::unique_ptr<RemoteDevice> remote_;
  std::unique_ptr<NativeDevice> native_;
};

// Every step's loss, read back each step, on one device.
std::vector<float> loss_curve(Device& device, const TrainOptions& options, int steps,
                              std::vector<std::byte>* parameters) {
  auto trainer = Trainer::create(device, training_data(), options);
  EXPECT_TRUE(trainer.ok()) << trainer.error().to_string();
  if (!trainer.ok()) return {};
  std::vector<float> losses;
  for (int i = 0; i < steps; ++i) {
    Status s = (*trainer)->step();
    EXPECT_TRUE(s.ok()) << s.error().to_string();
    auto loss = (*trainer)->model().last_loss();
    EXPECT_TRUE(loss.ok()) << loss.error().to_string();
    if (!s.ok() || !loss.ok()) return {};
    losses.push_back(*loss);
  }
  auto saved = (*trainer)->model().save_parameters();
  EXPECT_TRUE(saved.ok());
  if (saved.ok()) *parameters = std::move(saved).value();
  return losses;
}

TEST_F(RemoteNativeTest, SameSeedGivesTheSameLossCurveAndParametersOnBothDevices) {
  for (OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kSgd}) {
    std::vector<std::byte> remote_params, native_params;
    const auto remote = loss_curve(*remote_, options(kind), 25, &remote_params);
    const auto native = loss_curve(*native_, options(kind), 25, &native_params);
    ASSERT_EQ(remote.size(), 25u);
    ASSERT_EQ(native.size(), 25u);
    for (std::size_t i = 0; i < remote.size(); ++i) {
      EXPECT_NEAR(remote[i], native[i], 1e-5f) << "step " << i << " " << optimizer_name(kind);
    }
    EXPECT_EQ(remote, native) << "losses not bit-identical";
    EXPECT_FALSE(remote_params.empty());
    EXPECT_EQ(remote_params, native_params) << optimizer_name(kind);
    EXPECT_LT(remote.back(), remote.front());
  }
}

TEST_F(RemoteNativeTest, ResumedRunMatchesAnUninterruptedRunByteForByte) {
  const std::string path = std::filesystem::temp_directory_path() /
                           ("malv-resume-" + std::to_string(::getpid()) + ".ckpt");
  for (Device* device :
       {static_cast<Device*>(remote_.get()), static_cast<Device*>(native_.get())}) {
    constexpr std::uint64_t kSteps = 40;  // crosses no epoch end: 4096 / 64 = 64 steps
    TrainOptions full_options = options(OptimizerKind::kAdam);
    full_options.max_steps = 2 * kSteps;
    full_options.epochs = 2;
    auto full = Trainer::create(*device, training_data(), full_options);
    ASSERT_TRUE(full.ok());
    ASSERT_TRUE((*full)->run().ok());
    auto full_params = (*full)->model().save_parameters();
    ASSERT_TRUE(full_params.ok());

    TrainOptions first_options = full_options;
    first_options.max_steps = kSteps;
    first_options.checkpoint_path = path;
    {
      auto first = Trainer::create(*device, training_data(), first_options);
      ASSERT_TRUE(first.ok());
      ASSERT_TRUE((*first)->run().ok());
      ASSERT_EQ((*first)->step_count(), kSteps);
    }
    auto second = Trainer::create(*device, training_data(), full_options);
    ASSERT_TRUE(second.ok());
    Status resumed = (*second)->resume_from(path);
    ASSERT_TRUE(resumed.ok()) << resumed.error().to_string();
    ASSERT_EQ((*second)->step_count(), kSteps);
    ASSERT_TRUE((*second)->run().ok());
    ASSERT_EQ((*second)->step_count(), 2 * kSteps);
    auto second_params = (*second)->model().save_parameters();
    ASSERT_TRUE(second_params.ok());
    EXPECT_EQ(*second_params, *full_params) << device->describe();

    // A different seed would visit other examples: refused, not silently wrong.
    TrainOptions other = full_options;
    other.seed = 12;
    auto mismatched = Trainer::create(*device, training_data(), other);
    ASSERT_TRUE(mismatched.ok());
    Status refused = (*mismatched)->resume_from(path);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().to_string().find("seed"), std::string::npos);
  }
  std::filesystem::remove(path);
}

TEST_F(RemoteNativeTest, ABadLaunchOnTheRemoteDeviceIsReportedNotRun) {
  auto t = Tensor::create(*remote_, 1, 4);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(remote_->launch(BuiltinKernel::kFill, {t->arg(), Arg::i64(5), Arg::f32(1.0f)}).ok());
  Status s = remote_->synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(remote_->synchronize().ok());
}

TEST_F(RemoteNativeTest, RemoteTrainingEvaluatesLikeNative) {
  TrainOptions o = options(OptimizerKind::kAdam);
  auto remote = Trainer::create(*remote_, training_data(), o);
  auto native = Trainer::create(*native_, training_data(), o);
  ASSERT_TRUE(remote.ok() && native.ok());
  ASSERT_TRUE((*remote)->run().ok());
  ASSERT_TRUE((*native)->run().ok());
  auto remote_acc = (*remote)->model().evaluate(training_data(), 1000);
  auto native_acc = (*native)->model().evaluate(training_data(), 1000);
  ASSERT_TRUE(remote_acc.ok() && native_acc.ok());
  EXPECT_EQ(*remote_acc, *native_acc);
  EXPECT_GT(*remote_acc, 0.5);
}

}  // namespace
}  // namespace malv::nn
