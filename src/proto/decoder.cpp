#include "proto/decoder.h"

#include <fmt/format.h>

#include <cstring>

#include "malv/aten_record.h"

namespace malv::proto {
namespace {

Error malformed(const wire::Command& cmd, std::string message) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{} command: {}", opcode_name(cmd.opcode), message));
}

bool reserved_clear(const wire::Command& cmd) {
  return cmd.reserved[0] == 0 && cmd.reserved[1] == 0 && cmd.reserved[2] == 0;
}

// Arguments an opcode does not use must be zero, so that a future version
// can give them meaning without old hosts silently ignoring them.
Status unused_args_zero(const wire::Command& cmd, int used) {
  for (int i = used; i < 6; ++i) {
    if (cmd.args[i] != 0) return malformed(cmd, fmt::format("unused argument {} is not zero", i));
  }
  return ok_status();
}

Result<Request> decode_launch(const wire::Command& cmd, std::span<const std::byte> extensions) {
  LaunchRequest req;
  req.stream = cmd.args[0];
  req.kernel = cmd.args[1];
  if (cmd.args[2] > wire::kMaxKernelArgs) {
    return malformed(cmd,
                     fmt::format("{} arguments, at most {}", cmd.args[2], wire::kMaxKernelArgs));
  }
  req.argc = static_cast<std::uint32_t>(cmd.args[2]);
  if (std::size_t want =
          (req.argc * sizeof(wire::KernelArg) + wire::kRecordBytes - 1) / wire::kRecordBytes;
      cmd.extensions != want) {
    return malformed(cmd, fmt::format("{} arguments need {} extension records, command has {}",
                                      req.argc, want, cmd.extensions));
  }
  MALV_TRY(unused_args_zero(cmd, 3));
  for (std::uint32_t i = 0; i < req.argc; ++i) {
    wire::KernelArg& arg = req.args[i];
    std::memcpy(&arg, extensions.data() + i * sizeof(wire::KernelArg), sizeof(wire::KernelArg));
    auto kind = static_cast<wire::ArgKind>(arg.kind);
    if (kind != wire::ArgKind::kBuffer && kind != wire::ArgKind::kI64 &&
        kind != wire::ArgKind::kF32) {
      return malformed(cmd, fmt::format("argument {} has unknown kind {}", i, arg.kind));
    }
    if (arg.reserved != 0) return malformed(cmd, fmt::format("argument {} reserved field set", i));
    if (kind != wire::ArgKind::kBuffer && arg.offset != 0) {
      return malformed(cmd, fmt::format("argument {} is a scalar with an offset", i));
    }
    if (kind == wire::ArgKind::kF32 && (arg.value >> 32) != 0) {
      return malformed(cmd, fmt::format("argument {} f32 has high bits set", i));
    }
  }
  return Request(req);
}

}  // namespace

const char* opcode_name(std::uint16_t opcode) {
  switch (static_cast<wire::Opcode>(opcode)) {
    case wire::Opcode::kNop: return "nop";
    case wire::Opcode::kDeviceQuery: return "device_query";
    case wire::Opcode::kBufferAlloc: return "buffer_alloc";
    case wire::Opcode::kBufferFree: return "buffer_free";
    case wire::Opcode::kWrite: return "write";
    case wire::Opcode::kRead: return "read";
    case wire::Opcode::kCopy: return "copy";
    case wire::Opcode::kMemset: return "memset";
    case wire::Opcode::kStreamCreate: return "stream_create";
    case wire::Opcode::kStreamDestroy: return "stream_destroy";
    case wire::Opcode::kStreamSync: return "stream_sync";
    case wire::Opcode::kSyncAll: return "sync_all";
    case wire::Opcode::kEventCreate: return "event_create";
    case wire::Opcode::kEventDestroy: return "event_destroy";
    case wire::Opcode::kEventRecord: return "event_record";
    case wire::Opcode::kEventWait: return "event_wait";
    case wire::Opcode::kEventSync: return "event_sync";
    case wire::Opcode::kEventElapsed: return "event_elapsed";
    case wire::Opcode::kKernelLookup: return "kernel_lookup";
    case wire::Opcode::kLaunch: return "launch";
    case wire::Opcode::kPolicyList: return "policy_list";
    case wire::Opcode::kPolicySelect: return "policy_select";
    case wire::Opcode::kDatasetOpen: return "dataset_open";
    case wire::Opcode::kDatasetNext: return "dataset_next";
    case wire::Opcode::kDatasetClose: return "dataset_close";
    case wire::Opcode::kCheckpointSave: return "checkpoint_save";
    case wire::Opcode::kCheckpointRestore: return "checkpoint_restore";
    case wire::Opcode::kAtenIntern: return "aten_intern";
    case wire::Opcode::kAtenOp: return "aten_op";
    case wire::Opcode::kAtenBatch: return "aten_batch";
    case wire::Opcode::kOpcodeCount: break;
  }
  return "unknown";
}

