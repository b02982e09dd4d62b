/* MaLV-OS wire protocol: the fixed-layout records that cross a channel.
 *
 * This header is the protocol ABI shared by the host (src/proto,
 * src/microlake) and every client (src/guest). It is plain C-compatible
 * layout: fixed-width integers, no pointers, little-endian (the only byte
 * order MaLV-OS runs on). docs/protocol.md describes every message.
 *
 * A session begins with a HelloRequest/HelloReply exchange on a stream
 * socket. On a Unix socket the reply carries a memfd (SCM_RIGHTS) holding the
 * control block, the submission ring (Command records), the completion ring
 * (Completion records) and the data arena. On TCP and vsock there is no
 * shared memory: records and arena ranges travel inline as frames.
 *
 * Version rule: kProtocolVersion changes when any record's layout or meaning
 * changes; the host refuses a hello whose version it does not speak.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace malv::wire {

inline constexpr std::uint32_t kHelloMagic = 0x564C414Du;  // "MALV"
inline constexpr std::uint16_t kProtocolVersion = 1;
inline constexpr std::size_t kNameBytes = 64;
inline constexpr std::size_t kCredentialBytes = 64;
inline constexpr std::size_t kMessageBytes = 160;

enum class Transport : std::uint16_t { kShm = 1, kStream = 2 };

struct HelloRequest {
  std::uint32_t magic;                // kHelloMagic
  std::uint16_t version;              // kProtocolVersion
  std::uint16_t transport;            // Transport: kShm (Unix only) or kStream
  std::uint64_t arena_bytes;          // requested arena size; host may shrink it
  char vm_name[kNameBytes];           // NUL-terminated
  char credential[kCredentialBytes];  // NUL-terminated token
};
static_assert(sizeof(HelloRequest) == 144);

struct HelloReply {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t status;  // malv::ErrorCode; 0 = accepted
  std::uint64_t session_id;
  std::uint64_t shm_bytes;      // size of the memfd (0 for kStream)
  std::uint32_t sq_entries;     // power of two
  std::uint32_t cq_entries;     // power of two
  std::uint64_t arena_offset;   // offset of the arena in the memfd
  std::uint64_t arena_bytes;    // granted arena size
  char message[kMessageBytes];  // why a hello was refused, NUL-terminated
};
static_assert(sizeof(HelloReply) == 208);

/* Opcodes. Handles (u64) are capabilities issued by the host for this session. */
enum class Opcode : std::uint16_t {
  kNop = 0,            // completes with ok; round-trip probe
  kDeviceQuery = 1,    // a0=arena offset, a1=len (>= sizeof(DeviceInfoRecord)) -> writes record
  kBufferAlloc = 2,    // a0=bytes -> result=buffer handle
  kBufferFree = 3,     // a0=buffer
  kWrite = 4,          // a0=stream, a1=buffer, a2=buffer offset, a3=arena offset, a4=len (H2D)
  kRead = 5,           // a0=stream, a1=buffer, a2=buffer offset, a3=arena offset, a4=len (D2H)
  kCopy = 6,           // a0=stream, a1=src buf, a2=src off, a3=dst buf, a4=dst off, a5=len
  kMemset = 7,         // a0=stream, a1=buffer, a2=offset, a3=len, a4=byte value
  kStreamCreate = 8,   // a0=priority (0 normal, 1 high) -> result=stream handle
  kStreamDestroy = 9,  // a0=stream
  kStreamSync = 10,    // a0=stream -> status=first unreported error, result=its tag
  kSyncAll = 11,       // -> like kStreamSync over every stream of the session
  kEventCreate = 12,   // -> result=event handle
  kEventDestroy = 13,  // a0=event
  kEventRecord = 14,   // a0=stream, a1=event
  kEventWait = 15,     // a0=stream, a1=event (stream waits until the event has happened)
  kEventSync = 16,     // a0=event -> completes when the event has happened
  kEventElapsed = 17,  // a0=start event, a1=end event -> result=nanoseconds
  kKernelLookup = 18,  // a0=arena offset of name, a1=name len -> result=kernel handle,
                       //   result2=argument count
  kLaunch = 19,        // a0=stream, a1=kernel, a2=argc; args in extension records
  kPolicyList = 20,    // a0=arena offset, a1=len -> writes the policy table (text, see
                       //   docs/protocol.md); result=bytes written (or needed), result2=rows
  kPolicySelect = 21,  // a0=arena offset of "class=policy", a1=len (1..256) -> ok
  /* Offload services: the host's data pipeline and checkpoints. */
  kDatasetOpen = 22,        // a0=arena offset of a DatasetSpec, a1=len -> result=dataset handle,
                            //   result2=examples in the dataset, aux=features per example
  kDatasetNext = 23,        // a0=stream, a1=dataset, a2=features buffer, a3=labels buffer
                            //   (async: the next batch lands in them) -> result=batch index
  kDatasetClose = 24,       // a0=dataset
  kCheckpointSave = 25,     // a0=stream, a1=arena offset of a checkpoint spec, a2=len,
                            //   a3=CheckpointSpecLayout -> completes once the file is
                            //   durable; result=file bytes
  kCheckpointRestore = 26,  // a0=stream, a1=arena offset of a checkpoint spec, a2=len,
                            //   a3=CheckpointSpecLayout (stream-ordered)
                            //   -> result=metadata bytes written back
  /* PyTorch operators (the `malv` torch device; docs/torch.md). */
  kAtenIntern = 27,  // a0=arena offset of the operator's schema name ("aten::add.Tensor"),
                     //   a1=len (1..256) -> result=operator id (session-scoped)
  kAtenOp = 28,      // a0=stream, a1=operator id, a2=arena offset of the argument record
                     //   (malv/aten_record.h), a3=its bytes (whole 8-byte words), a4=bytes
                     //   at a2 the host may write back into (>= a3) -> completes when it
                     //   ran; the host writes back at a2 the non-tensor returns as a
                     //   record (success) or the error's message (failure, truncated to
                     //   a4); result=bytes written
  kAtenBatch = 29,   // a0=stream, a1=operators (1..kAtenMaxBatchOps), a2=arena offset of
                     //   the batch (malv/aten_record.h: per operator a header word, id
                     //   | record words << 32, then its record), a3=its bytes -> completes
                     //   when every operator ran, in order; the first that fails or is
                     //   refused ends the batch (those after it do not run) and the host
                     //   writes its name and message back at a2 (truncated to a3);
                     //   result=bytes written, result2=stream (as every stream op)
  kOpcodeCount = 30
};

