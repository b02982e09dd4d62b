#include "cli/option_checks.h"

#include <fmt/format.h>

#include <cmath>

namespace malv::cli {

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

}  // namespace malv::cli
