// Decoded requests: the typed form of a wire::Command after structural
// validation (known opcode, zero reserved fields, known flags, extension
// records consistent with the opcode, argument kinds valid).
//
// Decoding checks only what can be checked from the record alone. Whether a
// handle names a live object of the right type, and whether offsets and
// lengths fit that object, is checked by microlake against the session's
// capability table. Handles stay raw u64 here: proto/ is the only place where
// ids are plain integers.
#pragma once

#include <array>
#include <cstdint>
#include <variant>

#include "malv/protocol.h"

namespace malv::proto {

using RawHandle = std::uint64_t;

struct ArenaRange {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
};

struct NopRequest {};
struct DeviceQueryRequest {
  ArenaRange out;
};
struct BufferAllocRequest {
  std::uint64_t bytes = 0;
};
struct BufferFreeRequest {
  RawHandle buffer = 0;
};
struct WriteRequest {  // arena -> device buffer
  RawHandle stream = 0, buffer = 0;
  std::uint64_t buffer_offset = 0;
  ArenaRange src;
};
struct ReadRequest {  // device buffer -> arena
  RawHandle stream = 0, buffer = 0;
  std::uint64_t buffer_offset = 0;
  ArenaRange dst;
};
struct CopyRequest {
  RawHandle stream = 0, src = 0, dst = 0;
  std::uint64_t src_offset = 0, dst_offset = 0, bytes = 0;
};
struct MemsetRequest {
  RawHandle stream = 0, buffer = 0;
  std::uint64_t offset = 0, bytes = 0;
  std::uint8_t value = 0;
};
struct StreamCreateRequest {
  bool high_priority = false;
};
struct StreamDestroyRequest {
  RawHandle stream = 0;
};
struct StreamSyncRequest {
  RawHandle stream = 0;
};
struct SyncAllRequest {};
struct EventCreateRequest {};
struct EventDestroyRequest {
  RawHandle event = 0;
};
struct EventRecordRequest {
  RawHandle stream = 0, event = 0;
};
struct EventWaitRequest {
  RawHandle stream = 0, event = 0;
};
struct EventSyncRequest {
  RawHandle event = 0;
};
struct EventElapsedRequest {
  RawHandle start = 0, end = 0;
};
struct KernelLookupRequest {
  ArenaRange name;
};
struct LaunchRequest {
  RawHandle stream = 0, kernel = 0;
  std::uint32_t argc = 0;
  std::array<wire::KernelArg, wire::kMaxKernelArgs> args{};
};

struct PolicyListRequest {
  ArenaRange out;
};
struct PolicySelectRequest {
  ArenaRange text;  // "class=policy"
};

struct DatasetOpenRequest {
  ArenaRange spec;  // a wire::DatasetSpec
};
struct DatasetNextRequest {
  RawHandle stream = 0, dataset = 0, features = 0, labels = 0;
};
struct DatasetCloseRequest {
  RawHandle dataset = 0;
};
struct CheckpointSaveRequest {
  RawHandle stream = 0;
  ArenaRange spec;           // CheckpointHeader, entries, metadata
  std::uint64_t layout = 0;  // wire::CheckpointSpecLayout, checked by the service
};
struct CheckpointRestoreRequest {
  RawHandle stream = 0;
  ArenaRange spec;           // CheckpointHeader, entries, room for the metadata
  std::uint64_t layout = 0;  // wire::CheckpointSpecLayout, checked by the service
};

struct AtenInternRequest {
  ArenaRange name;  // "aten::add.Tensor"
};
struct AtenOpRequest {
  RawHandle stream = 0;
  std::uint64_t op = 0;           // kAtenIntern's id
  ArenaRange record;              // the argument record
  std::uint64_t reply_bytes = 0;  // bytes from record.offset the host may write back (>= record)
};

struct AtenBatchRequest {
  RawHandle stream = 0;
  std::uint64_t count = 0;  // operators in the batch
  ArenaRange batch;         // headers and records (malv/aten_record.h)
};

using Request =
    std::variant<NopRequest, DeviceQueryRequest, BufferAllocRequest, BufferFreeRequest,
                 WriteRequest, ReadRequest, CopyRequest, MemsetRequest, StreamCreateRequest,
                 StreamDestroyRequest, StreamSyncRequest, SyncAllRequest, EventCreateRequest,
                 EventDestroyRequest, EventRecordRequest, EventWaitRequest, EventSyncRequest,
                 EventElapsedRequest, KernelLookupRequest, LaunchRequest, PolicyListRequest,
                 PolicySelectRequest, DatasetOpenRequest, DatasetNextRequest, DatasetCloseRequest,
                 CheckpointSaveRequest, CheckpointRestoreRequest, AtenInternRequest, AtenOpRequest,
                 AtenBatchRequest>;

// Stable lowercase name of an opcode ("launch"), "unknown" otherwise.
const char* opcode_name(std::uint16_t opcode);

}  // namespace malv::proto
