// The checkpoint service end to end: a guest saves buffers through a real
// host (kCheckpointSave) and restores them into a new session
// (kCheckpointRestore); bad specs get precise errors and leave the session
// working; damaged files are kDataLoss; a guest that dies after its save
// still gets its file; one VM cannot reach another's checkpoints.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "guest/connection_core.h"
#include "host_fixture.h"
#include "malv/checkpoint.h"
#include "offload/checkpoint_store.h"
#include "proto/encoder.h"

namespace malv::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<unsigned char>(i * 131 + seed));
  return v;
}

std::vector<std::byte> text(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

class CheckpointServiceTest : public HostFixture {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/malv-ckpt-svc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto store = offload::CheckpointStore::open({.root = root_, .max_checkpoint_bytes = 64 << 20});
    ASSERT_TRUE(store.ok()) << store.error().to_string();
    store_ = std::move(store).value();
    HostFixture::SetUp();
  }
  void TearDown() override {
    HostFixture::TearDown();
    fs::remove_all(root_);
  }
  void customize(microlake::ServerOptions& options) override {
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      microlake::Admission admission;
      if (info.vm_name != "vm-without-services") admission.services.checkpoints = store_.get();
      if (info.vm_name == "vm-limited") {
        // The host daemon hands a VM's quotas to its sessions the same way.
        admission.services.host_memory = host_memory_;
        admission.services.checkpoint_quota = [] {
          return offload::CheckpointQuota{.max_bytes = 6 << 20, .max_count = 2};
        };
      }
      return admission;
    };
  }

  std::shared_ptr<ByteQuota> host_memory_ =
      std::make_shared<ByteQuota>("VM 'vm-limited' host memory", 8 << 20);

  // A buffer filled with `data` (synchronised).
  static guest::Buffer filled(guest::Connection& conn, guest::Stream& stream,
                              const std::vector<std::byte>& data) {
    auto buffer = conn.allocate(data.size());
    EXPECT_TRUE(buffer.ok());
    EXPECT_TRUE(stream.write(*buffer, 0, data).ok());
    EXPECT_TRUE(stream.synchronize().ok());
    return std::move(buffer).value();
  }
  static std::vector<std::byte> contents(guest::Stream& stream, const guest::Buffer& buffer) {
    std::vector<std::byte> out(buffer.size());
    EXPECT_TRUE(stream.read(buffer, 0, out).ok());
    EXPECT_TRUE(stream.synchronize().ok());
    return out;
  }

  // A raw kCheckpointSave/Restore of hand-made spec bytes; the completion.
  static wire::Completion raw(guest::Connection& connection, wire::Opcode opcode,
                              const guest::Stream& stream, std::span<const std::byte> spec,
                              std::uint64_t offset_override = ~0ull, std::uint64_t extra = 0,
                              std::uint64_t layout = 0) {
    guest::ConnectionCore& conn = guest::core_of(connection);
    const std::uint64_t bytes = spec.size() + extra;
    auto offset = conn.arena_allocate(bytes);
    EXPECT_TRUE(offset.ok());
    std::memcpy(conn.arena().data() + *offset, spec.data(), spec.size());
    guest::PendingCommand pending;
    pending.arena_offset = *offset;
    pending.arena_bytes = bytes;
    const std::uint64_t at = offset_override == ~0ull ? *offset : offset_override;
    auto c = conn.call(
        proto::make_command(opcode, conn.next_tag(), {stream.handle(), at, bytes, layout}),
        {*offset, bytes}, pending);
    EXPECT_TRUE(c.ok());
    return c.ok() ? c.value() : wire::Completion{};
  }

  struct RawEntry {
    std::uint64_t buffer, offset, bytes;
    std::string name;
  };
  static std::vector<std::byte> spec(std::string_view name, const std::vector<RawEntry>& entries,
                                     std::uint32_t metadata_bytes = 0,
                                     std::uint32_t entry_count = ~0u) {
    wire::CheckpointHeader header{};
    std::memcpy(header.name, name.data(), std::min(name.size(), sizeof(header.name)));
    header.entries = entry_count == ~0u ? static_cast<std::uint32_t>(entries.size()) : entry_count;
    header.metadata_bytes = metadata_bytes;
    std::vector<std::byte> out(sizeof(header) + entries.size() * sizeof(wire::CheckpointEntry) +
                               metadata_bytes);
    std::memcpy(out.data(), &header, sizeof(header));
    for (std::size_t i = 0; i < entries.size(); ++i) {
      wire::CheckpointEntry e{};
      e.buffer = entries[i].buffer;
      e.offset = entries[i].offset;
      e.bytes = entries[i].bytes;
      std::memcpy(e.name, entries[i].name.data(), std::min(entries[i].name.size(), sizeof(e.name)));
      std::memcpy(out.data() + sizeof(header) + i * sizeof(e), &e, sizeof(e));
    }
    return out;
  }

  // A kNameTable spec: CheckpointEntryRef records, then the names.
  struct NamedEntry {
    std::uint64_t buffer, offset, bytes;
    std::string name;
    std::uint32_t name_bytes = ~0u;  // ~0u: name.size()
    std::uint32_t reserved = 0;
  };
  static std::vector<std::byte> named_spec(std::string_view name,
                                           const std::vector<NamedEntry>& entries,
                                           std::uint32_t metadata_bytes = 0,
                                           std::uint32_t entry_count = ~0u) {
    wire::CheckpointHeader header{};
    std::memcpy(header.name, name.data(), std::min(name.size(), sizeof(header.name)));
    header.entries = entry_count == ~0u ? static_cast<std::uint32_t>(entries.size()) : entry_count;
    header.metadata_bytes = metadata_bytes;
    std::vector<std::byte> out(sizeof(header));
    std::memcpy(out.data(), &header, sizeof(header));
    for (const NamedEntry& e : entries) {
      const wire::CheckpointEntryRef ref{
          e.buffer, e.offset, e.bytes,
          e.name_bytes == ~0u ? static_cast<std::uint32_t>(e.name.size()) : e.name_bytes,
          e.reserved};
      const auto* p = reinterpret_cast<const std::byte*>(&ref);
      out.insert(out.end(), p, p + sizeof(ref));
    }
    for (const NamedEntry& e : entries) {
      const auto* p = reinterpret_cast<const std::byte*>(e.name.data());
      out.insert(out.end(), p, p + e.name.size());
    }
    out.resize(out.size() + metadata_bytes);
    return out;
  }

  std::string root_;
  std::unique_ptr<offload::CheckpointStore> store_;
};