Result<Request> decode_command(const wire::Command& cmd, std::span<const std::byte> extensions) {
  if (cmd.opcode >= static_cast<std::uint16_t>(wire::Opcode::kOpcodeCount)) {
    return Error(ErrorCode::kUnimplemented, fmt::format("unknown opcode {}", cmd.opcode));
  }
  if (!reserved_clear(cmd)) return malformed(cmd, "reserved bytes are not zero");
  if ((cmd.flags & ~wire::kFlagSkipSuccess) != 0) {
    return malformed(cmd, fmt::format("unknown flags {:#x}", cmd.flags));
  }
  if (cmd.extensions > wire::kMaxExtensionRecords) {
    return malformed(cmd, fmt::format("{} extension records, at most {}", cmd.extensions,
                                      wire::kMaxExtensionRecords));
  }
  if (extensions.size() != std::size_t{cmd.extensions} * wire::kRecordBytes) {
    return malformed(cmd, "extension bytes do not match the extension count");
  }
  const auto op = static_cast<wire::Opcode>(cmd.opcode);
  if (op != wire::Opcode::kLaunch && cmd.extensions != 0) {
    return malformed(cmd, "has extension records but takes none");
  }
  const auto& a = cmd.args;
  auto with = [&](int used, Request req) -> Result<Request> {
    MALV_TRY(unused_args_zero(cmd, used));
    return req;
  };
  switch (op) {
    case wire::Opcode::kNop: return with(0, NopRequest{});
    case wire::Opcode::kDeviceQuery: return with(2, DeviceQueryRequest{{a[0], a[1]}});
    case wire::Opcode::kBufferAlloc: return with(1, BufferAllocRequest{a[0]});
    case wire::Opcode::kBufferFree: return with(1, BufferFreeRequest{a[0]});
    case wire::Opcode::kWrite: return with(5, WriteRequest{a[0], a[1], a[2], {a[3], a[4]}});
    case wire::Opcode::kRead: return with(5, ReadRequest{a[0], a[1], a[2], {a[3], a[4]}});
    case wire::Opcode::kCopy: return with(6, CopyRequest{a[0], a[1], a[3], a[2], a[4], a[5]});
    case wire::Opcode::kMemset:
      if (a[4] > 0xff) return malformed(cmd, fmt::format("fill value {} is not a byte", a[4]));
      return with(5, MemsetRequest{a[0], a[1], a[2], a[3], static_cast<std::uint8_t>(a[4])});
    case wire::Opcode::kStreamCreate:
      if (a[0] > 1) return malformed(cmd, fmt::format("priority {} is not 0 or 1", a[0]));
      return with(1, StreamCreateRequest{a[0] == 1});
    case wire::Opcode::kStreamDestroy: return with(1, StreamDestroyRequest{a[0]});
    case wire::Opcode::kStreamSync: return with(1, StreamSyncRequest{a[0]});
    case wire::Opcode::kSyncAll: return with(0, SyncAllRequest{});
    case wire::Opcode::kEventCreate: return with(0, EventCreateRequest{});
    case wire::Opcode::kEventDestroy: return with(1, EventDestroyRequest{a[0]});
    case wire::Opcode::kEventRecord: return with(2, EventRecordRequest{a[0], a[1]});
    case wire::Opcode::kEventWait: return with(2, EventWaitRequest{a[0], a[1]});
    case wire::Opcode::kEventSync: return with(1, EventSyncRequest{a[0]});
    case wire::Opcode::kEventElapsed: return with(2, EventElapsedRequest{a[0], a[1]});
    case wire::Opcode::kKernelLookup: return with(2, KernelLookupRequest{{a[0], a[1]}});
    case wire::Opcode::kLaunch: return decode_launch(cmd, extensions);
    case wire::Opcode::kPolicyList: return with(2, PolicyListRequest{{a[0], a[1]}});
    case wire::Opcode::kPolicySelect: return with(2, PolicySelectRequest{{a[0], a[1]}});
    case wire::Opcode::kDatasetOpen: return with(2, DatasetOpenRequest{{a[0], a[1]}});
    case wire::Opcode::kDatasetNext: return with(4, DatasetNextRequest{a[0], a[1], a[2], a[3]});
    case wire::Opcode::kDatasetClose: return with(1, DatasetCloseRequest{a[0]});
    case wire::Opcode::kCheckpointSave:
      return with(4, CheckpointSaveRequest{a[0], {a[1], a[2]}, a[3]});
    case wire::Opcode::kCheckpointRestore:
      return with(4, CheckpointRestoreRequest{a[0], {a[1], a[2]}, a[3]});
    case wire::Opcode::kAtenIntern: return with(2, AtenInternRequest{{a[0], a[1]}});
    case wire::Opcode::kAtenOp:
      if (a[3] % 8 != 0) {
        return malformed(cmd,
                         fmt::format("an argument record of {} bytes (whole 8-byte words)", a[3]));
      }
      if (a[4] < a[3]) {
        return malformed(cmd, fmt::format("a reply room of {} bytes, smaller than the {}-byte "
                                          "record it starts with",
                                          a[4], a[3]));
      }
      return with(5, AtenOpRequest{a[0], a[1], {a[2], a[3]}, a[4]});
    case wire::Opcode::kAtenBatch:
      if (a[1] == 0 || a[1] > wire::kAtenMaxBatchOps) {
        return malformed(
            cmd, fmt::format("a batch of {} operators (1 to {})", a[1], wire::kAtenMaxBatchOps));
      }
      if (a[3] % 8 != 0 || a[3] < 8 * a[1] || a[3] > wire::kAtenMaxBatchBytes) {
        return malformed(cmd, fmt::format("a batch of {} bytes for {} operators (whole 8-byte "
                                          "words, a header word each, at most {})",
                                          a[3], a[1], wire::kAtenMaxBatchBytes));
      }
      return with(4, AtenBatchRequest{a[0], a[1], {a[2], a[3]}});
    case wire::Opcode::kOpcodeCount: break;
  }
  return Error(ErrorCode::kUnimplemented, fmt::format("unknown opcode {}", cmd.opcode));
}

}  // namespace malv::proto
