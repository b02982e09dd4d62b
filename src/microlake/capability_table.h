// CapabilityTable: the objects one session can name, and the only way a
// guest's raw handle becomes a pointer on the host.
//
// A handle is a 64-bit capability: [type:4][session salt:12][generation:16]
// [slot:32]. Lookup checks, in order: the slot exists (else "forged"), the
// salt is this session's (else "belongs to another session"), the generation
// matches the slot's current object (else "freed"), the type is the one the
// command expects, and the slot's rights include the rights asked for. Every
// failure is a precise Error for that command only. Rights live in the table,
// not in the handle, so a guest cannot forge them.
//
//   CapabilityTable<BufferObject> buffers(ObjectType::kBuffer, salt);
//   RawHandle h = buffers.insert(std::move(obj), kRightsAll).value();
//   MALV_ASSIGN_OR_RETURN(BufferObject* buf, buffers.lookup(h, kRightWrite));
//
// Freed slots are reused with a bumped generation; a generation that would
// wrap retires the slot for good, so a stale handle can never match again.
// Not thread-safe: a session's tables are touched only by its dispatcher.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "malv/result.h"
#include "proto/request.h"

namespace malv::microlake {

using proto::RawHandle;

enum class ObjectType : std::uint8_t {
  kBuffer = 1,
  kStream = 2,
  kEvent = 3,
  kKernel = 4,
  kDataset = 5,
};
const char* object_type_name(ObjectType type);

using Rights = std::uint8_t;
inline constexpr Rights kRightRead = 1u << 0;     // read contents (D2H, kernel input)
inline constexpr Rights kRightWrite = 1u << 1;    // modify contents (H2D, memset, kernel output)
inline constexpr Rights kRightDestroy = 1u << 2;  // free / destroy the object
inline constexpr Rights kRightUse = 1u << 3;      // submit work to it (streams, kernels, events)
inline constexpr Rights kRightsAll = 0x0f;

struct HandleFields {
  ObjectType type;
  std::uint16_t salt;  // 12 bits
  std::uint16_t generation;
  std::uint32_t slot;
};
constexpr RawHandle encode_handle(HandleFields f) {
  return (RawHandle{static_cast<std::uint8_t>(f.type)} << 60) | (RawHandle{f.salt & 0xfffu} << 48) |
         (RawHandle{f.generation} << 32) | f.slot;
}
constexpr HandleFields decode_handle(RawHandle h) {
  return {static_cast<ObjectType>(h >> 60), static_cast<std::uint16_t>((h >> 48) & 0xfff),
          static_cast<std::uint16_t>((h >> 32) & 0xffff), static_cast<std::uint32_t>(h)};
}

template <typename Object>
class CapabilityTable {
 public:
  CapabilityTable(ObjectType type, std::uint16_t salt, std::uint32_t max_objects)
      : type_(type), salt_(salt & 0xfff), max_objects_(max_objects) {}

  std::size_t size() const { return live_; }

  [[nodiscard]] Result<RawHandle> insert(std::unique_ptr<Object> object, Rights rights) {
    if (live_ >= max_objects_) {
      return Error(
          ErrorCode::kResourceExhausted,
          fmt::format("session holds {} {} handles, the limit", live_, object_type_name(type_)));
    }
    std::uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slot& s = slots_[slot];
    s.object = std::move(object);
    s.rights = rights;
    ++live_;
    return encode_handle({type_, salt_, s.generation, slot});
  }

  [[nodiscard]] Result<Object*> lookup(RawHandle handle, Rights needed) const {
    MALV_ASSIGN_OR_RETURN(const Slot* s, find(handle));
    if ((s->rights & needed) != needed) {
      return Error(ErrorCode::kPermissionDenied,
                   fmt::format("{} handle {:#x} lacks the rights for this command",
                               object_type_name(type_), handle));
    }
    return s->object.get();
  }

  // Removes the object and returns it; the handle is stale from now on.
  [[nodiscard]] Result<std::unique_ptr<Object>> remove(RawHandle handle, Rights needed) {
    MALV_TRY(lookup(handle, needed));
    const std::uint32_t slot = decode_handle(handle).slot;
    Slot& s = slots_[slot];
    std::unique_ptr<Object> object = std::move(s.object);
    --live_;
    if (++s.generation != 0) free_slots_.push_back(slot);  // wrapped: retire the slot
    return object;
  }

  // Calls fn(Object&) for every live object.
  template <typename Fn>
  void for_each(Fn&& fn) {
    for (Slot& s : slots_) {
      if (s.object) fn(*s.object);
    }
  }

  // Removes every object (session teardown), returning them.
  std::vector<std::unique_ptr<Object>> take_all() {
    std::vector<std::unique_ptr<Object>> out;
    for (Slot& s : slots_) {
      if (s.object) out.push_back(std::move(s.object));
    }
    slots_.clear();
    free_slots_.clear();
    live_ = 0;
    return out;
  }

 private:
  struct Slot {
    std::unique_ptr<Object> object;
    std::uint16_t generation = 1;  // never 0, so a zero handle never matches
    Rights rights = 0;
  };

  Result<const Slot*> find(RawHandle handle) const {
    const HandleFields f = decode_handle(handle);
    if (handle == 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("null {} handle", object_type_name(type_)));
    }
    if (f.type != type_) {
      return Error(ErrorCode::kWrongHandleType,
                   fmt::format("handle {:#x} names a {}, expected a {}", handle,
                               object_type_name(f.type), object_type_name(type_)));
    }
    if (f.salt != salt_) {
      return Error(ErrorCode::kStaleHandle,
                   fmt::format("{} handle {:#x} belongs to another session",
                               object_type_name(type_), handle));
    }
    if (f.slot >= slots_.size()) {
      return Error(ErrorCode::kStaleHandle, fmt::format("{} handle {:#x} was never issued",
                                                        object_type_name(type_), handle));
    }
    const Slot& s = slots_[f.slot];
    if (!s.object || s.generation != f.generation) {
      return Error(ErrorCode::kStaleHandle,
                   fmt::format("{} handle {:#x} was freed", object_type_name(type_), handle));
    }
    return &s;
  }

  ObjectType type_;
  std::uint16_t salt_;
  std::uint32_t max_objects_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::size_t live_ = 0;
};

}  // namespace malv::microlake