// A ResNet-50 state_dict has 320 entries, names up to 41 bytes: past the
// fixed layout's 256 entries and 39-byte names. libmalv sends such a spec as
// a name table; the host stores it as a version 2 file; it restores exactly.
TEST_F(CheckpointServiceTest, ManyEntriesWithLongNamesRoundTripThroughANameTable) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  constexpr std::size_t kEntries = 320;
  const std::vector<std::byte> data = pattern(kEntries * 24, 5);
  guest::Buffer x = filled(*conn, *stream, data);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < kEntries; ++i) {
    names.push_back(fmt::format("layer{}.{}.downsample.1.num_batches_tracked", i % 4, i));
  }
  names.back() = std::string(wire::kMaxCheckpointEntryName, 'n');  // the longest allowed
  std::vector<guest::CheckpointItem> items;
  for (std::size_t i = 0; i < kEntries; ++i) items.push_back({names[i], &x, i * 24, 24});
  const std::vector<std::byte> meta = text("manifest");
  auto saved = guest::save_checkpoint(*conn, *stream, "resnet", items, meta);
  ASSERT_TRUE(saved.ok()) << saved.error().to_string();
  auto image = store_->load("vm-a", "resnet");
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  EXPECT_EQ(image->entries().size(), kEntries);
  std::ifstream file(store_->path_of("vm-a", "resnet"), std::ios::binary);
  char header[12] = {};
  file.read(header, sizeof(header));
  std::uint32_t version = 0;
  std::memcpy(&version, header + 8, sizeof(version));
  EXPECT_EQ(version, 2u);

  auto again = connect("vm-a");
  ASSERT_TRUE(again);
  auto stream2 = again->create_stream();
  ASSERT_TRUE(stream2.ok());
  guest::Buffer y = again->allocate(data.size()).value();
  std::vector<guest::CheckpointItem> back;
  for (std::size_t i = 0; i < kEntries; ++i) back.push_back({names[i], &y, i * 24, 24});
  auto restored = guest::restore_checkpoint(*again, *stream2, "resnet", back);
  ASSERT_TRUE(restored.ok()) << restored.error().to_string();
  EXPECT_EQ(*restored, meta);
  EXPECT_EQ(contents(*stream2, y), data);
}

