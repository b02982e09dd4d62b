// Whatever a guest sends, the host answers with a precise error for that
// command alone and keeps serving.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "guest/connection_core.h"
#include "host_fixture.h"
#include "proto/encoder.h"

namespace malv {
namespace {

using guest::KernelArg;
using wire::Opcode;

class BadInput : public testing::HostFixture {
 protected:
  void SetUp() override {
    HostFixture::SetUp();
    conn_ = connect();
    ASSERT_TRUE(conn_);
    auto stream = conn_->create_stream();
    ASSERT_TRUE(stream.ok());
    stream_ = std::move(stream).value();
    auto buffer = conn_->allocate(1024);
    ASSERT_TRUE(buffer.ok());
    buffer_ = std::move(buffer).value();
  }
  void TearDown() override {
    stream_ = {};
    buffer_ = {};
    conn_.reset();
    HostFixture::TearDown();
  }

  // Sends one raw command and returns its completion status.
  ErrorCode raw(wire::Command cmd) {
    guest::ConnectionCore& core = guest::core_of(*conn_);
    cmd.tag = core.next_tag();
    auto c = core.call(cmd);
    EXPECT_TRUE(c.ok());
    return c.ok() ? static_cast<ErrorCode>(c->status) : ErrorCode::kInternal;
  }
  ErrorCode raw(Opcode op, std::initializer_list<std::uint64_t> args) {
    return raw(proto::make_command(op, 0, args));
  }

  // The host is still fine: a fresh round trip and a small transfer work.
  void expect_host_healthy() {
    EXPECT_TRUE(conn_->ping().ok());
    std::vector<std::byte> data(16, std::byte{9}), back(16);
    ASSERT_TRUE(stream_.write(buffer_, 0, data).ok());
    ASSERT_TRUE(stream_.read(buffer_, 0, back).ok());
    EXPECT_TRUE(stream_.synchronize().ok());
    EXPECT_EQ(data, back);
  }

  std::unique_ptr<guest::Connection> conn_;
  guest::Stream stream_;
  guest::Buffer buffer_;
};

TEST_F(BadInput, UnknownOpcodeIsUnimplemented) {
  wire::Command cmd = proto::make_command(Opcode::kNop, 0);
  cmd.opcode = 4242;
  EXPECT_EQ(raw(cmd), ErrorCode::kUnimplemented);
  expect_host_healthy();
}

TEST_F(BadInput, OversizedExtensionCountIsRejected) {
  wire::Command cmd = proto::make_command(Opcode::kLaunch, 0, {stream_.handle(), 1, 0});
  cmd.extensions = 200;
  EXPECT_EQ(raw(cmd), ErrorCode::kInvalidArgument);
  expect_host_healthy();
}

TEST_F(BadInput, ForgedHandleIsRejected) {
  EXPECT_EQ(raw(Opcode::kBufferFree, {0xdeadbeefcafeull}), ErrorCode::kWrongHandleType);
  EXPECT_EQ(raw(Opcode::kBufferFree, {(1ull << 60) | 0xdeadbeefull}), ErrorCode::kStaleHandle);
  expect_host_healthy();
}

TEST_F(BadInput, FreedHandleIsRejectedWithStaleHandle) {
  auto doomed = conn_->allocate(64);
  ASSERT_TRUE(doomed.ok());
  const std::uint64_t handle = doomed->handle();
  ASSERT_EQ(raw(Opcode::kBufferFree, {handle}), ErrorCode::kOk);
  EXPECT_EQ(raw(Opcode::kBufferFree, {handle}), ErrorCode::kStaleHandle);
  EXPECT_EQ(raw(Opcode::kMemset, {stream_.handle(), handle, 0, 8, 1}), ErrorCode::kStaleHandle);
  (void)std::move(doomed).value();  // its destructor's free fails quietly: already freed
}

TEST_F(BadInput, HandleFromAnotherSessionIsRejected) {
  auto other = connect("vm-other");
  ASSERT_TRUE(other);
  auto theirs = other->allocate(64);
  ASSERT_TRUE(theirs.ok());
  EXPECT_EQ(raw(Opcode::kMemset, {stream_.handle(), theirs->handle(), 0, 8, 1}),
            ErrorCode::kStaleHandle);
  // And their buffer is untouched and theirs to use.
  auto their_stream = other->create_stream();
  std::vector<std::byte> back(8);
  ASSERT_TRUE(their_stream->read(*theirs, 0, back).ok());
  EXPECT_TRUE(their_stream->synchronize().ok());
}

TEST_F(BadInput, WrongHandleTypeIsRejected) {
  EXPECT_EQ(raw(Opcode::kMemset, {stream_.handle(), stream_.handle(), 0, 8, 1}),
            ErrorCode::kWrongHandleType);
  EXPECT_EQ(raw(Opcode::kStreamSync, {buffer_.handle()}), ErrorCode::kWrongHandleType);
}

TEST_F(BadInput, OutOfRangeTransferFailsAtSynchronizeNamingTheCommand) {
  std::vector<std::byte> data(16);
  ASSERT_TRUE(stream_.write(buffer_, 1020, data).ok());  // 1020 + 16 > 1024
  Status s = stream_.synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(s.error().message().find("(write)"), std::string::npos) << s.error().to_string();
  expect_host_healthy();
}

TEST_F(BadInput, ErrorIsNotMaskedByLaterSuccesses) {
  std::vector<std::byte> data(16);
  ASSERT_TRUE(stream_.write(buffer_, 2000, data).ok());                            // fails
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(stream_.write(buffer_, 0, data).ok());  // succeed
  Status s = stream_.synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kOutOfRange);
  EXPECT_TRUE(stream_.synchronize().ok()) << "reported once, then cleared";
}

TEST_F(BadInput, SizeArithmeticOverflowIsCaught) {
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(raw(Opcode::kMemset, {stream_.handle(), buffer_.handle(), kMax - 1, 2, 0}),
            ErrorCode::kOutOfRange);
  EXPECT_EQ(raw(Opcode::kWrite, {stream_.handle(), buffer_.handle(), 0, kMax - 8, 16}),
            ErrorCode::kOutOfRange);
  EXPECT_EQ(raw(Opcode::kRead, {stream_.handle(), buffer_.handle(), 0, conn_->arena_bytes(), 1}),
            ErrorCode::kOutOfRange);
  EXPECT_EQ(raw(Opcode::kCopy, {stream_.handle(), buffer_.handle(), 8, buffer_.handle(), 0, kMax}),
            ErrorCode::kOutOfRange);
  // The stream reports its first failure once, then carries on.
  EXPECT_EQ(stream_.synchronize().error().code(), ErrorCode::kOutOfRange);
  expect_host_healthy();
}

TEST_F(BadInput, ZeroAndHugeAllocationsAreRefused) {
  EXPECT_EQ(conn_->allocate(0).error().code(), ErrorCode::kInvalidArgument);
  auto huge = conn_->allocate(1ull << 39);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code(), ErrorCode::kResourceExhausted);
  expect_host_healthy();
}

