#include "cli/option_checks.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace malv::cli {

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

CLI::Validator finite_in(double low, double high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        // CLI11 converts the same text with strtold after this check.
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) {
          return fmt::format("'{}' is not a number", text);
        }
        if (!std::isfinite(value) || value < low || value > high) {
          return fmt::format("{} is out of range: a number from {} to {}", text, low, high);
        }
        return std::string();
      },
      fmt::format("NUMBER in [{} - {}]", low, high));
}

CLI::Validator whole_number_in(std::uint64_t low, std::uint64_t high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        Result<std::uint64_t> value = parse_whole_number(text, low, high);
        return value.ok() ? std::string() : value.error().message();
      },
      fmt::format("UINT in [{} - {}]", low, high));
}

CLI::Validator host_port(bool allow_port_zero) {
  return CLI::Validator(
      [allow_port_zero](std::string& text) -> std::string {
        Result<HostPort> parsed = parse_host_port(text, allow_port_zero);
        return parsed.ok() ? std::string() : parsed.error().message();
      },
      "HOST:PORT");
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

}  // namespace malv::cli