TEST_F(CheckpointServiceTest, ShortNamesKeepTheFixedLayoutAndAVersion1File) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(64, 2));
  const std::string longest(39, 'w');  // the fixed layout's longest name
  const guest::CheckpointItem items[] = {{longest, &x, 0, 64}};
  ASSERT_TRUE(guest::save_checkpoint(*conn, *stream, "short", items, {}).ok());
  std::ifstream file(store_->path_of("vm-a", "short"), std::ios::binary);
  char header[12] = {};
  file.read(header, sizeof(header));
  std::uint32_t version = 0;
  std::memcpy(&version, header + 8, sizeof(version));
  EXPECT_EQ(version, 1u);  // hosts that read only version 1 read it
}

TEST_F(CheckpointServiceTest, TheGuestLibraryRefusesNamesAndCountsPastTheNewLimits) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = conn->allocate(64).value();
  const std::string too_long(wire::kMaxCheckpointEntryName + 1, 'n');
  const guest::CheckpointItem long_name[] = {{too_long, &x, 0, 4}};
  auto saved = guest::save_checkpoint(*conn, *stream, "c", long_name, {});
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(saved.error().message().find("1024"), std::string::npos) << saved.error().message();
  const std::string with_nul("a\0b", 3);
  const guest::CheckpointItem nul_name[] = {{with_nul, &x, 0, 4}};
  EXPECT_EQ(guest::save_checkpoint(*conn, *stream, "c", nul_name, {}).error().code(),
            ErrorCode::kInvalidArgument);
  std::vector<std::string> names;
  for (std::uint32_t i = 0; i <= wire::kMaxCheckpointEntriesNamed; ++i) {
    names.push_back(fmt::format("e{}", i));
  }
  std::vector<guest::CheckpointItem> too_many;
  for (const std::string& n : names) too_many.push_back({n, &x, 0, 0});
  auto many = guest::save_checkpoint(*conn, *stream, "c", too_many, {});
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(stream->synchronize().ok());  // refused in the guest: nothing reached the stream
  EXPECT_TRUE(store_->list("vm-a").value().empty());
}

