// The data pipeline through the protocol (kDatasetOpen/Next/Close): batches
// land in the guest's buffers in stream order, and every bad request gets a
// precise error while the session keeps working.
#include <gtest/gtest.h>

#include <cstring>

#include "data/rng.h"
#include "dataset_host.h"
#include "guest/connection_core.h"
#include "malv/dataset.h"
#include "proto/encoder.h"

namespace malv::testing {
namespace {

using guest::DatasetOptions;
using guest::HostDataset;

class DatasetServiceTest : public DatasetHost {
 protected:
  DatasetOptions raw(std::uint32_t batch = 32) const {
    DatasetOptions o;
    o.format = wire::DatasetFormat::kRawU8;
    o.features = "set/x.u8";
    o.labels = "set/y.u8";
    o.dims = dims();
    o.classes = kClasses;
    o.batch = batch;
    o.seed = 4;
    return o;
  }
};

TEST_F(DatasetServiceTest, BatchesLandInTheGuestsBuffersInOrder) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  auto data = HostDataset::open(*conn, raw());
  ASSERT_TRUE(data.ok()) << data.error().to_string();
  EXPECT_EQ(data->examples(), kCount);
  EXPECT_EQ(data->dims(), dims());
  auto stream = conn->create_stream().value();
  auto x = conn->allocate(data->feature_bytes()).value();
  auto y = conn->allocate(data->label_bytes()).value();
  const std::uint64_t spe = data->steps_per_epoch();  // 300 / 32: 10 batches, the last of 12
  ASSERT_EQ(spe, 10u);
  for (std::uint64_t step = 0; step < 2 * spe + 1; ++step) {
    auto rows = data->next(stream, x, y);
    ASSERT_TRUE(rows.ok()) << rows.error().to_string();
    std::vector<float> features(32 * dims());
    std::vector<std::int32_t> labels(32);
    ASSERT_TRUE(stream.read(x, 0, std::as_writable_bytes(std::span(features))).ok());
    ASSERT_TRUE(stream.read(y, 0, std::as_writable_bytes(std::span(labels))).ok());
    ASSERT_TRUE(stream.synchronize().ok());
    const auto order = data::shuffled_indices(kCount, 4, step / spe);
    const std::size_t first = (step % spe) * 32;
    ASSERT_EQ(*rows, std::min<std::size_t>(32, kCount - first)) << step;
    for (std::uint32_t r = 0; r < *rows; ++r) {
      const std::uint32_t example = order[first + r];
      EXPECT_FLOAT_EQ(features[r * dims()], static_cast<float>(example % 256) / 255.0f);
      EXPECT_EQ(labels[r], static_cast<std::int32_t>(example % kClasses));
    }
  }
}

TEST_F(DatasetServiceTest, BadRequestsGetPreciseErrors) {
  auto conn = connect("vm-a");
  ASSERT_NE(conn, nullptr);
  auto stream = conn->create_stream().value();
  DatasetOptions escape = raw();
  escape.features = "../../etc/passwd";
  EXPECT_EQ(HostDataset::open(*conn, escape).error().code(), ErrorCode::kPermissionDenied);
  DatasetOptions missing = raw();
  missing.features = "set/nope.u8";
  EXPECT_EQ(HostDataset::open(*conn, missing).error().code(), ErrorCode::kNotFound);
  DatasetOptions zero_batch = raw(0);
  EXPECT_EQ(HostDataset::open(*conn, zero_batch).error().code(), ErrorCode::kInvalidArgument);
  DatasetOptions bad_norm = raw();
  bad_norm.stddev = 0.0f;
  EXPECT_EQ(HostDataset::open(*conn, bad_norm).error().code(), ErrorCode::kInvalidArgument);

  // Raw specs: an unknown format, a reserved field, a path without its NUL.
  auto open_raw = [&](const wire::DatasetSpec& spec,
                      std::uint64_t bytes = sizeof(wire::DatasetSpec)) {
    guest::ConnectionCore& core = guest::core_of(*conn);
    const std::uint64_t offset = core.arena_allocate(sizeof(spec)).value();
    std::memcpy(core.arena().data() + offset, &spec, sizeof(spec));
    auto c =
        core.call(proto::make_command(wire::Opcode::kDatasetOpen, core.next_tag(), {offset, bytes}),
                  {offset, sizeof(spec)});
    core.release_arena(offset, sizeof(spec));
    return static_cast<ErrorCode>(c.value().status);
  };
  wire::DatasetSpec spec{};
  spec.format = 99;
  spec.batch = 8;
  spec.stddev = 1.0f;
  EXPECT_EQ(open_raw(spec), ErrorCode::kInvalidArgument);
  spec.format = static_cast<std::uint32_t>(wire::DatasetFormat::kRawU8);
  spec.reserved = 1;
  EXPECT_EQ(open_raw(spec), ErrorCode::kInvalidArgument);
  spec.reserved = 0;
  std::memset(spec.features, 'a', sizeof(spec.features));
  EXPECT_EQ(open_raw(spec), ErrorCode::kInvalidArgument);
  EXPECT_EQ(open_raw(spec, 12), ErrorCode::kInvalidArgument);

  // Next with buffers too small for a batch, a forged dataset handle, a
  // closed dataset: each fails in stream order, reported at the sync.
  auto data = HostDataset::open(*conn, raw()).value();
  auto small = conn->allocate(16).value();
  auto y = conn->allocate(data.label_bytes()).value();
  ASSERT_TRUE(data.next(stream, small, y).ok());
  EXPECT_EQ(stream.synchronize().error().code(), ErrorCode::kOutOfRange);
  guest::ConnectionCore& core = guest::core_of(*conn);
  wire::Command forged =
      proto::make_command(wire::Opcode::kDatasetNext, core.next_tag(),
                          {stream.handle(), 0x5000'0000'0000'0001ull, small.handle(), y.handle()});
  ASSERT_TRUE(core.submit(std::span(&forged, 1), {}, nullptr).ok());
  EXPECT_FALSE(stream.synchronize().ok());
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(DatasetServiceTest, HostWithoutPipelineSaysSo) {
  auto conn = connect("vm-without-services");
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(HostDataset::open(*conn, raw()).error().code(), ErrorCode::kUnimplemented);
}

TEST_F(DatasetServiceTest, AGuestLeavingWithADatasetOpenLeavesNothing) {
  const std::uint64_t before = backend_->memory_in_use();
  {
    auto conn = connect("vm-a");
    ASSERT_NE(conn, nullptr);
    auto data = HostDataset::open(*conn, raw()).value();
    auto stream = conn->create_stream().value();
    auto x = conn->allocate(data.feature_bytes()).value();
    auto y = conn->allocate(data.label_bytes()).value();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(data.next(stream, x, y).ok());
    EXPECT_GT(backend_->memory_in_use(), before);
    // Leave without synchronizing or closing anything.
  }
  ASSERT_TRUE(wait_for_no_sessions());
  EXPECT_EQ(backend_->memory_in_use(), before);
}

TEST_F(DatasetServiceTest, WorksOverTcp) {
  auto conn = connect_tcp("vm-tcp");
  ASSERT_NE(conn, nullptr);
  auto data = HostDataset::open(*conn, raw(50)).value();
  auto stream = conn->create_stream().value();
  auto x = conn->allocate(data.feature_bytes()).value();
  auto y = conn->allocate(data.label_bytes()).value();
  ASSERT_TRUE(data.next(stream, x, y).ok());
  std::vector<std::int32_t> labels(50);
  ASSERT_TRUE(stream.read(y, 0, std::as_writable_bytes(std::span(labels))).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  const auto order = data::shuffled_indices(kCount, 4, 0);
  for (int r = 0; r < 50; ++r) EXPECT_EQ(labels[r], static_cast<std::int32_t>(order[r] % kClasses));
}

}  // namespace
}  // namespace malv::testing
