#include "base/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>
#include <memory>
#include <mutex>

namespace malv::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> make_logger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("malv", sink);
  logger->set_pattern("%H:%M:%S.%e %^%L%$ %v");
  const char* env = std::getenv("MALV_LOG");
  logger->set_level(to_spdlog(env ? parse_level(env) : Level::kInfo));
  return logger;
}

}  // namespace

Level parse_level(std::string_view name, bool* ok) {
  if (ok) *ok = true;
  if (name == "trace") return Level::kTrace;
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  if (ok) *ok = false;
  return Level::kInfo;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = make_logger();
  return *instance;
}

void set_level(Level level) { logger().set_level(to_spdlog(level)); }

Level level() {
  switch (logger().level()) {
    case spdlog::level::trace: return Level::kTrace;
    case spdlog::level::debug: return Level::kDebug;
    case spdlog::level::info: return Level::kInfo;
    case spdlog::level::warn: return Level::kWarn;
    case spdlog::level::err:
    case spdlog::level::critical: return Level::kError;
    default: return Level::kOff;
  }
}

}  // namespace malv::log
