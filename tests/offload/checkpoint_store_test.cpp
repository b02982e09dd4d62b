// CheckpointStore and CheckpointWriter: per-VM directories, name checks, the
// byte cap, damage on disk, and crashes in the middle of a write.
#include "offload/checkpoint_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "offload/checkpoint_writer.h"

namespace malv::offload {
namespace {

namespace fs = std::filesystem;

CheckpointContents filled(std::size_t bytes, std::uint8_t value, std::string_view metadata = "m") {
  CheckpointContents c;
  c.entries.push_back({"weights", std::vector<std::byte>(bytes, std::byte{value})});
  c.entries.push_back({"bias", std::vector<std::byte>(3, std::byte{value})});
  const auto* p = reinterpret_cast<const std::byte*>(metadata.data());
  c.metadata.assign(p, p + metadata.size());
  return c;
}

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/malv-ckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    store_ = open_store();
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<CheckpointStore> open_store(std::uint64_t cap = 1ull << 30) {
    auto store = CheckpointStore::open({.root = root_ + "/store", .max_checkpoint_bytes = cap});
    EXPECT_TRUE(store.ok()) << store.error().to_string();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  std::vector<std::string> files_in(const std::string& vm) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(root_ + "/store/" + vm)) {
      names.push_back(e.path().filename());
    }
    return names;
  }

  // The checkpoint under `name` is complete and holds `value` throughout.
  void expect_complete(const std::string& name, std::uint8_t value, std::size_t bytes) {
    auto image = store_->load("vm-a", name);
    ASSERT_TRUE(image.ok()) << image.error().to_string();
    const CheckpointImage::Entry* e = image->find("weights");
    ASSERT_NE(e, nullptr);
    ASSERT_EQ(e->bytes, bytes);
    const auto data = image->data(*e);
    EXPECT_TRUE(
        std::all_of(data.begin(), data.end(), [&](std::byte b) { return b == std::byte{value}; }));
  }

  std::string root_;
  std::unique_ptr<CheckpointStore> store_;
};

TEST_F(CheckpointStoreTest, SavesAndLoadsInTheVmsOwnPrivateDirectory) {
  auto written = store_->save("vm-a", "run1", filled(1000, 7));
  ASSERT_TRUE(written.ok()) << written.error().to_string();
  EXPECT_EQ(written.value(), fs::file_size(root_ + "/store/vm-a/run1"));
  expect_complete("run1", 7, 1000);
  struct stat st {};
  ASSERT_EQ(::stat((root_ + "/store/vm-a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(store_->list("vm-a").value(), std::vector<std::string>{"run1"});
  // Another VM asking for the same name reaches its own (empty) directory.
  auto other = store_->load("vm-b", "run1");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code(), ErrorCode::kNotFound);
}

TEST_F(CheckpointStoreTest, NamesThatAreNotPlainFileNamesAreRefused) {
  for (std::string_view name :
       {"", "../x", "..", ".", ".hidden", "a/b", "x y", "tab\t",
        "long-name-long-name-long-name-long-name-long-name-long-name-wxyz"}) {
    auto saved = store_->save("vm-a", name, filled(4, 1));
    ASSERT_FALSE(saved.ok()) << name;
    EXPECT_EQ(saved.error().code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_EQ(store_->load("vm-a", name).error().code(), ErrorCode::kInvalidArgument) << name;
  }
  EXPECT_EQ(store_->save("../vm-b", "x", filled(4, 1)).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(store_->save("vm-a", "Run_1.v2-final", filled(4, 1)).ok());
}

TEST_F(CheckpointStoreTest, CheckpointOverTheCapIsResourceExhausted) {
  store_ = open_store(1000);
  auto saved = store_->save("vm-a", "big", filled(1001, 1));
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(store_->load("vm-a", "big").error().code(), ErrorCode::kNotFound);
}

TEST_F(CheckpointStoreTest, CorruptOrTruncatedFileOnDiskIsDataLoss) {
  ASSERT_TRUE(store_->save("vm-a", "run1", filled(5000, 3)).ok());
  const std::string path = root_ + "/store/vm-a/run1";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2500);
    f.put('\x55');
  }
  auto corrupt = store_->load("vm-a", "run1");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(corrupt.error().to_string().find(path), std::string::npos);

  ASSERT_TRUE(store_->save("vm-a", "run1", filled(5000, 3)).ok());
  fs::resize_file(path, fs::file_size(path) - 100);
  auto truncated = store_->load("vm-a", "run1");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().code(), ErrorCode::kDataLoss);
}

// A writer killed in the middle of a write (here by exceeding its file size
// limit, SIGXFSZ, at a known point) leaves the previous checkpoint in place
// and at most a temporary file, which the store ignores and then removes.
TEST_F(CheckpointStoreTest, CrashMidWriteLeavesThePreviousCheckpointWhole) {
  constexpr std::size_t kBytes = 8u << 20;
  ASSERT_TRUE(store_->save("vm-a", "run1", filled(kBytes, 1)).ok());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    const rlimit half{kBytes / 2, kBytes / 2};
    ::setrlimit(RLIMIT_FSIZE, &half);
    (void)store_->save("vm-a", "run1", filled(kBytes, 2));
    ::_exit(0);  // not reached: SIGXFSZ ends the process mid-write
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);

  expect_complete("run1", 1, kBytes);
  const auto names = files_in("vm-a");
  EXPECT_EQ(names.size(), 2u);  // run1 and the torn temporary
  EXPECT_EQ(store_->list("vm-a").value(), std::vector<std::string>{"run1"});
  store_ = open_store();  // a restarted host cleans up
  EXPECT_EQ(files_in("vm-a"), std::vector<std::string>{"run1"});
  expect_complete("run1", 1, kBytes);
}

