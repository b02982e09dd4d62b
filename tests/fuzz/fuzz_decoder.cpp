// libFuzzer target: the host's handling of whatever a guest puts in its
// submission ring, from the structural decoder down to the backend.
//
// The input is a sequence of 64-byte records, read the way ShmEndpoint reads
// the submission ring: a wire::Command, then as many extension records as it
// claims (a claim over kMaxExtensionRecords takes none, as the endpoint
// does). A trailing partial record is ignored, and so is a command whose
// extension records are cut off (the endpoint would wait for them). Each
// record is
//   (a) decoded on its own with proto::decode_command, with the extension
//       bytes it claims (clipped to the input), and the decoder's promises
//       checked: a Request only for a well-formed record, of the opcode's
//       type;
//   (b) fed to a real microlake::Session over the CPU backend, created fresh
//       for every input, exactly as the endpoint feeds it: stream ops are
//       staged (Session::Flush::kLater) and flushed when the input ends,
//       as when the ring runs dry.
//
// Services. The session has the MLaaS policy registry (the built-in
// baselines: kPolicyList, kPolicySelect parse guest strings), a dataset
// catalog over an empty data directory (kDatasetOpen's path checks: absolute
// paths, "..", symlinks out, missing files) and a checkpoint store in a
// directory of this process (under /dev/shm when there is one, so that the
// writer's fsyncs cost nothing; removed at exit, and by scripts/fuzz.sh after
// a crash). The store is bounded so
// that fuzzing cannot fill the disk: one checkpoint (and one session's
// snapshots waiting to be written) is at most kCheckpointCap bytes, and after
// every input that sent a save the VM's directory is emptied. Every input
// starts with two checkpoints in it: "seed" (entries "a", 4096 bytes, and
// "b", 64 bytes, and 16 bytes of metadata) and "damaged" (the same file cut
// in half), so restores reach the file's checks and the copies back.
// A kCheckpointRestore after a save first lets the backend drain and the
// input's saves become durable (a guest must wait for a save before it
// restores it: docs/protocol.md), so an input can save and restore; the end
// of an input waits the same way before its checks (a save completes on the
// writer's thread after the backend went idle).
// A checkpoint spec names buffers inside the arena: the harness patches its
// entries' pool selectors (below) when the command is fed, as for arguments.
//
// Strings and specs. Commands that read a string or a spec from the arena
// (kernel names, "class=policy", a DatasetSpec, a checkpoint spec) can name
// the input itself: the harness copies the input into the arena at
// kInputMirror (32 KiB), so record k's 64 bytes are at kInputMirror + 64 * k
// (they are also fed as a command, which is harmless: what a guest writes in
// its arena is not checked either).
//
// Reaching deep states. Before the fuzzer's records, each session gets two
// streams, two zeroed buffers, two events and a kernel handle for every
// built-in kernel, made by well-formed commands; the arena holds the name of
// built-in kernel i at offset 64 * i. A handle position whose top 16 bits are
// 0xffff (a command argument, or the value of a kernel argument) is replaced
// by handle number (low byte % count) of this session's pool: the handles
// above in that order, then every handle a fuzzed create command returned
// (freed ones stay in the pool, so stale handles are reached too). A raw
// value with a 0xffff top is never a valid handle, so nothing is lost.
//
// Aliasing and races. The backend has two workers, so the two streams of
// the pool really run at once: an input can launch a kernel on one stream
// over a buffer that the other stream writes (memset, write, copy, another
// kernel), and a kernel may name one buffer for several arguments (a
// softmax_xent whose labels are its own probs output, say). Such inputs are
// nondeterministic by nature; the sanitizers see what goes wrong either way.
//
// Invariants checked after every input (a violation aborts, which libFuzzer
// reports as a crash):
//  * every command gets exactly one completion, of its own opcode, except
//    one that carried kFlagSkipSuccess and succeeded, which gets none;
//  * nothing is owed once the backend is idle (Session::outstanding() == 0);
//  * a failed kStreamSync / kSyncAll names in `result` the tag of a command
//    that failed with the same status;
//  * an arena range a completion hands back lies inside the arena;
//  * the session leaves no device memory behind when it is destroyed.
//
// Run it with scripts/fuzz.sh; seeds live in tests/fuzz/corpus/ (made by
// tests/fuzz/make_corpus.py, which documents the record layout it uses).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "accel/backend.h"
#include "accel/kernel_registry.h"
#include "base/log.h"
#include "malv/protocol.h"
#include "microlake/completion_sink.h"
#include "microlake/session.h"
#include "microlake/session_services.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_registry.h"
#include "offload/checkpoint_file.h"
#include "offload/checkpoint_store.h"
#include "offload/dataset_catalog.h"
#include "proto/decoder.h"
#include "proto/encoder.h"