TEST_F(CheckpointServiceTest, BadNameTableSpecsGetPreciseErrorsAndTheSessionKeepsWorking) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(4096, 1));
  const std::uint64_t h = x.handle();
  constexpr std::uint64_t kNamed = 1;
  struct Case {
    const char* what;
    std::vector<std::byte> spec;
    ErrorCode want;
    std::uint64_t layout = kNamed;
  };
  std::vector<NamedEntry> too_many;
  for (std::uint32_t i = 0; i <= wire::kMaxCheckpointEntriesNamed; ++i) {
    too_many.push_back({h, 0, 0, fmt::format("e{}", i)});
  }
  // The names claim more bytes than the spec holds before its metadata.
  std::vector<std::byte> past_end = named_spec("c", {{h, 0, 4, "abc", 3}}, 8);
  past_end.resize(past_end.size() - 2);  // room for the metadata, not for all the name
  const Case cases[] = {
      {"unknown layout", named_spec("c", {{h, 0, 4, "a"}}), ErrorCode::kUnimplemented, 2},
      {"empty entry name", named_spec("c", {{h, 0, 4, ""}}), ErrorCode::kInvalidArgument},
      {"name of 1025 bytes", named_spec("c", {{h, 0, 4, std::string(1025, 'n')}}),
       ErrorCode::kInvalidArgument},
      {"name past the spec", named_spec("c", {{h, 0, 4, "abc", 200}}), ErrorCode::kOutOfRange},
      {"name into the metadata", past_end, ErrorCode::kOutOfRange},
      {"reserved not zero", named_spec("c", {{h, 0, 4, "a", ~0u, 1}}), ErrorCode::kInvalidArgument},
      {"NUL in a name", named_spec("c", {{h, 0, 4, std::string("a\0b", 3)}}),
       ErrorCode::kInvalidArgument},
      {"duplicate long names",
       named_spec("c", {{h, 0, 4, std::string(100, 'd')}, {h, 4, 4, std::string(100, 'd')}}),
       ErrorCode::kInvalidArgument},
      {"65537 entries", named_spec("c", too_many), ErrorCode::kInvalidArgument},
      {"forged handle", named_spec("c", {{h ^ (0x5ull << 48), 0, 4, std::string(60, 'f')}}),
       ErrorCode::kStaleHandle},
      {"range past the buffer", named_spec("c", {{h, 4000, 97, std::string(60, 'r')}}),
       ErrorCode::kOutOfRange},
      {"records beyond the range", named_spec("c", {{h, 0, 4, "a"}}, 0, 3), ErrorCode::kOutOfRange},
  };
  for (const Case& c : cases) {
    const wire::Completion done =
        raw(*conn, wire::Opcode::kCheckpointSave, *stream, c.spec, ~0ull, 0, c.layout);
    EXPECT_EQ(static_cast<ErrorCode>(done.status), c.want) << c.what;
    (void)stream->synchronize();  // each rejection is a stream error: report it here
  }
  EXPECT_TRUE(store_->list("vm-a").value().empty());
  // A good name-table spec then saves, and the session still works.
  const wire::Completion done =
      raw(*conn, wire::Opcode::kCheckpointSave, *stream,
          named_spec("c", {{h, 0, 4, std::string(60, 'g')}}), ~0ull, 0, kNamed);
  EXPECT_EQ(static_cast<ErrorCode>(done.status), ErrorCode::kOk);
  EXPECT_EQ(store_->list("vm-a").value().size(), 1u);
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(CheckpointServiceTest, SaveThenRestoreIntoANewSessionIsByteIdentical) {
  const auto a = pattern(3 << 20, 1), b = pattern(4000, 2);
  const auto metadata = text("model=mlp:4-2 step=17");
  {
    auto conn = connect("vm-a");
    ASSERT_TRUE(conn);
    auto stream = conn->create_stream();
    ASSERT_TRUE(stream.ok());
    guest::Buffer x = filled(*conn, *stream, a), y = filled(*conn, *stream, b);
    const guest::CheckpointItem items[] = {{"x", &x, 0, x.size()}, {"y.tail", &y, 1000, 3000}};
    auto written = guest::save_checkpoint(*conn, *stream, "run1", items, metadata);
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    EXPECT_EQ(written.value(), fs::file_size(store_->path_of("vm-a", "run1")));
  }
  auto conn = connect("vm-a");  // a new session, new buffers
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = conn->allocate(a.size()).value();
  guest::Buffer y = filled(*conn, *stream, std::vector<std::byte>(4000, std::byte{0xEE}));
  const guest::CheckpointItem items[] = {{"y.tail", &y, 0, 3000}, {"x", &x, 0, x.size()}};
  auto restored = guest::restore_checkpoint(*conn, *stream, "run1", items);
  ASSERT_TRUE(restored.ok()) << restored.error().to_string();
  EXPECT_EQ(restored.value(), metadata);
  EXPECT_EQ(contents(*stream, x), a);
  std::vector<std::byte> want_y(b.begin() + 1000, b.end());
  want_y.resize(4000, std::byte{0xEE});
  EXPECT_EQ(contents(*stream, y), want_y);
}