// The same with SIGKILL at an arbitrary moment of a writer that replaces the
// checkpoint over and over: the name always holds one whole checkpoint.
TEST_F(CheckpointStoreTest, KilledWriterNeverLeavesATornCheckpoint) {
  constexpr std::size_t kBytes = 4u << 20;
  ASSERT_TRUE(store_->save("vm-a", "run1", filled(kBytes, 0)).ok());
  for (int round = 0; round < 3; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (std::uint8_t v = 1;; v = static_cast<std::uint8_t>(v % 200 + 1)) {
        (void)store_->save("vm-a", "run1", filled(kBytes, v));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(15 + 20 * round));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    auto image = store_->load("vm-a", "run1");
    ASSERT_TRUE(image.ok()) << image.error().to_string();
    const auto data = image->data(*image->find("weights"));
    ASSERT_EQ(data.size(), kBytes);
    EXPECT_TRUE(std::all_of(data.begin(), data.end(), [&](std::byte b) { return b == data[0]; }));
    EXPECT_LE(files_in("vm-a").size(), 2u);  // at most this writer's temporary
    store_ = open_store();
    EXPECT_EQ(files_in("vm-a"), std::vector<std::string>{"run1"});
  }
}

TEST_F(CheckpointStoreTest, WriterFinishesQueuedWritesBeforeItGoesAway) {
  std::atomic<int> done{0};
  {
    CheckpointWriter writer(*store_, "vm-a");
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(writer.reserve(1 << 20).ok());
      writer.submit(
          "run" + std::to_string(i),
          std::make_unique<CheckpointContents>(filled(1 << 20, static_cast<std::uint8_t>(i))),
          1 << 20, [&](Result<std::uint64_t> r) {
            EXPECT_TRUE(r.ok());
            ++done;
          });
    }
  }
  EXPECT_EQ(done.load(), 4);
  for (int i = 0; i < 4; ++i) expect_complete("run" + std::to_string(i), i, 1 << 20);
}

TEST_F(CheckpointStoreTest, WriterCapsSnapshotBytesInFlight) {
  store_ = open_store(1000);
  CheckpointWriter writer(*store_, "vm-a");
  ASSERT_TRUE(writer.reserve(600).ok());
  EXPECT_EQ(writer.reserve(600).error().code(), ErrorCode::kResourceExhausted);
  writer.release(600);
  EXPECT_TRUE(writer.reserve(1000).ok());
}

TEST_F(CheckpointStoreTest, TheVmsDiskQuotaRefusesNamingUsageAndLimitAndKeepsWhatIsStored) {
  const CheckpointQuota quota{.max_bytes = 3000, .max_count = 2};
  ASSERT_TRUE(store_->save("vm-a", "a", filled(1000, 1), quota).ok());
  ASSERT_TRUE(store_->save("vm-a", "b", filled(1000, 2), quota).ok());
  auto third = store_->save("vm-a", "c", filled(10, 3), quota);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(third.error().message().find("VM 'vm-a' checkpoint count: 2 stored + 1 new > limit 2"),
            std::string::npos)
      << third.error().to_string();
  // Replacing counts the new file, not the old one; a bigger one can pass the bytes.
  EXPECT_TRUE(store_->save("vm-a", "a", filled(900, 4), quota).ok());
  auto too_big = store_->save("vm-a", "b", filled(2500, 5), quota);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.error().message().find("VM 'vm-a' checkpoint disk:"), std::string::npos);
  EXPECT_NE(too_big.error().message().find("> limit 3000"), std::string::npos)
      << too_big.error().to_string();
  expect_complete("b", 2, 1000);  // the refused replacement left the old file whole
  const CheckpointUsage usage = store_->usage("vm-a");
  EXPECT_EQ(usage.count, 2u);
  EXPECT_EQ(usage.bytes, fs::file_size(store_->path_of("vm-a", "a")) +
                             fs::file_size(store_->path_of("vm-a", "b")));
  EXPECT_EQ(store_->usage("vm-none").count, 0u);
}

TEST_F(CheckpointStoreTest, WriterChargesSnapshotsToTheVmsHostMemoryUntilWritten) {
  auto host_memory = std::make_shared<ByteQuota>("VM 'vm-a' host memory", 4096);
  {
    CheckpointWriter writer(*store_, "vm-a", {.host_memory = host_memory});
    auto refused = writer.reserve(5000);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().message(),
              "VM 'vm-a' host memory: 0 bytes in use + 5000 requested > limit 4096");
    ASSERT_TRUE(writer.reserve(3000).ok());
    EXPECT_EQ(host_memory->used(), 3000u);
    std::promise<void> written;
    writer.submit("snap", std::make_unique<CheckpointContents>(filled(100, 7)), 3000,
                  [&](Result<std::uint64_t>) { written.set_value(); });
    written.get_future().wait();
  }
  EXPECT_EQ(host_memory->used(), 0u);
}

}  // namespace
}  // namespace malv::offload