namespace malv::fuzz {
namespace {

using wire::Opcode;

constexpr std::size_t kArenaBytes = 64u << 10;
constexpr std::size_t kInputMirror = 32u << 10;
constexpr std::uint64_t kDeviceMemoryBytes = 16ull << 20;
constexpr std::uint64_t kPoolMarker = 0xffffull << 48;
constexpr std::size_t kMaxPool = 64;
// Sizes of the two pre-created buffers (pool entries 2 and 3).
constexpr std::uint64_t kSetupBufferBytes[] = {4096, 64u << 10};
// The cap on one checkpoint and on a session's snapshots in flight.
constexpr std::uint64_t kCheckpointCap = 256u << 10;

[[noreturn]] void violated(const char* what, std::uint64_t tag) {
  std::fprintf(stderr, "fuzz_decoder: invariant violated: %s (command tag %llu)\n", what,
               static_cast<unsigned long long>(tag));
  std::abort();
}

// Collects one input's completions (posted from the dispatcher, i.e. this
// thread, and from backend threads) and keeps the pool of handles that the
// session issued, in the order it issued them.
class RecordingSink final : public microlake::CompletionSink {
 public:
  void post(const wire::Completion& completion, proto::ArenaRange arena_out) override {
    if (!proto::range_fits(arena_out.offset, arena_out.bytes, kArenaBytes)) {
      violated("completion hands back an arena range outside the arena", completion.tag);
    }
    std::lock_guard lock(mutex_);
    completions_.push_back(completion);
    if (completion.status == 0 && creates_handle(completion.opcode) && pool_.size() < kMaxPool) {
      pool_.push_back(completion.result);
    }
  }

  // The handle a pool selector names; the selector itself when the pool is empty.
  std::uint64_t pooled(std::uint64_t selector) {
    std::lock_guard lock(mutex_);
    if (pool_.empty()) return selector;
    return pool_[(selector & 0xff) % pool_.size()];
  }

  std::vector<wire::Completion> take() {
    std::vector<wire::Completion> taken;
    std::lock_guard lock(mutex_);
    taken.swap(completions_);
    return taken;
  }

 private:
  static bool creates_handle(std::uint16_t opcode) {
    switch (static_cast<Opcode>(opcode)) {
      case Opcode::kBufferAlloc:
      case Opcode::kStreamCreate:
      case Opcode::kEventCreate:
      case Opcode::kKernelLookup: return true;
      default: return false;
    }
  }

  std::mutex mutex_;
  std::vector<wire::Completion> completions_;  // guarded by mutex_
  std::vector<std::uint64_t> pool_;            // guarded by mutex_
};

// The backend outlives every input: building one starts worker threads.
accel::Backend& backend() {
  static std::unique_ptr<accel::Backend> instance = [] {
    log::set_level(log::Level::kError);
    return accel::make_cpu_backend({.memory_bytes = kDeviceMemoryBytes, .workers = 2});
  }();
  return *instance;
}

constexpr const char* kVmName = "fuzz";

// The checkpoint store and the files every input starts with (see above).
class CheckpointFixture {
 public:
  CheckpointFixture() {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm")
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    root_ = base / ("malv-fuzz-checkpoints-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    store_ = std::move(offload::CheckpointStore::open(
                           {.root = root_.string(), .max_checkpoint_bytes = kCheckpointCap}))
                 .value();
    offload::CheckpointContents contents;
    contents.entries.push_back({"a", std::vector<std::byte>(4096, std::byte{0x3f})});
    contents.entries.push_back({"b", std::vector<std::byte>(64, std::byte{0x01})});
    contents.metadata.assign(16, std::byte{'m'});
    seed_ = offload::encode_checkpoint(contents).value();
    damaged_.assign(seed_.begin(), seed_.begin() + static_cast<std::ptrdiff_t>(seed_.size() / 2));
    // The VM's directory, made by the store as a save would make it.
    (void)store_->save(kVmName, "seed", contents).value();
    // Removed at exit (the path outlives this object's destructor).
    removed_at_exit() = new std::filesystem::path(root_);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*removed_at_exit(), ignored);
    });
    reset();
  }

  static CheckpointFixture& instance() {
    static CheckpointFixture fixture;
    return fixture;
  }

  offload::CheckpointStore* store() { return store_.get(); }

  // Empties the VM's directory and puts the two starting files back.
  void reset() {
    const std::filesystem::path dir = root_ / kVmName;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      std::filesystem::remove_all(entry.path());
    }
    write(dir / "seed", seed_);
    write(dir / "damaged", damaged_);
  }

 private:
  static std::filesystem::path*& removed_at_exit() {
    static std::filesystem::path* path = nullptr;
    return path;
  }

  static void write(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

  std::filesystem::path root_;
  std::unique_ptr<offload::CheckpointStore> store_;
  std::vector<std::byte> seed_;
  std::vector<std::byte> damaged_;
};