/* Command flags (Command::flags). */
inline constexpr std::uint16_t kFlagSkipSuccess = 1u << 0;  // post a completion only on error

/* One submission record: 64 bytes, the unit of the submission ring. A
 * command may be followed by up to kMaxExtensionRecords extension records
 * (raw 64-byte blocks) that carry its variable part, e.g. kLaunch arguments. */
struct Command {
  std::uint16_t opcode;      // Opcode
  std::uint16_t flags;       // kFlag*
  std::uint8_t extensions;   // number of extension records that follow
  std::uint8_t reserved[3];  // must be zero
  std::uint64_t tag;         // chosen by the client, echoed in the completion
  std::uint64_t args[6];
};
static_assert(sizeof(Command) == 64);

inline constexpr std::size_t kRecordBytes = 64;
inline constexpr std::uint8_t kMaxExtensionRecords = 4;

/* Kernel argument as carried in kLaunch extension records (24 bytes each,
 * packed back to back; at most kMaxKernelArgs). */
enum class ArgKind : std::uint32_t { kBuffer = 1, kI64 = 2, kF32 = 3 };
struct KernelArg {
  std::uint32_t kind;      // ArgKind
  std::uint32_t reserved;  // must be zero
  std::uint64_t value;     // buffer handle, int64 bits, or float bits in the low 32
  std::uint64_t offset;    // byte offset into the buffer (kBuffer only; else zero)
};
static_assert(sizeof(KernelArg) == 24);
inline constexpr std::size_t kMaxKernelArgs =
    (kMaxExtensionRecords * kRecordBytes) / sizeof(KernelArg);  // 10

/* One completion record: 32 bytes, the unit of the completion ring. */
struct Completion {
  std::uint64_t tag;      // the command's tag
  std::uint16_t status;   // malv::ErrorCode
  std::uint16_t opcode;   // the command's opcode
  std::uint32_t aux;      // opcode-specific (e.g. detail code)
  std::uint64_t result;   // opcode-specific
  std::uint64_t result2;  // opcode-specific
};
static_assert(sizeof(Completion) == 32);

/* Written by kDeviceQuery into the arena. */
struct DeviceInfoRecord {
  char backend[16];  // "cpu" or "cuda"
  char name[96];
  std::uint64_t total_memory;
  std::uint64_t free_memory;
  std::uint32_t compute_units;
  std::uint32_t reserved;
};
static_assert(sizeof(DeviceInfoRecord) == 136);