TEST_F(CheckpointServiceTest, SnapshotIsTheStateAtItsPointInTheStream) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  const auto before = pattern(2 << 20, 5);
  guest::Buffer x = filled(*conn, *stream, before);
  const guest::CheckpointItem items[] = {{"x", &x, 0, x.size()}};
  ASSERT_TRUE(
      guest::save_checkpoint(*conn, *stream, "point", items, {}, guest::SaveMode::kAsync).ok());
  ASSERT_TRUE(stream->memset(x, 0, x.size(), 0xAB).ok());  // after the save, same stream
  ASSERT_TRUE(stream->synchronize().ok());
  Result<offload::CheckpointImage> image = Error(ErrorCode::kNotFound, "");
  for (int i = 0; i < 500 && !image.ok(); ++i) {  // the rename makes it appear whole
    image = store_->load("vm-a", "point");
    if (!image.ok()) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  const auto saved = image->data(*image->find("x"));
  EXPECT_TRUE(std::equal(saved.begin(), saved.end(), before.begin(), before.end()));
  EXPECT_EQ(contents(*stream, x), std::vector<std::byte>(x.size(), std::byte{0xAB}));
}

TEST_F(CheckpointServiceTest, BadSpecsGetPreciseErrorsAndTheSessionKeepsWorking) {
  auto conn = connect("vm-a");
  auto other = connect("vm-b");
  ASSERT_TRUE(conn && other);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(4096, 1));
  guest::Buffer foreign = other->allocate(4096).value();
  std::uint64_t freed_handle = 0;
  {
    guest::Buffer freed = conn->allocate(64).value();
    freed_handle = freed.handle();
  }
  const std::uint64_t h = x.handle();
  struct Case {
    const char* what;
    std::vector<std::byte> spec;
    ErrorCode want;
  };
  std::vector<RawEntry> many;
  for (int i = 0; i < 257; ++i) many.push_back({h, 0, 4, fmt::format("e{}", i)});
  const Case cases[] = {
      {"forged handle", spec("c", {{h ^ (0x5ull << 48), 0, 4, "a"}}), ErrorCode::kStaleHandle},
      {"foreign handle", spec("c", {{foreign.handle(), 0, 4, "a"}}), ErrorCode::kStaleHandle},
      {"freed handle", spec("c", {{freed_handle, 0, 4, "a"}}), ErrorCode::kStaleHandle},
      {"stream as buffer", spec("c", {{stream->handle(), 0, 4, "a"}}), ErrorCode::kWrongHandleType},
      {"range past the buffer", spec("c", {{h, 4000, 97, "a"}}), ErrorCode::kOutOfRange},
      {"offset past the buffer", spec("c", {{h, 5000, 0, "a"}}), ErrorCode::kOutOfRange},
      {"name ../x", spec("../x", {{h, 0, 4, "a"}}), ErrorCode::kInvalidArgument},
      {"empty name", spec("", {{h, 0, 4, "a"}}), ErrorCode::kInvalidArgument},
      {"unterminated name", spec(std::string(64, 'n'), {{h, 0, 4, "a"}}),
       ErrorCode::kInvalidArgument},
      {"name with a space", spec("a b", {{h, 0, 4, "a"}}), ErrorCode::kInvalidArgument},
      {"hidden name", spec(".tmp-c", {{h, 0, 4, "a"}}), ErrorCode::kInvalidArgument},
      {"duplicate entry names", spec("c", {{h, 0, 4, "a"}, {h, 4, 4, "a"}}),
       ErrorCode::kInvalidArgument},
      {"empty entry name", spec("c", {{h, 0, 4, ""}}), ErrorCode::kInvalidArgument},
      {"unterminated entry name", spec("c", {{h, 0, 4, std::string(40, 'e')}}),
       ErrorCode::kInvalidArgument},
      {"no entries", spec("c", {}, 0, 0), ErrorCode::kInvalidArgument},
      {"257 entries", spec("c", many), ErrorCode::kInvalidArgument},
      {"oversized metadata", spec("c", {{h, 0, 4, "a"}}, wire::kMaxCheckpointMetadata + 1),
       ErrorCode::kInvalidArgument},
      {"entries beyond the range", spec("c", {{h, 0, 4, "a"}}, 0, 3), ErrorCode::kOutOfRange},
      {"header cut short", std::vector<std::byte>(40), ErrorCode::kOutOfRange},
  };
  for (const Case& c : cases) {
    const wire::Completion done = raw(*conn, wire::Opcode::kCheckpointSave, *stream, c.spec);
    EXPECT_EQ(static_cast<ErrorCode>(done.status), c.want) << c.what;
  }
  // The arena range itself out of bounds.
  const auto good = spec("c", {{h, 0, 4, "a"}});
  EXPECT_EQ(
      static_cast<ErrorCode>(
          raw(*conn, wire::Opcode::kCheckpointSave, *stream, good, conn->arena_bytes() - 8).status),
      ErrorCode::kOutOfRange);
  // Rejections are stream errors, in order: the next sync reports the first.
  Status synced = stream->synchronize();
  ASSERT_FALSE(synced.ok());
  EXPECT_EQ(synced.error().code(), ErrorCode::kStaleHandle);
  EXPECT_TRUE(stream->synchronize().ok());
  // Nothing was written, and the session still works.
  EXPECT_TRUE(store_->list("vm-a").value().empty());
  const guest::CheckpointItem items[] = {{"x", &x, 0, x.size()}};
  EXPECT_TRUE(guest::save_checkpoint(*conn, *stream, "fine", items, {}).ok());
  EXPECT_TRUE(conn->ping().ok());
}