// The services outlive every input, like the backend. Each input starts
// with the VM on the baseline policies, so that no input depends on what
// an earlier one selected.
microlake::SessionServices fuzz_services() {
  static mlaas::FeatureRegistry features;
  static mlaas::HostServices host_services(features, nullptr);
  static mlaas::PolicyRegistry policies(host_services.table());
  for (mlaas::PolicyClass cls : mlaas::kAllPolicyClasses) policies.select_baseline(kVmName, cls);
  static offload::DatasetCatalog datasets([] {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / "malv-fuzz-empty-data-dir";
    std::filesystem::create_directories(dir);
    return offload::CatalogOptions{.data_dirs = {dir.string()}};
  }());
  return {.policies = &policies,
          .datasets = &datasets,
          .checkpoints = CheckpointFixture::instance().store()};
}

microlake::SessionLimits fuzz_limits() {
  microlake::SessionLimits limits;
  limits.max_buffers = 32;  // 32 x 1 MiB > device memory: both refusals are reachable
  limits.max_streams = 8;
  limits.max_events = 32;
  limits.max_kernels = 64;
  limits.max_buffer_bytes = 1u << 20;
  return limits;
}

// What the harness sent, by tag (tags are the harness's own sequence numbers).
struct Sent {
  std::uint16_t opcode;
  std::uint16_t flags;
};

class Harness {
 public:
  Harness() : arena_(kArenaBytes) {
    const auto kernels = accel::all_kernels();
    for (std::size_t i = 0; i < kernels.size(); ++i) {
      std::memcpy(arena_.data() + 64 * i, kernels[i].name.data(), kernels[i].name.size());
    }
    session_ = std::make_unique<microlake::Session>(kVmName, backend(), std::span(arena_), sink_,
                                                    fuzz_limits(), fuzz_services());
  }

  // Copies (the start of) the input into the arena, where commands can name it.
  void mirror(const std::uint8_t* data, std::size_t size) {
    std::memcpy(arena_.data() + kInputMirror, data, std::min(size, kArenaBytes - kInputMirror));
  }

  // Pre-creates the objects of the pool, in the documented order.
  void set_up() {
    setup(proto::make_command(Opcode::kStreamCreate, 0, {0}));
    setup(proto::make_command(Opcode::kStreamCreate, 0, {1}));
    for (std::uint64_t bytes : kSetupBufferBytes) {
      setup(proto::make_command(Opcode::kBufferAlloc, 0, {bytes}));
    }
    setup(proto::make_command(Opcode::kEventCreate, 0));
    setup(proto::make_command(Opcode::kEventCreate, 0));
    const auto kernels = accel::all_kernels();
    for (std::size_t i = 0; i < kernels.size(); ++i) {
      setup(proto::make_command(Opcode::kKernelLookup, 0, {64 * i, kernels[i].name.size()}));
    }
    // Zero both buffers so kernels read defined data (labels, for one).
    const std::uint64_t stream = sink_.pooled(0);
    for (std::size_t i = 0; i < std::size(kSetupBufferBytes); ++i) {
      setup(proto::make_command(Opcode::kMemset, 0,
                                {stream, sink_.pooled(2 + i), 0, kSetupBufferBytes[i], 0}));
    }
    setup(proto::make_command(Opcode::kStreamSync, 0, {stream}));
    backend().synchronize_all();
    for (const wire::Completion& c : sink_.take()) {
      if (c.status != 0) violated("a well-formed set-up command failed", c.tag);
    }
    sent_.clear();
  }