TEST_F(BadInput, UnknownKernelIsNotFound) {
  EXPECT_EQ(conn_->kernel("no_such_kernel").error().code(), ErrorCode::kNotFound);
}

TEST_F(BadInput, KernelGivenATooSmallBufferIsRejected) {
  auto relu = conn_->kernel("relu");
  ASSERT_TRUE(relu.ok());
  // 1024 bytes hold 256 floats; ask for 257.
  ASSERT_TRUE(stream_
                  .launch(*relu, {KernelArg::buffer(buffer_), KernelArg::buffer(buffer_),
                                  KernelArg::i64(257)})
                  .ok());
  Status s = stream_.synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(s.error().message().find("(launch)"), std::string::npos);
  expect_host_healthy();
}

TEST_F(BadInput, KernelArgumentsOfTheWrongKindAreRejected) {
  auto relu = conn_->kernel("relu");
  ASSERT_TRUE(relu.ok());
  ASSERT_TRUE(
      stream_.launch(*relu, {KernelArg::buffer(buffer_), KernelArg::i64(1), KernelArg::i64(4)})
          .ok());
  EXPECT_EQ(stream_.synchronize().error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(stream_.launch(*relu, {KernelArg::buffer(buffer_)}).ok());  // too few
  EXPECT_EQ(stream_.synchronize().error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(BadInput, FaultingKernelFailsOnlyItsStream) {
  auto xent = conn_->kernel("softmax_xent");
  auto other = conn_->create_stream();
  ASSERT_TRUE(xent.ok() && other.ok());
  // logits 2x2 floats at 0, labels int32[2] at 64 = {0, 7}: 7 is out of range.
  std::int32_t labels[2] = {0, 7};
  ASSERT_TRUE(stream_.write(buffer_, 64, std::as_bytes(std::span(labels))).ok());
  ASSERT_TRUE(stream_
                  .launch(*xent, {KernelArg::buffer(buffer_, 0), KernelArg::buffer(buffer_, 64),
                                  KernelArg::buffer(buffer_, 128), KernelArg::buffer(buffer_, 256),
                                  KernelArg::i64(2), KernelArg::i64(2)})
                  .ok());
  Status s = stream_.synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(other->synchronize().ok());
  expect_host_healthy();
}

TEST_F(BadInput, HelloWithAnotherProtocolVersionIsRefusedWithAMessage) {
  auto socket = ipc::Socket::connect_unix(socket_path_);
  ASSERT_TRUE(socket.ok());
  wire::HelloRequest hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = 99;
  hello.transport = static_cast<std::uint16_t>(wire::Transport::kShm);
  std::strcpy(hello.vm_name, "old-guest");
  ASSERT_TRUE(socket->write_all(&hello, sizeof(hello)).ok());
  wire::HelloReply reply{};
  auto fd = socket->recv_fd(&reply, sizeof(reply));
  ASSERT_TRUE(fd.ok());
  EXPECT_EQ(fd.value(), -1);
  EXPECT_EQ(static_cast<ErrorCode>(reply.status), ErrorCode::kUnimplemented);
  EXPECT_NE(std::string(reply.message).find("version 99"), std::string::npos);
}

TEST_F(BadInput, GarbageHelloIsRefused) {
  auto socket = ipc::Socket::connect_unix(socket_path_);
  ASSERT_TRUE(socket.ok());
  std::vector<char> junk(sizeof(wire::HelloRequest), 'x');
  ASSERT_TRUE(socket->write_all(junk.data(), junk.size()).ok());
  wire::HelloReply reply{};
  ASSERT_TRUE(socket->read_exact(&reply, sizeof(reply)).ok());
  EXPECT_EQ(static_cast<ErrorCode>(reply.status), ErrorCode::kInvalidArgument);
  expect_host_healthy();
}

}  // namespace
}  // namespace malv
