// The acceptance figure: a 784-256-128-10 MLP with Adam reaches at least
// 85 % test accuracy on Fashion-MNIST within 5 epochs, natively and as a VM
// of a host (its batches staged by the host's data pipeline), with the same
// seed giving the same loss curve on both.
#include <gtest/gtest.h>

#include <filesystem>

#include "../microlake/host_fixture.h"
#include "base/clock.h"
#include "nn/native_device.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"
#include "offload/dataset_catalog.h"

namespace malv::nn {
namespace {

struct Curve {
  std::vector<float> epoch_losses;
  double accuracy = 0.0;
};

// Trains 5 epochs with the default options, evaluating after each.
Curve train_5_epochs(Device& device, std::unique_ptr<Trainer> trainer, const Dataset& test) {
  Curve curve;
  Stopwatch watch;
  Status s = trainer->run([&](const Progress& p) {
    if (!p.epoch_end) return;
    auto acc = trainer->model().evaluate(test);
    curve.accuracy = acc.ok() ? *acc : 0.0;
    curve.epoch_losses.push_back(p.loss);
    std::printf("%s: epoch %llu step %llu loss %.4f test accuracy %.4f (%.1f s)\n",
                device.describe().c_str(), static_cast<unsigned long long>(p.epoch),
                static_cast<unsigned long long>(p.step), p.loss, curve.accuracy, watch.elapsed_s());
  });
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return curve;
}

class FashionMnist : public testing::HostFixture {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
      GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    }
    HostFixture::SetUp();
  }
  void customize(microlake::ServerOptions& options) override {
    options.default_arena_bytes = 16ull << 20;
    options.admit = [this](const microlake::HelloInfo&) -> Result<microlake::Admission> {
      microlake::Admission admission;
      admission.services.datasets = &catalog_;
      return admission;
    };
  }
  offload::DatasetCatalog catalog_{
      {.data_dirs = {std::filesystem::path(kFashionMnistDir).parent_path().string()}}};
};

TEST_F(FashionMnist, MlpReaches85PercentWithin5EpochsNativelyAndAsAVmAlike) {
  auto train = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  auto test = load_fashion_mnist(kFashionMnistDir, Split::kTest);
  ASSERT_TRUE(train.ok()) << train.error().to_string();
  ASSERT_TRUE(test.ok()) << test.error().to_string();
  TrainOptions options;  // mlp:784-256-128-10, Adam 1e-3, batch 128, 5 epochs, seed 1

  auto native = NativeDevice::create_cpu({});
  ASSERT_TRUE(native.ok());
  auto native_trainer = Trainer::create(**native, *train, options);
  ASSERT_TRUE(native_trainer.ok()) << native_trainer.error().to_string();
  const Curve native_curve = train_5_epochs(**native, std::move(*native_trainer), *test);
  EXPECT_GE(native_curve.accuracy, 0.85);

  auto conn = connect("vm-fashion");
  ASSERT_NE(conn, nullptr);
  auto remote = RemoteDevice::create(*conn);
  ASSERT_TRUE(remote.ok()) << remote.error().to_string();
  guest::DatasetOptions data;
  data.features = std::filesystem::path(kFashionMnistDir).filename().string();
  data.batch = static_cast<std::uint32_t>(options.batch);
  data.seed = options.seed;
  auto batches = HostBatches::open(**remote, data);
  ASSERT_TRUE(batches.ok()) << batches.error().to_string();
  auto vm_trainer = Trainer::create(**remote, std::move(*batches), options);
  ASSERT_TRUE(vm_trainer.ok()) << vm_trainer.error().to_string();
  const Curve vm_curve = train_5_epochs(**remote, std::move(*vm_trainer), *test);
  EXPECT_GE(vm_curve.accuracy, 0.85);

  EXPECT_EQ(vm_curve.epoch_losses, native_curve.epoch_losses);
  EXPECT_EQ(vm_curve.accuracy, native_curve.accuracy);
}

}  // namespace
}  // namespace malv::nn