TEST_F(CheckpointServiceTest, RestoreChecksTheFileAndEveryEntry) {
  auto conn = connect("vm-a");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(100000, 3));
  guest::Buffer small = conn->allocate(10).value();
  const guest::CheckpointItem items[] = {{"x", &x, 0, x.size()}};
  ASSERT_TRUE(guest::save_checkpoint(*conn, *stream, "run1", items, text("meta")).ok());

  auto expect_restore = [&](std::string_view name, std::span<const guest::CheckpointItem> want,
                            ErrorCode code) {
    auto restored = guest::restore_checkpoint(*conn, *stream, name, want);
    ASSERT_FALSE(restored.ok()) << name;
    EXPECT_EQ(restored.error().code(), code) << name;
    EXPECT_FALSE(stream->synchronize().ok());  // a stream error, in order
  };
  expect_restore("missing", items, ErrorCode::kNotFound);
  const guest::CheckpointItem wrong_name[] = {{"y", &x, 0, x.size()}};
  expect_restore("run1", wrong_name, ErrorCode::kNotFound);
  const guest::CheckpointItem wrong_size[] = {{"x", &x, 0, 1000}};
  expect_restore("run1", wrong_size, ErrorCode::kInvalidArgument);
  const guest::CheckpointItem too_small[] = {{"x", &small, 0, x.size()}};
  expect_restore("run1", too_small, ErrorCode::kOutOfRange);

  // Metadata that does not fit the room: kOutOfRange, result = bytes needed.
  auto room0 = spec("run1", {{x.handle(), 0, x.size(), "x"}}, 0);
  const wire::Completion c = raw(*conn, wire::Opcode::kCheckpointRestore, *stream, room0);
  EXPECT_EQ(static_cast<ErrorCode>(c.status), ErrorCode::kOutOfRange);
  EXPECT_EQ(c.result, 4u);
  EXPECT_FALSE(stream->synchronize().ok());

  const std::string path = store_->path_of("vm-a", "run1");
  const std::string intact = path + ".intact";
  fs::copy_file(path, intact);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(50000);
    f.put('\x5a');
  }
  expect_restore("run1", items, ErrorCode::kDataLoss);
  fs::copy_file(intact, path, fs::copy_options::overwrite_existing);
  fs::resize_file(path, fs::file_size(path) / 2);
  expect_restore("run1", items, ErrorCode::kDataLoss);

  fs::copy_file(intact, path, fs::copy_options::overwrite_existing);
  auto restored = guest::restore_checkpoint(*conn, *stream, "run1", items);
  ASSERT_TRUE(restored.ok()) << restored.error().to_string();
  EXPECT_EQ(restored.value(), text("meta"));
  EXPECT_EQ(contents(*stream, x), pattern(100000, 3));
}

