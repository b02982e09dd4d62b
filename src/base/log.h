// Logging for every MaLV-OS component, over spdlog.
//
// The level comes from the MALV_LOG environment variable (trace, debug, info,
// warn, error, off; default info) the first time a log call is made, or from
// log::set_level(). Output goes to stderr, one line per call, with the
// component name so a host log can be read per subsystem:
//
//   log::info("vgpu", "VM {} connected from pid {}", name, pid);
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace malv::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Parses a level name; unknown names give kInfo and *ok = false.
Level parse_level(std::string_view name, bool* ok = nullptr);
void set_level(Level level);
Level level();
// The logger, set up on first use from MALV_LOG.
spdlog::logger& logger();

template <typename... Args>
void trace(std::string_view component, fmt::format_string<Args...> format, Args&&... args) {
  if (logger().should_log(spdlog::level::trace))
    logger().trace("[{}] {}", component, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view component, fmt::format_string<Args...> format, Args&&... args) {
  if (logger().should_log(spdlog::level::debug))
    logger().debug("[{}] {}", component, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void info(std::string_view component, fmt::format_string<Args...> format, Args&&... args) {
  if (logger().should_log(spdlog::level::info))
    logger().info("[{}] {}", component, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(std::string_view component, fmt::format_string<Args...> format, Args&&... args) {
  if (logger().should_log(spdlog::level::warn))
    logger().warn("[{}] {}", component, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void error(std::string_view component, fmt::format_string<Args...> format, Args&&... args) {
  if (logger().should_log(spdlog::level::err))
    logger().error("[{}] {}", component, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace malv::log
