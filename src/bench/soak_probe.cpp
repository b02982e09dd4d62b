#include "bench/soak_probe.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace malv::bench {

using nlohmann::json;

// VmRSS of a process, in bytes (0 if it cannot be read).
std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

Result<MetricsSample> read_metrics(const harness::AdminClient& admin) {
  MALV_ASSIGN_OR_RETURN(std::string text, admin.get_text("/metrics"));
  MetricsSample sample;
  bool device_seen = false;
  std::istringstream lines(text);
  std::string line;
  const std::string vm_prefix = "malv_vm_memory_bytes{vm=\"";
  const std::string device_prefix = "malv_device_memory_bytes ";
  while (std::getline(lines, line)) {
    if (line.rfind(vm_prefix, 0) == 0) {
      const std::size_t end = line.find("\"}", vm_prefix.size());
      if (end == std::string::npos) continue;
      sample.vm_memory[line.substr(vm_prefix.size(), end - vm_prefix.size())] =
          static_cast<std::uint64_t>(std::strtod(line.c_str() + end + 2, nullptr));
    } else if (line.rfind(device_prefix, 0) == 0) {
      sample.device_memory = std::strtoull(line.c_str() + device_prefix.size(), nullptr, 10);
      device_seen = true;
    }
  }
  if (!device_seen) {
    return Error(ErrorCode::kFailedPrecondition,
                 "the host's /metrics has no malv_device_memory_bytes: it is older than the soak");
  }
  return sample;
}

Result<std::map<std::string, VmState>> read_vms(const harness::AdminClient& admin) {
  MALV_ASSIGN_OR_RETURN(json vms, admin.call("GET", "/vms"));
  std::map<std::string, VmState> out;
  for (const json& vm : vms) {
    const json& s = vm["stats"];
    out[vm.value("name", std::string())] = {
        .memory_used = s.value("memory_used", std::uint64_t{0}),
        .virtual_memory_used = s.value("virtual_memory_used", std::uint64_t{0}),
        .bytes_moved = s.value("/memory_manager/bytes_in"_json_pointer, std::uint64_t{0}) +
                       s.value("/memory_manager/bytes_out"_json_pointer, std::uint64_t{0}),
        .faults = s.value("/memory_manager/faults"_json_pointer, std::uint64_t{0}),
        .streams = s.value("streams", std::uint64_t{0}),
        .sessions = s.value("sessions", std::uint64_t{0}),
        .queue_depth = s.value("queue_depth", std::uint64_t{0})};
  }
  return out;
}

}  // namespace malv::bench