TEST_F(CheckpointServiceTest, GuestThatExitsRightAfterASaveStillGetsItsFile) {
  constexpr std::size_t kBytes = 48u << 20;
  const std::string path = socket_path_;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto conn = guest::Connection::connect_unix(path, {.vm_name = "vm-doomed"});
    if (!conn.ok()) ::_exit(2);
    auto buf = (*conn)->allocate(kBytes);
    auto stream = (*conn)->create_stream();
    if (!buf.ok() || !stream.ok()) ::_exit(3);
    if (!stream->memset(*buf, 0, kBytes, 0x77).ok()) ::_exit(4);
    const guest::CheckpointItem items[] = {{"big", &*buf, 0, kBytes}};
    if (!guest::save_checkpoint(**conn, *stream, "last", items, text("bye"),
                                guest::SaveMode::kAsync)
             .ok()) {
      ::_exit(5);
    }
    // The snapshot is taken once the stream has passed it; the file is not
    // written yet. Leave without a word.
    if (!stream->synchronize().ok()) ::_exit(6);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(wait_for_no_sessions(std::chrono::milliseconds(20000)));
  // Teardown waited for the write: the file is complete now.
  auto image = store_->load("vm-doomed", "last");
  ASSERT_TRUE(image.ok()) << image.error().to_string();
  const auto data = image->data(*image->find("big"));
  ASSERT_EQ(data.size(), kBytes);
  EXPECT_TRUE(
      std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0x77}; }));
  EXPECT_EQ(backend_->memory_in_use(), 0u);
}

TEST_F(CheckpointServiceTest, AVmCannotReachAnotherVmsCheckpoints) {
  auto a = connect("vm-a");
  auto b = connect("vm-b");
  ASSERT_TRUE(a && b);
  auto sa = a->create_stream();
  auto sb = b->create_stream();
  ASSERT_TRUE(sa.ok() && sb.ok());
  guest::Buffer xa = filled(*a, *sa, pattern(1024, 9));
  guest::Buffer xb = b->allocate(1024).value();
  const guest::CheckpointItem ia[] = {{"x", &xa, 0, 1024}};
  ASSERT_TRUE(guest::save_checkpoint(*a, *sa, "secret", ia, {}).ok());
  const guest::CheckpointItem ib[] = {{"x", &xb, 0, 1024}};
  auto stolen = guest::restore_checkpoint(*b, *sb, "secret", ib);
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.error().code(), ErrorCode::kNotFound);
  for (const char* climb : {"../vm-a/secret", "..", "vm-a/secret"}) {
    auto attempt = guest::restore_checkpoint(*b, *sb, climb, ib);
    ASSERT_FALSE(attempt.ok()) << climb;
    EXPECT_EQ(attempt.error().code(), ErrorCode::kInvalidArgument) << climb;
  }
  EXPECT_FALSE(fs::exists(root_ + "/vm-b/secret"));
  EXPECT_TRUE(fs::exists(store_->path_of("vm-a", "secret")));
}

