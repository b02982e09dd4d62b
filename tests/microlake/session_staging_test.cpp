// Session::Flush::kLater: stream ops (and stream syncs) wait for flush(), go
// to the backend in submission order, and any other command flushes what is
// staged first.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "microlake/completion_sink.h"
#include "microlake/session.h"
#include "proto/encoder.h"

namespace malv::microlake {
namespace {

using wire::Opcode;
using Flush = Session::Flush;

class RecordingSink final : public CompletionSink {
 public:
  void post(const wire::Completion& completion, proto::ArenaRange) override {
    std::lock_guard lock(mutex_);
    posted_.push_back(completion);
    changed_.notify_all();
  }
  // Waits until `count` completions were posted (or 10 s went by).
  std::vector<wire::Completion> wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(10), [&] { return posted_.size() >= count; });
    return posted_;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return posted_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<wire::Completion> posted_;
};

class SessionStaging : public ::testing::Test {
 protected:
  void SetUp() override {
    stream_ = create(Opcode::kStreamCreate, {0});
    buffer_ = create(Opcode::kBufferAlloc, {4096});
  }

  std::uint64_t create(Opcode op, std::initializer_list<std::uint64_t> args) {
    const std::size_t before = sink_.count();
    session_.handle(command(op, args), {});
    const auto posted = sink_.wait_for(before + 1);
    EXPECT_EQ(posted.size(), before + 1);
    return posted.back().result;
  }

  wire::Command command(Opcode op, std::initializer_list<std::uint64_t> args) {
    wire::Command cmd = proto::make_command(op, 0, args);
    cmd.tag = ++next_tag_;
    return cmd;
  }

  wire::Command memset(std::uint64_t offset, std::uint8_t value) {
    return command(Opcode::kMemset, {stream_, buffer_, offset, 16, value});
  }

  std::unique_ptr<accel::Backend> backend_ =
      accel::make_cpu_backend({.memory_bytes = 16ull << 20, .workers = 2});
  std::vector<std::byte> arena_ = std::vector<std::byte>(1 << 16);
  RecordingSink sink_;
  Session session_{"staging", *backend_, arena_, sink_};
  std::uint64_t next_tag_ = 0;
  std::uint64_t stream_ = 0;
  std::uint64_t buffer_ = 0;
};

TEST_F(SessionStaging, StagedOpsReachTheBackendOnlyAtFlushAndInOrder) {
  const std::size_t before = sink_.count();
  for (int i = 0; i < 10; ++i) {
    session_.handle(memset(16 * static_cast<std::uint64_t>(i), 1), {}, Flush::kLater);
  }
  backend_->synchronize_all();  // idle: nothing was handed over yet
  EXPECT_EQ(sink_.count(), before);
  EXPECT_EQ(session_.outstanding(), 10u);
  session_.flush();
  const auto posted = sink_.wait_for(before + 10);
  ASSERT_EQ(posted.size(), before + 10);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(posted[before + i].tag, posted[before].tag + i) << "completion " << i;
    EXPECT_EQ(posted[before + i].status, 0);
  }
  backend_->synchronize_all();  // a completion is posted just before it stops being owed
  EXPECT_EQ(session_.outstanding(), 0u);
}

TEST_F(SessionStaging, AStreamSyncStaysStagedBehindTheOpsBeforeIt) {
  const std::size_t before = sink_.count();
  session_.handle(memset(0, 7), {}, Flush::kLater);
  session_.handle(memset(16, 8), {}, Flush::kLater);
  // A request that ends in a stream sync goes to the device as one batch.
  session_.handle(command(Opcode::kStreamSync, {stream_}), {}, Flush::kLater);
  backend_->synchronize_all();
  EXPECT_EQ(sink_.count(), before);
  session_.flush();
  const auto posted = sink_.wait_for(before + 3);
  ASSERT_EQ(posted.size(), before + 3);
  EXPECT_EQ(posted[before + 1].tag, posted[before].tag + 1);
  EXPECT_EQ(posted[before + 2].opcode, static_cast<std::uint16_t>(Opcode::kStreamSync));
  EXPECT_EQ(posted[before + 2].status, 0);
}

TEST_F(SessionStaging, ACommandThatIsNotAStreamOpFlushesFirst) {
  const std::size_t before = sink_.count();
  session_.handle(memset(0, 7), {}, Flush::kLater);
  session_.handle(memset(16, 8), {}, Flush::kLater);
  // A device-wide sync looks at every stream: the two memsets go first, so
  // all three complete without a flush().
  session_.handle(command(Opcode::kSyncAll, {}), {}, Flush::kLater);
  const auto posted = sink_.wait_for(before + 3);
  ASSERT_EQ(posted.size(), before + 3);
  EXPECT_EQ(posted[before + 2].opcode, static_cast<std::uint16_t>(Opcode::kSyncAll));
  EXPECT_EQ(posted[before + 2].status, 0);
}

TEST_F(SessionStaging, StagingIsBoundedWithoutAFlush) {
  const std::size_t before = sink_.count();
  const std::size_t sent = Session::kMaxStagedOps + 10;
  for (std::size_t i = 0; i < sent; ++i) session_.handle(memset(0, 1), {}, Flush::kLater);
  // At most kMaxStagedOps - 1 stay behind.
  const auto posted = sink_.wait_for(before + sent - (Session::kMaxStagedOps - 1));
  EXPECT_GE(posted.size(), before + sent - (Session::kMaxStagedOps - 1));
  session_.flush();
  EXPECT_EQ(sink_.wait_for(before + sent).size(), before + sent);
}

TEST_F(SessionStaging, RejectedStreamOpFailsInItsPlaceAmongStagedOps) {
  const std::size_t before = sink_.count();
  session_.handle(memset(0, 1), {}, Flush::kLater);
  session_.handle(memset(4096, 1), {}, Flush::kLater);  // past the buffer's end
  session_.handle(memset(16, 1), {}, Flush::kLater);
  session_.flush();
  const auto posted = sink_.wait_for(before + 3);
  ASSERT_EQ(posted.size(), before + 3);
  EXPECT_EQ(posted[before].status, 0);
  EXPECT_EQ(static_cast<ErrorCode>(posted[before + 1].status), ErrorCode::kOutOfRange);
  EXPECT_EQ(posted[before + 2].status, 0);
}

}  // namespace
}  // namespace malv::microlake
