// The acceptance test for host checkpoints: a guest trains through a
// host (RemoteDevice) saving "host:NAME" checkpoints, is killed, and a new
// session resumes from the host's checkpoint and continues; its parameters
// and optimizer state then equal, byte for byte, those of an uninterrupted
// run at the same step.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "../microlake/host_fixture.h"
#include "nn/dataset.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"
#include "offload/checkpoint_store.h"

namespace malv::nn {
namespace {

// A small synthetic problem: 512 examples, 20 features, 4 classes.
const Dataset& training_data() {
  static const Dataset data = [] {
    Dataset d;
    d.count = 512;
    d.dims = 20;
    d.classes = 4;
    d.features.resize(d.count * d.dims);
    for (std::size_t i = 0; i < d.features.size(); ++i) {
      d.features[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f;
    }
    d.labels.resize(d.count);
    for (std::size_t i = 0; i < d.count; ++i) {
      d.labels[i] = static_cast<std::int32_t>(d.features[i * d.dims] * 4.0f) % 4;
    }
    return d;
  }();
  return data;
}

TrainOptions options() {
  TrainOptions o;
  o.model = "mlp:20-16-4";
  o.optimizer = {.kind = OptimizerKind::kAdam, .lr = 1e-2f};
  o.batch = 32;  // 16 steps per epoch
  o.seed = 3;
  o.epochs = 2;
  o.log_every = 4;
  return o;
}

class HostCheckpointTest : public testing::HostFixture {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/malv-nn-ckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    store_ = offload::CheckpointStore::open({.root = root_}).value();
    HostFixture::SetUp();
  }
  void TearDown() override {
    HostFixture::TearDown();
    std::filesystem::remove_all(root_);
  }
  void customize(microlake::ServerOptions& options) override {
    options.admit = [this](const microlake::HelloInfo&) -> Result<microlake::Admission> {
      microlake::Admission admission;
      admission.services.checkpoints = store_.get();
      return admission;
    };
  }

  // The model's complete training state (parameters, optimizer state, step).
  static std::vector<std::byte> state(Trainer& trainer) {
    auto checkpoint = trainer.model().training_checkpoint();
    EXPECT_TRUE(checkpoint.ok());
    return checkpoint.ok() ? encode_checkpoint(checkpoint.value()) : std::vector<std::byte>{};
  }

  std::string root_;
  std::unique_ptr<offload::CheckpointStore> store_;
};

TEST_F(HostCheckpointTest, KilledGuestResumesFromTheHostCheckpointWithIdenticalState) {
  // The uninterrupted run, through the host too.
  std::vector<std::byte> at_epoch_end, at_end;
  {
    auto conn = connect("vm-reference");
    ASSERT_TRUE(conn);
    auto device = RemoteDevice::create(*conn).value();
    auto trainer = Trainer::create(*device, training_data(), options()).value();
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(trainer->step().ok());
    at_epoch_end = state(*trainer);
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(trainer->step().ok());
    at_end = state(*trainer);
  }

  // The guest that is killed: it checkpoints at the end of epoch 1 (step
  // 16) and dies without a word at step 24.
  const std::string socket = socket_path_;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto conn = guest::Connection::connect_unix(socket, {.vm_name = "vm-train"});
    if (!conn.ok()) ::_exit(2);
    auto device = RemoteDevice::create(**conn);
    if (!device.ok()) ::_exit(3);
    TrainOptions o = options();
    o.checkpoint_path = "host:run";
    auto trainer = Trainer::create(**device, training_data(), o);
    if (!trainer.ok()) ::_exit(4);
    (void)(*trainer)->run([](const Progress& p) {
      if (p.step == 24) ::_exit(0);  // killed mid-epoch
    });
    ::_exit(5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);

  // A new session resumes from the host's checkpoint.
  auto conn = connect("vm-train");
  ASSERT_TRUE(conn);
  auto device = RemoteDevice::create(*conn).value();
  auto trainer = Trainer::create(*device, training_data(), options()).value();
  Status resumed = trainer->resume_from("host:run");
  ASSERT_TRUE(resumed.ok()) << resumed.error().to_string();
  EXPECT_EQ(trainer->step_count(), 16u);
  EXPECT_EQ(state(*trainer), at_epoch_end);
  ASSERT_TRUE(trainer->run().ok());
  EXPECT_EQ(trainer->step_count(), 32u);
  EXPECT_EQ(state(*trainer), at_end);
}

TEST_F(HostCheckpointTest, ResumingAnotherRunOrAMissingCheckpointFails) {
  auto conn = connect("vm-train");
  ASSERT_TRUE(conn);
  auto device = RemoteDevice::create(*conn).value();
  auto trainer = Trainer::create(*device, training_data(), options()).value();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(trainer->step().ok());
  ASSERT_TRUE(trainer->save_checkpoint("host:three").ok());

  TrainOptions other = options();
  other.seed = 4;  // another example order: not the same run
  auto second = Trainer::create(*device, training_data(), other).value();
  Status wrong = second->resume_from("host:three");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidArgument);
  Status missing = second->resume_from("host:never-saved");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace malv::nn
