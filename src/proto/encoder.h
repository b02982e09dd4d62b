// Builders for wire::Command records, used by clients (src/guest) and tests.
// Each returns a complete record with reserved fields zeroed; the caller sets
// the tag and flags it wants.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "malv/protocol.h"
#include "proto/request.h"

namespace malv::proto {

wire::Command make_command(wire::Opcode opcode, std::uint64_t tag,
                           std::initializer_list<std::uint64_t> args = {});

// A kLaunch command followed by its extension records (1 + ceil(argc*24/64)).
std::vector<wire::Command> make_launch(std::uint64_t tag, RawHandle stream, RawHandle kernel,
                                       std::span<const wire::KernelArg> args);

wire::KernelArg buffer_arg(RawHandle buffer, std::uint64_t offset = 0);
wire::KernelArg i64_arg(std::int64_t value);
wire::KernelArg f32_arg(float value);

// Number of extension records needed for argc kernel arguments.
constexpr std::uint8_t extension_records_for(std::size_t argc) {
  return static_cast<std::uint8_t>((argc * sizeof(wire::KernelArg) + wire::kRecordBytes - 1) /
                                   wire::kRecordBytes);
}

}  // namespace malv::proto
