// Parsing of the numbers and addresses a user types, the same whether they
// come from a flag or a config file: whole numbers in plain decimal (no
// sign, no leading zeros, no exponent), HOST:PORT and vsock's CID:PORT.
//
//   MALV_ASSIGN_OR_RETURN(std::uint64_t mib, parse_whole_number(text, 1, 4096));
//   MALV_ASSIGN_OR_RETURN(HostPort where, parse_host_port(text, /*allow_port_zero=*/true));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "malv/result.h"

namespace malv {

// A whole decimal number in [low, high]; the error says which of the rules
// the text broke.
[[nodiscard]] Result<std::uint64_t> parse_whole_number(std::string_view text, std::uint64_t low,
                                                       std::uint64_t high);

struct HostPort {
  std::string host;  // brackets of "[::1]" removed; empty: every address
  std::uint16_t port = 0;
};

// "HOST:PORT", the port in decimal, 1 to 65535 (0 too if allow_port_zero:
// a listener's "any free port"). kInvalidArgument naming the text otherwise.
[[nodiscard]] Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero);

struct VsockAddress {
  std::uint32_t cid = 0;
  std::uint32_t port = 0;
};

// "CID:PORT", both decimal: the CID 2 (the host) to 4294967294, the port 1
// to 4294967294. kInvalidArgument naming the text otherwise.
[[nodiscard]] Result<VsockAddress> parse_vsock_address(std::string_view text);

}  // namespace malv
