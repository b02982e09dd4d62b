// Offloaded data loading changes where batches come from, not what they
// are: a run fed by the host's data pipeline (HostBatches) ends with the
// same parameters, bit for bit, as a run that loads the data itself
// (LocalBatches), also when it is resumed part-way.
#include <gtest/gtest.h>

#include "../microlake/dataset_host.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::nn {
namespace {

class HostBatchesTest : public testing::DatasetHost {
 protected:
  std::uint32_t dims() const override { return 16; }

  Dataset local_copy() const {
    std::vector<std::uint8_t> pixels(std::size_t{kCount} * dims());
    std::vector<std::uint8_t> labels(kCount);
    for (std::uint32_t i = 0; i < kCount; ++i) {
      std::fill_n(pixels.begin() + i * dims(), dims(), static_cast<std::uint8_t>(i % 256));
      labels[i] = static_cast<std::uint8_t>(i % kClasses);
    }
    return make_dataset(pixels, labels, dims(), kClasses).value();
  }

  guest::DatasetOptions host_options() const {
    guest::DatasetOptions o;
    o.format = wire::DatasetFormat::kRawU8;
    o.features = "set/x.u8";
    o.labels = "set/y.u8";
    o.dims = dims();
    o.classes = kClasses;
    o.batch = 32;
    o.seed = 7;
    return o;
  }

  TrainOptions train_options(std::uint64_t max_steps) const {
    TrainOptions o;
    o.model = "mlp:16-12-10";
    o.batch = 32;
    o.seed = 7;
    o.epochs = 10;
    o.max_steps = max_steps;
    o.log_every = 0;
    return o;
  }

  // Two VMs of the same host, each with a RemoteDevice.
  bool open_devices() {
    conn_a_ = connect("vm-local");
    conn_b_ = connect("vm-offload");
    if (!conn_a_ || !conn_b_) return false;
    device_a_ = RemoteDevice::create(*conn_a_).value();
    device_b_ = RemoteDevice::create(*conn_b_).value();
    return true;
  }
  void TearDown() override {
    device_a_.reset();
    device_b_.reset();
    conn_a_.reset();
    conn_b_.reset();
    DatasetHost::TearDown();
  }

  static std::vector<NamedArray> parameters(Trainer& trainer) {
    return trainer.checkpoint().value().arrays;
  }

  std::unique_ptr<guest::Connection> conn_a_, conn_b_;
  std::unique_ptr<RemoteDevice> device_a_, device_b_;
};

TEST_F(HostBatchesTest, SameParametersAsLoadingLocally) {
  const Dataset local = local_copy();
  ASSERT_TRUE(open_devices());
  RemoteDevice& device_a = *device_a_;  // loads its data itself
  RemoteDevice& device_b = *device_b_;  // fed by the host's pipeline

  auto local_run = Trainer::create(device_a, local, train_options(25)).value();
  ASSERT_TRUE(local_run->run().ok());
  auto batches = HostBatches::open(device_b, host_options());
  ASSERT_TRUE(batches.ok()) << batches.error().to_string();
  EXPECT_EQ(batches.value()->examples(), kCount);
  auto offload_run = Trainer::create(device_b, std::move(batches).value(), train_options(25));
  ASSERT_TRUE(offload_run.ok()) << offload_run.error().to_string();
  Status s = offload_run.value()->run();
  ASSERT_TRUE(s.ok()) << s.error().to_string();

  const auto a = parameters(*local_run);
  const auto b = parameters(*offload_run.value());
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].values, b[i].values) << a[i].name;
  }
}

TEST_F(HostBatchesTest, ResumingRestartsThePipelineAtTheRightBatch) {
  const Dataset local = local_copy();
  ASSERT_TRUE(open_devices());
  RemoteDevice& device_a = *device_a_;  // loads its data itself
  RemoteDevice& device_b = *device_b_;  // fed by the host's pipeline
  auto straight = Trainer::create(device_a, local, train_options(23)).value();
  ASSERT_TRUE(straight->run().ok());

  // 11 steps locally, checkpoint, then the rest from the host's pipeline.
  auto first = Trainer::create(device_b, local, train_options(11)).value();
  ASSERT_TRUE(first->run().ok());
  const Checkpoint at_11 = first->checkpoint().value();
  first.reset();
  auto resumed = Trainer::create(device_b, HostBatches::open(device_b, host_options()).value(),
                                 train_options(23))
                     .value();
  ASSERT_TRUE(resumed->resume(at_11).ok());
  ASSERT_TRUE(resumed->run().ok());
  EXPECT_EQ(resumed->step_count(), 23u);
  const auto a = parameters(*straight);
  const auto b = parameters(*resumed);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].values, b[i].values) << a[i].name;
}

}  // namespace
}  // namespace malv::nn
