#include "vgpu/access_trace.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "base/atomic_file.h"
#include "base/log.h"

namespace malv::vgpu {
namespace {

// Records gathered before one write(2): 64 KiB.
constexpr std::size_t kWriteBufferRecords = 1638;

void put_u32(std::byte* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}
void put_u64(std::byte* out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}
std::uint32_t get_u32(const std::byte* in) {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i)
    value |= std::uint32_t{std::to_integer<std::uint8_t>(in[i])} << (8 * i);
  return value;
}
std::uint64_t get_u64(const std::byte* in) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value |= std::uint64_t{std::to_integer<std::uint8_t>(in[i])} << (8 * i);
  return value;
}

void encode_header(std::byte* out) {
  std::memcpy(out, kAccessTraceMagic, sizeof kAccessTraceMagic);
  put_u32(out + 8, kAccessTraceVersion);
  put_u32(out + 12, static_cast<std::uint32_t>(kAccessTraceRecordBytes));
}

void encode_record(const AccessRecord& record, std::byte* out) {
  put_u64(out, record.op_index);
  put_u64(out + 8, record.buffer_id);
  put_u64(out + 16, record.bytes);
  put_u64(out + 24, static_cast<std::uint64_t>(record.time_ns));
  out[32] = static_cast<std::byte>(record.kind);
  std::memset(out + 33, 0, kAccessTraceRecordBytes - 33);
}

Error bad_record(std::string_view name, std::size_t index, std::string what) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("{}: record {}: {}", name, index, what));
}

}  // namespace

std::string_view access_kind_name(AccessKind kind) {
  switch (kind) {
    case AccessKind::kRead: return "read";
    case AccessKind::kWrite: return "write";
    case AccessKind::kAllocate: return "allocate";
    case AccessKind::kFree: return "free";
  }
  return "unknown";
}

AccessTraceWriter::AccessTraceWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {
  buffer_.reserve(kWriteBufferRecords * kAccessTraceRecordBytes);
}

Result<std::unique_ptr<AccessTraceWriter>> AccessTraceWriter::create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("open", errno).with_context("create access trace " + path);
  std::unique_ptr<AccessTraceWriter> writer(new AccessTraceWriter(path, fd));
  writer->buffer_.resize(kAccessTraceHeaderBytes);
  encode_header(writer->buffer_.data());
  MALV_TRY(writer->flush());
  return writer;
}

AccessTraceWriter::~AccessTraceWriter() {
  Status flushed = flush();
  if (!flushed.ok())
    log::error("vgpu", "access trace lost its tail: {}", flushed.error().to_string());
  ::close(fd_);
}

Status AccessTraceWriter::append(const AccessRecord& record) {
  if (failed_)
    return Error(ErrorCode::kIo, "an earlier write to access trace " + path_ + " failed");
  const std::size_t at = buffer_.size();
  buffer_.resize(at + kAccessTraceRecordBytes);
  encode_record(record, buffer_.data() + at);
  ++appended_;
  if (buffer_.size() >= kWriteBufferRecords * kAccessTraceRecordBytes) return flush();
  return ok_status();
}

Status AccessTraceWriter::flush() {
  if (failed_)
    return Error(ErrorCode::kIo, "an earlier write to access trace " + path_ + " failed");
  if (buffer_.empty()) return ok_status();
  Status written = write_all(fd_, buffer_, path_);
  buffer_.clear();
  if (!written.ok()) failed_ = true;
  return written;
}

std::vector<std::byte> encode_access_trace(std::span<const AccessRecord> trace) {
  std::vector<std::byte> bytes(kAccessTraceHeaderBytes + trace.size() * kAccessTraceRecordBytes);
  encode_header(bytes.data());
  for (std::size_t i = 0; i < trace.size(); ++i) {
    encode_record(trace[i], bytes.data() + kAccessTraceHeaderBytes + i * kAccessTraceRecordBytes);
  }
  return bytes;
}

