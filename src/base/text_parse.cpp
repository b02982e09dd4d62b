#include "base/text_parse.h"

#include <fmt/format.h>

#include <charconv>

namespace malv {

Result<std::uint64_t> parse_whole_number(std::string_view text, std::uint64_t low,
                                         std::uint64_t high) {
  const bool digits_only =
      !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
  if (!digits_only || (text.size() > 1 && text[0] == '0')) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is not a whole number in decimal", text));
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < low || value > high) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} is out of range: {} to {}", text, low, high));
  }
  return value;
}

Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' is not HOST:PORT", text));
  }
  Result<std::uint64_t> port =
      parse_whole_number(text.substr(colon + 1), allow_port_zero ? 0 : 1, 65535);
  if (!port.ok()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is not HOST:PORT with a port from {} to 65535: {}", text,
                             allow_port_zero ? 0 : 1, port.error().message()));
  }
  HostPort out;
  out.host = std::string(text.substr(0, colon));
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  out.port = static_cast<std::uint16_t>(port.value());
  return out;
}

Result<VsockAddress> parse_vsock_address(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' is not CID:PORT", text));
  }
  Result<std::uint64_t> cid = parse_whole_number(text.substr(0, colon), 2, 0xfffffffeu);
  Result<std::uint64_t> port = parse_whole_number(text.substr(colon + 1), 1, 0xfffffffeu);
  if (!cid.ok() || !port.ok()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is not CID:PORT (CID 2 to 4294967294, the host being 2; port 1 "
                             "to 4294967294): {}",
                             text, (!cid.ok() ? cid : port).error().message()));
  }
  return VsockAddress{static_cast<std::uint32_t>(cid.value()),
                      static_cast<std::uint32_t>(port.value())};
}

}  // namespace malv