TEST_F(CheckpointServiceTest, HostWithoutTheServiceSaysUnimplemented) {
  auto conn = connect("vm-without-services");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = conn->allocate(16).value();
  const guest::CheckpointItem items[] = {{"x", &x, 0, 16}};
  auto saved = guest::save_checkpoint(*conn, *stream, "c", items, {});
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error().code(), ErrorCode::kUnimplemented);
}

TEST_F(CheckpointServiceTest, SnapshotsBeyondTheVmsHostMemoryQuotaAreRefusedNamingTheLimit) {
  // One 1 MiB buffer saved 16 times in one checkpoint: 16 MiB of snapshots
  // in host RAM for a VM whose host-memory quota is 8 MiB.
  auto conn = connect("vm-limited");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(1 << 20, 3));
  std::vector<std::string> names;
  for (int i = 0; i < 16; ++i) names.push_back(fmt::format("copy{}", i));
  std::vector<guest::CheckpointItem> items;
  for (const std::string& n : names) items.push_back({n, &x, 0, x.size()});
  auto written = guest::save_checkpoint(*conn, *stream, "big", items, {});
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.error().code(), ErrorCode::kResourceExhausted);
  // (The guest gets the status; the message, with the limit, is in the
  // host's log, and tests/offload checks its wording.)
  EXPECT_FALSE(fs::exists(store_->path_of("vm-limited", "big")));
  EXPECT_EQ(host_memory_->used(), 0u) << "nothing stays charged after the refusal";
  // The session keeps working, and a checkpoint within the quota is saved.
  const guest::CheckpointItem one[] = {{"x", &x, 0, x.size()}};
  auto small = guest::save_checkpoint(*conn, *stream, "small", one, {});
  EXPECT_TRUE(small.ok()) << small.error().to_string();
  EXPECT_EQ(host_memory_->used(), 0u) << "the snapshot's bytes come back once it is written";
}

TEST_F(CheckpointServiceTest, TheCheckpointDiskQuotaCountsBytesAndCheckpoints) {
  auto conn = connect("vm-limited");
  ASSERT_TRUE(conn);
  auto stream = conn->create_stream();
  ASSERT_TRUE(stream.ok());
  guest::Buffer x = filled(*conn, *stream, pattern(2 << 20, 4));
  const guest::CheckpointItem items[] = {{"x", &x, 0, x.size()}};
  ASSERT_TRUE(guest::save_checkpoint(*conn, *stream, "run1", items, {}).ok());
  ASSERT_TRUE(guest::save_checkpoint(*conn, *stream, "run2", items, {}).ok());
  // A third checkpoint passes the count of two.
  auto third = guest::save_checkpoint(*conn, *stream, "run3", items, {});
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_FALSE(fs::exists(store_->path_of("vm-limited", "run3")));
  // Replacing one counts the new file instead of the old: allowed.
  EXPECT_TRUE(guest::save_checkpoint(*conn, *stream, "run1", items, {}).ok());
  // 2 + 2 MiB stored; replacing run2 with 4 MiB would pass 6 MiB on disk.
  guest::Buffer y = filled(*conn, *stream, pattern(4 << 20, 5));
  const guest::CheckpointItem big[] = {{"y", &y, 0, y.size()}};
  auto too_big = guest::save_checkpoint(*conn, *stream, "run2", big, {});
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kResourceExhausted);
  const offload::CheckpointUsage usage = store_->usage("vm-limited");
  EXPECT_EQ(usage.count, 2u);
  EXPECT_LT(usage.bytes, 6u << 20);
  EXPECT_EQ(host_memory_->used(), 0u);
}

}  // namespace
}  // namespace malv::testing