Status validate_access_trace(std::span<const AccessRecord> trace, std::string_view name) {
  struct BufferState {
    std::uint64_t bytes = 0;
    std::size_t allocated_at = 0;
    std::optional<std::size_t> freed_at;
    std::optional<std::size_t> last_access;  // record number
  };
  std::unordered_map<std::uint64_t, BufferState> buffers;
  std::optional<std::uint64_t> group_op;  // op of the access records just before
  bool group_open = false;                // no allocate/free since them
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const AccessRecord& r = trace[i];
    if (i > 0 && r.op_index < trace[i - 1].op_index) {
      return bad_record(
          name, i,
          fmt::format("op_index goes backwards: {} after {}", r.op_index, trace[i - 1].op_index));
    }
    if (r.kind == AccessKind::kAllocate) {
      auto [it, inserted] = buffers.try_emplace(r.buffer_id, BufferState{r.bytes, i});
      if (!inserted) {
        return bad_record(name, i,
                          fmt::format("buffer {} is allocated again (first at record {}); buffer "
                                      "ids are never reused in a trace",
                                      r.buffer_id, it->second.allocated_at));
      }
      group_open = false;
      continue;
    }
    auto it = buffers.find(r.buffer_id);
    if (it == buffers.end()) {
      return bad_record(name, i,
                        fmt::format("{} of buffer {}, which was never allocated",
                                    access_kind_name(r.kind), r.buffer_id));
    }
    BufferState& b = it->second;
    if (b.freed_at) {
      return bad_record(name, i,
                        fmt::format("{} of buffer {}, which was freed at record {}",
                                    access_kind_name(r.kind), r.buffer_id, *b.freed_at));
    }
    if (r.bytes != b.bytes) {
      return bad_record(name, i,
                        fmt::format("buffer {} has {} bytes here but was allocated with {} at "
                                    "record {}",
                                    r.buffer_id, r.bytes, b.bytes, b.allocated_at));
    }
    if (r.kind == AccessKind::kFree) {
      b.freed_at = i;
      group_open = false;
      continue;
    }
    if (group_op == r.op_index && !group_open) {
      return bad_record(name, i,
                        fmt::format("the accesses of op {} are not consecutive: an allocate or "
                                    "free comes between them",
                                    r.op_index));
    }
    if (b.last_access && trace[*b.last_access].op_index == r.op_index) {
      return bad_record(name, i,
                        fmt::format("op {} names buffer {} twice (records {} and {}); an op "
                                    "has one record per buffer",
                                    r.op_index, r.buffer_id, *b.last_access, i));
    }
    b.last_access = i;
    group_op = r.op_index;
    group_open = true;
  }
  return ok_status();
}

Result<std::vector<AccessRecord>> read_access_trace(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, read_file(path));
  if (bytes.size() < kAccessTraceHeaderBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: not a MaLV access trace: {} bytes, shorter than the {}-byte "
                             "header",
                             path, bytes.size(), kAccessTraceHeaderBytes));
  }
  if (std::memcmp(bytes.data(), kAccessTraceMagic, sizeof kAccessTraceMagic) != 0) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: not a MaLV access trace: bad magic (expected \"MALVTRC\\0\")", path));
  }
  const std::uint32_t version = get_u32(bytes.data() + 8);
  if (version != kAccessTraceVersion) {
    return Error(ErrorCode::kUnimplemented,
                 fmt::format("{}: access trace version {} is not supported (this build reads {})",
                             path, version, kAccessTraceVersion));
  }
  const std::uint32_t record_bytes = get_u32(bytes.data() + 12);
  if (record_bytes != kAccessTraceRecordBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: record size {} in the header, expected {} for version {}", path,
                             record_bytes, kAccessTraceRecordBytes, kAccessTraceVersion));
  }
  const std::size_t body = bytes.size() - kAccessTraceHeaderBytes;
  const std::size_t count = body / kAccessTraceRecordBytes;
  if (body % kAccessTraceRecordBytes != 0) {
    return bad_record(path, count,
                      fmt::format("truncated: {} of {} bytes", body % kAccessTraceRecordBytes,
                                  kAccessTraceRecordBytes));
  }
  std::vector<AccessRecord> trace(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::byte* in = bytes.data() + kAccessTraceHeaderBytes + i * kAccessTraceRecordBytes;
    const auto kind = std::to_integer<std::uint8_t>(in[32]);
    if (kind > static_cast<std::uint8_t>(AccessKind::kFree)) {
      return bad_record(path, i, fmt::format("unknown kind {}", kind));
    }
    for (std::size_t k = 33; k < kAccessTraceRecordBytes; ++k) {
      if (in[k] != std::byte{0}) return bad_record(path, i, "reserved bytes are not zero");
    }
    trace[i] = AccessRecord{.op_index = get_u64(in),
                            .buffer_id = get_u64(in + 8),
                            .bytes = get_u64(in + 16),
                            .time_ns = static_cast<std::int64_t>(get_u64(in + 24)),
                            .kind = static_cast<AccessKind>(kind)};
  }
  MALV_TRY(validate_access_trace(trace, path));
  return trace;
}

}  // namespace malv::vgpu