  void feed(const std::uint8_t* data, std::size_t size) {
    std::array<std::byte, wire::kMaxExtensionRecords * wire::kRecordBytes> extensions{};
    const std::size_t records = size / wire::kRecordBytes;
    std::size_t at = 0;
    while (at < records) {
      wire::Command cmd;
      std::memcpy(&cmd, data + at * wire::kRecordBytes, sizeof(cmd));
      const std::size_t claimed = cmd.extensions;
      check_decoder(
          cmd, std::span(reinterpret_cast<const std::byte*>(data) + (at + 1) * wire::kRecordBytes,
                         std::min(claimed, records - at - 1) * wire::kRecordBytes));
      // As ShmEndpoint::run: a claim over the limit takes no records, and a
      // command waits until all of its records are there.
      const std::size_t taken = claimed <= wire::kMaxExtensionRecords ? claimed : 0;
      if (records - at - 1 < taken) break;
      std::memcpy(extensions.data(), data + (at + 1) * wire::kRecordBytes,
                  taken * wire::kRecordBytes);
      at += 1 + taken;

      for (std::uint64_t& arg : cmd.args) arg = patched(arg);
      if (cmd.opcode == static_cast<std::uint16_t>(Opcode::kCheckpointSave) ||
          cmd.opcode == static_cast<std::uint16_t>(Opcode::kCheckpointRestore)) {
        patch_checkpoint_spec(cmd.args[1], cmd.args[2]);
      }
      if (cmd.opcode == static_cast<std::uint16_t>(Opcode::kCheckpointRestore)) {
        wait_for_saves();
      }
      for (std::size_t i = 0; i < wire::kMaxKernelArgs; ++i) {
        std::byte* value =
            extensions.data() + i * sizeof(wire::KernelArg) + offsetof(wire::KernelArg, value);
        std::uint64_t v;
        std::memcpy(&v, value, sizeof(v));
        v = patched(v);
        std::memcpy(value, &v, sizeof(v));
      }
      send(cmd, std::span(extensions.data(), taken * wire::kRecordBytes),
           microlake::Session::Flush::kLater);
    }
  }

  // Waits for the backend, then checks every invariant of the header.
  void finish() {
    // A save completes on the checkpoint writer's thread once its file is
    // durable, after the backend has gone idle: wait for those first.
    wait_for_saves();
    session_->flush();
    backend().synchronize_all();
    if (session_->outstanding() != 0) violated("completions still owed on an idle backend", 0);
    session_.reset();  // joins the checkpoint writer: every save is on disk
    if (backend().memory_in_use() != 0) violated("session left device memory behind", 0);
    if (saved_) CheckpointFixture::instance().reset();

    std::unordered_map<std::uint64_t, const wire::Completion*> by_tag;
    const std::vector<wire::Completion> completions = sink_.take();
    if (std::getenv("MALV_FUZZ_TRACE") != nullptr) trace(completions);
    for (const wire::Completion& c : completions) {
      auto sent = sent_.find(c.tag);
      if (sent == sent_.end()) violated("completion for a tag never sent", c.tag);
      if (!by_tag.emplace(c.tag, &c).second) violated("two completions for one command", c.tag);
      if (c.opcode != sent->second.opcode) violated("completion names another opcode", c.tag);
      if (c.status == 0 && (sent->second.flags & wire::kFlagSkipSuccess) != 0) {
        violated("a success was posted for a kFlagSkipSuccess command", c.tag);
      }
    }
    for (const auto& [tag, sent] : sent_) {
      if (!by_tag.contains(tag) && (sent.flags & wire::kFlagSkipSuccess) == 0) {
        violated("command never completed", tag);
      }
    }
    for (const wire::Completion& c : completions) {
      const auto op = static_cast<Opcode>(c.opcode);
      if (op != Opcode::kStreamSync && op != Opcode::kSyncAll) continue;
      if (c.status == 0) {
        if (c.result != 0) violated("a clean synchronize names a failed command", c.tag);
        continue;
      }
      // A synchronize that itself failed validation names nothing (tag 0,
      // which the harness never uses).
      if (c.result == 0) continue;
      auto failed = by_tag.find(c.result);
      if (failed == by_tag.end() || failed->second->status != c.status) {
        violated("a failed synchronize does not name the command that failed", c.tag);
      }
    }
  }

 private:
  std::uint64_t patched(std::uint64_t value) {
    return (value & (0xffffull << 48)) == kPoolMarker ? sink_.pooled(value) : value;
  }

