// Access traces: what one VM's ops touched, in dispatch order, as a file.
//
// The memory manager records, per VM, one AccessRecord per buffer an op
// touches when the op is dispatched (kWrite when the op writes the buffer,
// else kRead), plus one record when a buffer is allocated and one when it is
// freed. `malv memory replay` (vgpu/trace_replay.h) replays such a trace
// under each eviction policy and under Belady's offline optimum.
//
//   MALV_ASSIGN_OR_RETURN(auto writer, AccessTraceWriter::create(path));
//   MALV_TRY(writer->append({.op_index = 0, .buffer_id = 7, .bytes = 4096,
//                            .time_ns = now, .kind = AccessKind::kAllocate}));
//   ...
//   MALV_TRY(writer->flush());  // the destructor flushes too, but cannot report
//   MALV_ASSIGN_OR_RETURN(std::vector<AccessRecord> trace, read_access_trace(path));
//
// The contract a trace keeps (read_access_trace() and the replay refuse a
// trace that breaks it, naming the file and the record number):
//  - op_index never goes backwards from one record to the next.
//  - The access records (kRead, kWrite) of one op are consecutive, and name
//    each buffer at most once. An allocation or free between two ops carries
//    the index of the next op to be dispatched (the number of ops dispatched
//    so far), so it sorts between them.
//  - A buffer is accessed only between its kAllocate and its kFree, every
//    record of a buffer carries the size it was allocated with, and a
//    buffer_id is never reused within one trace (not even after its free).
//  - time_ns is informational (the replay does not use it) and is not checked.
//
// File format (version 1). Traces of training runs hold millions of
// records, written while the VM runs: a binary file of fixed-size records is
// appended to without parsing, cannot be torn inside a record without the
// reader seeing a short last record, and reads at memory speed (a record is
// found by arithmetic, never by scanning). Every integer is little-endian,
// whatever the host, so a trace moves between machines.
//
//   header, 16 bytes:  magic "MALVTRC\0" (8 bytes), u32 version = 1,
//                      u32 record size = 40
//   record, 40 bytes:  u64 op_index, u64 buffer_id, u64 bytes, i64 time_ns,
//                      u8 kind (0 read, 1 write, 2 allocate, 3 free),
//                      7 reserved bytes, zero
//
// There is no record count in the header: a writer appends until it stops.
// A trace cut short mid-record (a crash, a full disk) ends in a short record,
// which the reader refuses, naming it and its length.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::vgpu {

enum class AccessKind : std::uint8_t { kRead = 0, kWrite = 1, kAllocate = 2, kFree = 3 };

struct AccessRecord {
  std::uint64_t op_index = 0;   // the VM's op number, in dispatch order (0, 1, 2, ...)
  std::uint64_t buffer_id = 0;  // unique within the VM's trace
  std::uint64_t bytes = 0;      // the buffer's size
  std::int64_t time_ns = 0;     // monotonic time of the dispatch
  AccessKind kind = AccessKind::kRead;

  friend bool operator==(const AccessRecord&, const AccessRecord&) = default;
};

inline constexpr char kAccessTraceMagic[8] = {'M', 'A', 'L', 'V', 'T', 'R', 'C', '\0'};
inline constexpr std::uint32_t kAccessTraceVersion = 1;
inline constexpr std::size_t kAccessTraceHeaderBytes = 16;
inline constexpr std::size_t kAccessTraceRecordBytes = 40;

// "read", "write", "allocate", "free".
std::string_view access_kind_name(AccessKind kind);

// Writes one VM's trace. Thread-compatible: the caller serialises appends.
class AccessTraceWriter {
 public:
  // Creates (or truncates) the file and writes the header.
  [[nodiscard]] static Result<std::unique_ptr<AccessTraceWriter>> create(const std::string& path);

  AccessTraceWriter(const AccessTraceWriter&) = delete;
  AccessTraceWriter& operator=(const AccessTraceWriter&) = delete;
  // Flushes; an error then is logged, not reported (call flush() to see it).
  ~AccessTraceWriter();

  // Buffered: reaches the file when the buffer fills or on flush(). Fails
  // only when that write fails; after a failed write every call fails.
  [[nodiscard]] Status append(const AccessRecord& record);
  [[nodiscard]] Status flush();

  const std::string& path() const { return path_; }
  std::uint64_t records_appended() const { return appended_; }

 private:
  AccessTraceWriter(std::string path, int fd);

  std::string path_;
  int fd_ = -1;
  std::vector<std::byte> buffer_;
  std::uint64_t appended_ = 0;
  bool failed_ = false;
};

// Reads and validates a whole trace file (format and contract above).
[[nodiscard]] Result<std::vector<AccessRecord>> read_access_trace(const std::string& path);

// The contract above, for a trace built in memory; `name` ("trace.bin")
// opens every error message, which names the record by its 0-based number.
[[nodiscard]] Status validate_access_trace(std::span<const AccessRecord> trace,
                                           std::string_view name);

// The file's bytes for a trace (header and records), for tests and tools.
std::vector<std::byte> encode_access_trace(std::span<const AccessRecord> trace);

}  // namespace malv::vgpu
