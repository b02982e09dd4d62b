#include "proto/encoder.h"

#include <bit>
#include <cstring>

namespace malv::proto {

wire::Command make_command(wire::Opcode opcode, std::uint64_t tag,
                           std::initializer_list<std::uint64_t> args) {
  wire::Command cmd{};
  cmd.opcode = static_cast<std::uint16_t>(opcode);
  cmd.tag = tag;
  int i = 0;
  for (std::uint64_t value : args) {
    if (i == 6) break;
    cmd.args[i++] = value;
  }
  return cmd;
}

std::vector<wire::Command> make_launch(std::uint64_t tag, RawHandle stream, RawHandle kernel,
                                       std::span<const wire::KernelArg> args) {
  const std::uint8_t extensions = extension_records_for(args.size());
  std::vector<wire::Command> records(1 + extensions);
  std::memset(records.data(), 0, records.size() * sizeof(wire::Command));
  records[0] = make_command(wire::Opcode::kLaunch, tag, {stream, kernel, args.size()});
  records[0].extensions = extensions;
  if (!args.empty()) {
    std::memcpy(reinterpret_cast<std::byte*>(records.data() + 1), args.data(), args.size_bytes());
  }
  return records;
}

wire::KernelArg buffer_arg(RawHandle buffer, std::uint64_t offset) {
  return {static_cast<std::uint32_t>(wire::ArgKind::kBuffer), 0, buffer, offset};
}

wire::KernelArg i64_arg(std::int64_t value) {
  return {static_cast<std::uint32_t>(wire::ArgKind::kI64), 0, static_cast<std::uint64_t>(value), 0};
}

wire::KernelArg f32_arg(float value) {
  return {static_cast<std::uint32_t>(wire::ArgKind::kF32), 0, std::bit_cast<std::uint32_t>(value),
          0};
}

}  // namespace malv::proto