  // The entries of a checkpoint spec at arena [offset, +bytes): pool
  // selectors in their buffer fields become handles, as in arguments.
  void patch_checkpoint_spec(std::uint64_t offset, std::uint64_t bytes) {
    if (!proto::range_fits(offset, bytes, kArenaBytes)) return;
    const std::uint64_t end = offset + bytes;
    for (std::uint64_t at = offset + sizeof(wire::CheckpointHeader);
         at + sizeof(wire::CheckpointEntry) <= end; at += sizeof(wire::CheckpointEntry)) {
      std::byte* field = arena_.data() + at + offsetof(wire::CheckpointEntry, buffer);
      std::uint64_t v;
      std::memcpy(&v, field, sizeof(v));
      v = patched(v);
      std::memcpy(field, &v, sizeof(v));
    }
  }

  // Until every save sent so far has completed (durable or failed): the
  // backend drains, then the writer thread finishes its files. Gives up
  // after 5 s (finish() then reports what is still owed).
  void wait_for_saves() {
    if (!save_pending_) return;
    save_pending_ = false;
    session_->flush();
    backend().synchronize_all();
    for (int waited_ms = 0; session_->outstanding() != 0 && waited_ms < 5000; ++waited_ms) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void send(wire::Command cmd, std::span<const std::byte> extensions,
            microlake::Session::Flush flush = microlake::Session::Flush::kNow) {
    cmd.tag = ++next_tag_;
    if (cmd.opcode == static_cast<std::uint16_t>(Opcode::kCheckpointSave)) {
      save_pending_ = true;
      saved_ = true;
    }
    sent_.emplace(cmd.tag, Sent{cmd.opcode, cmd.flags});
    session_->handle(cmd, extensions, flush);
  }

  void setup(const wire::Command& cmd) { send(cmd, {}); }

  // MALV_FUZZ_TRACE=1: what each command of the input got, for reading a
  // crash or checking that a seed does what it should.
  void trace(const std::vector<wire::Completion>& completions) const {
    for (const wire::Completion& c : completions) {
      std::fprintf(stderr, "  #%llu %-14s %-20s result=%#llx result2=%#llx\n",
                   static_cast<unsigned long long>(c.tag), proto::opcode_name(c.opcode),
                   std::string(error_code_name(static_cast<ErrorCode>(c.status))).c_str(),
                   static_cast<unsigned long long>(c.result),
                   static_cast<unsigned long long>(c.result2));
    }
  }

  // The decoder on its own: a Request only for a structurally valid record.
  static void check_decoder(const wire::Command& cmd, std::span<const std::byte> extensions) {
    Result<proto::Request> request = proto::decode_command(cmd, extensions);
    if (!request.ok()) return;
    if (cmd.opcode >= static_cast<std::uint16_t>(Opcode::kOpcodeCount) ||
        request->index() != cmd.opcode) {
      violated("decoder returned a request of another opcode", cmd.tag);
    }
    if (cmd.reserved[0] != 0 || cmd.reserved[1] != 0 || cmd.reserved[2] != 0 ||
        (cmd.flags & ~wire::kFlagSkipSuccess) != 0 || cmd.extensions > wire::kMaxExtensionRecords ||
        extensions.size() != std::size_t{cmd.extensions} * wire::kRecordBytes) {
      violated("decoder accepted a malformed record", cmd.tag);
    }
    if (const auto* launch = std::get_if<proto::LaunchRequest>(&*request)) {
      if (launch->argc > wire::kMaxKernelArgs ||
          cmd.extensions != proto::extension_records_for(launch->argc)) {
        violated("decoder accepted a launch with inconsistent arguments", cmd.tag);
      }
    } else if (cmd.extensions != 0) {
      violated("decoder accepted extension records on a command that takes none", cmd.tag);
    }
  }

  std::vector<std::byte> arena_;
  RecordingSink sink_;
  std::unique_ptr<microlake::Session> session_;  // after sink_ and arena_: destroyed first
  std::unordered_map<std::uint64_t, Sent> sent_;
  std::uint64_t next_tag_ = 0;
  bool save_pending_ = false;  // a save was sent since the last wait_for_saves()
  bool saved_ = false;         // a save was sent: the store needs a reset
};

}  // namespace
}  // namespace malv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  malv::fuzz::Harness harness;
  harness.mirror(data, size);
  harness.set_up();
  harness.feed(data, size);
  harness.finish();
  return 0;
}