/* kDatasetOpen's record. Paths name files under one of the host's data
 * directories (relative, no ".."); the host never opens anything else. */
enum class DatasetFormat : std::uint32_t {
  kFashionMnistTrain = 1,  // features = directory with the gzip IDX files
  kFashionMnistTest = 2,
  kRawU8 = 3,   // features = uint8 file (count x dims), labels = uint8 file (count)
  kRawF32 = 4,  // features = little-endian float32 file (count x dims), labels = uint8
};
struct DatasetSpec {
  std::uint32_t format;       // DatasetFormat
  std::uint32_t dims;         // features per example (raw formats; 0 for Fashion-MNIST)
  std::uint32_t classes;      // labels are in [0, classes) (raw formats; 0 for Fashion-MNIST)
  std::uint32_t batch;        // examples per batch, >= 1; an epoch is count / batch batches
  std::uint64_t seed;         // example order: the permutation of data::shuffled_indices
  std::uint64_t first_batch;  // position to start from (resuming a run)
  float mean;                 // uint8 inputs: x = (byte / 255 - mean) / stddev
  float stddev;
  std::uint32_t max_depth;  // cap on batches staged ahead (0: the host's default)
  std::uint32_t reserved;   // must be zero
  char features[128];       // NUL-terminated relative path
  char labels[128];         // NUL-terminated relative path (raw formats), else empty
};
static_assert(sizeof(DatasetSpec) == 304);

/* Checkpoint specs in the arena, in one of two layouts (the command's a3):
 *  - kFixedNames: a CheckpointHeader, `entries` CheckpointEntry records
 *    (names of at most 39 bytes in the record, at most 256 entries);
 *  - kNameTable: a CheckpointHeader, `entries` CheckpointEntryRef records
 *    (32 bytes), then every entry's name back to back (name_bytes each, no
 *    NUL), for state_dicts of real models: up to kMaxCheckpointEntriesNamed
 *    entries, names up to kMaxCheckpointEntryName bytes;
 * then (kCheckpointSave) `metadata_bytes` opaque bytes stored with the
 * checkpoint, or (kCheckpointRestore) room for them. */
enum class CheckpointSpecLayout : std::uint64_t { kFixedNames = 0, kNameTable = 1 };
struct CheckpointHeader {
  char name[64];          // file name in the VM's checkpoint directory, [A-Za-z0-9._-]
  std::uint32_t entries;  // 1..kMaxCheckpointEntries
  std::uint32_t metadata_bytes;
};
static_assert(sizeof(CheckpointHeader) == 72);
struct CheckpointEntry {
  std::uint64_t buffer;  // buffer handle (R for save, W for restore)
  std::uint64_t offset;  // byte offset in the buffer
  std::uint64_t bytes;   // bytes saved / restored
  char name[40];         // entry name, NUL-terminated, unique within the checkpoint
};
static_assert(sizeof(CheckpointEntry) == 64);
struct CheckpointEntryRef {
  std::uint64_t buffer;      // buffer handle (R for save, W for restore)
  std::uint64_t offset;      // byte offset in the buffer
  std::uint64_t bytes;       // bytes saved / restored
  std::uint32_t name_bytes;  // 1..kMaxCheckpointEntryName, in the name table
  std::uint32_t reserved;    // must be zero
};
static_assert(sizeof(CheckpointEntryRef) == 32);
inline constexpr std::uint32_t kMaxCheckpointEntries = 256;  // kFixedNames
inline constexpr std::uint32_t kMaxCheckpointEntriesNamed = 65536;
inline constexpr std::uint32_t kMaxCheckpointEntryName = 1024;  // bytes, kNameTable
inline constexpr std::uint32_t kMaxCheckpointMetadata = 64 * 1024;

/* Stream transports (TCP, vsock) carry frames: a FrameHeader then `bytes`
 * of body. Command frames carry a Command and its extension records; arena
 * frames carry a range of the arena (client->host before a command that
 * reads it, host->client before the completion of a command that wrote it). */
enum class FrameKind : std::uint32_t { kCommand = 1, kCompletion = 2, kArenaData = 3 };
struct FrameHeader {
  std::uint32_t kind;          // FrameKind
  std::uint32_t bytes;         // body length
  std::uint64_t arena_offset;  // kArenaData only
};
static_assert(sizeof(FrameHeader) == 16);
inline constexpr std::uint32_t kMaxFrameBytes = 16u << 20;

}  // namespace malv::wire
