#include "cpu_control/cpu_groups.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "cpu_control/cgroup_backend.h"
#include "cpu_control/cgroup_layout.h"
#include "cpu_control/cpu_list.h"
#include "cpu_control/group_backend.h"
#include "cpu_control/proc_threads.h"
#include "cpu_control/thread_list_backend.h"
#include "cpu_control/thread_settings.h"

namespace malv::cpu_control {
namespace {

constexpr std::string_view kLog = "cpu_control";

Status check_name(std::string_view name, std::string_view what) {
  auto refuse = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} '{}' {}", what, name, why));
  };
  if (name.empty()) return Error(ErrorCode::kInvalidArgument, fmt::format("{} is empty", what));
  if (name.size() > CpuGroups::kMaxVmNameBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} '{}...' is {} bytes long, more than {}", what, name.substr(0, 16),
                             name.size(), CpuGroups::kMaxVmNameBytes));
  }
  if (name.find('/') != std::string_view::npos) return refuse("holds '/'");
  if (name == "." || name == "..") return refuse("names a directory of its own");
  if (name.front() == '.') return refuse("starts with '.'");
  for (const char c : name) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    if (!plain) {
      return refuse(fmt::format("holds byte 0x{:02x}; only [A-Za-z0-9._-] make a directory name",
                                static_cast<unsigned char>(c)));
    }
  }
  return ok_status();
}

Error unknown_vm(std::string_view vm) {
  return Error(ErrorCode::kNotFound, fmt::format("VM '{}' has no CPU group", vm));
}

}  // namespace

std::string_view mechanism_name(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::kCgroupV2: return "cgroup-v2";
    case Mechanism::kCgroupV1: return "cgroup-v1";
    case Mechanism::kThreadFallback: return "thread-fallback";
  }
  return "unknown";
}

Status CpuGroups::validate_vm_name(std::string_view vm) { return check_name(vm, "VM name"); }

CpuGroups::CpuGroups(std::unique_ptr<GroupBackend> backend, std::vector<int> host_cpus)
    : backend_(std::move(backend)),
      settings_(std::make_unique<ThreadSettings>()),
      host_cpus_(std::move(host_cpus)) {}

Result<std::unique_ptr<CpuGroups>> CpuGroups::open(const CpuGroupOptions& options) {
  const std::string group_name =
      options.group_name.empty() ? fmt::format("malv-{}", ::getpid()) : options.group_name;
  MALV_TRY(check_name(group_name, "host group name"));
  std::vector<int> host_cpus = options.cpus;
  if (host_cpus.empty()) {
    MALV_ASSIGN_OR_RETURN(host_cpus, thread_affinity(::getpid()));
  }
  const CgroupLayoutRequest request{.cgroup_root = options.cgroup_root, .group_name = group_name};

  std::vector<std::string> not_used;  // "cgroup-v2: why"
  auto try_mechanism = [&](Mechanism mechanism) -> Result<std::unique_ptr<GroupBackend>> {
    if (mechanism == Mechanism::kThreadFallback) {
      const std::string why =
          not_used.empty()
              ? std::string("forced by the caller; cgroups not tried")
              : fmt::format("no writable cpu controller: {}", fmt::join(not_used, "; "));
      return std::unique_ptr<GroupBackend>(std::make_unique<ThreadListBackend>(why));
    }
    MALV_ASSIGN_OR_RETURN(CgroupLayout layout, mechanism == Mechanism::kCgroupV2
                                                   ? open_cgroup_v2_layout(request)
                                                   : open_cgroup_v1_layout(request));
    return std::unique_ptr<GroupBackend>(std::make_unique<CgroupBackend>(std::move(layout)));
  };

  std::unique_ptr<GroupBackend> backend;
  if (options.force) {
    auto forced = try_mechanism(*options.force);
    if (!forced.ok()) {
      return Error(ErrorCode::kUnavailable,
                   fmt::format("{} was asked for and cannot be used: {}",
                               mechanism_name(*options.force), forced.error().to_string()));
    }
    backend = std::move(forced).value();
  } else {
    for (const Mechanism mechanism :
         {Mechanism::kCgroupV2, Mechanism::kCgroupV1, Mechanism::kThreadFallback}) {
      auto opened = try_mechanism(mechanism);
      if (opened.ok()) {
        backend = std::move(opened).value();
        break;
      }
      not_used.push_back(
          fmt::format("{}: {}", mechanism_name(mechanism), opened.error().to_string()));
    }
  }

  std::unique_ptr<CpuGroups> groups(new CpuGroups(std::move(backend), std::move(host_cpus)));
  groups->description_ = fmt::format("{}: {}", mechanism_name(groups->backend_->mechanism()),
                                     groups->backend_->describe());
  if (groups->backend_->mechanism() == Mechanism::kThreadFallback) {
    log::warn(kLog, "{}", groups->description_);
  } else {
    if (!not_used.empty()) {
      groups->description_ += fmt::format(" (not {})", fmt::join(not_used, "; "));
    }
    log::info(kLog, "{}", groups->description_);
  }
  return groups;
}

CpuGroups::~CpuGroups() {
  std::lock_guard lock(mutex_);
  while (!vms_.empty()) {
    const std::string vm = vms_.begin()->first;
    if (Status removed = remove_locked(vm); !removed.ok()) {
      log::warn(kLog, "{}", removed.error().to_string());
      settings_->restore_vm(vm, {});
      vms_.erase(vm);  // close() below tries once more
    }
  }
  backend_->close();
}

Mechanism CpuGroups::mechanism() const { return backend_->mechanism(); }

std::string CpuGroups::describe() const { return description_; }

std::vector<int> CpuGroups::cpus() const { return host_cpus_; }

std::vector<std::string> CpuGroups::vms() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [name, vm] : vms_) names.push_back(name);
  return names;
}

Result<CpuGroups::Vm*> CpuGroups::find_vm(std::string_view vm) {
  const auto it = vms_.find(vm);
  if (it == vms_.end()) return unknown_vm(vm);
  return &it->second;
}

Status CpuGroups::add_vm(std::string_view vm) {
  MALV_TRY(validate_vm_name(vm));
  std::lock_guard lock(mutex_);
  if (vms_.count(vm) != 0) {
    return Error(ErrorCode::kAlreadyExists, fmt::format("VM '{}' already has a CPU group", vm));
  }
  const std::string name(vm);
  MALV_TRY(backend_->add_vm(name, host_cpus_));
  vms_.emplace(name, Vm{});
  return ok_status();
}

Status CpuGroups::remove_vm(std::string_view vm) {
  MALV_TRY(validate_vm_name(vm));
  std::lock_guard lock(mutex_);
  if (vms_.count(vm) == 0) return unknown_vm(vm);
  return remove_locked(std::string(vm));
}

Status CpuGroups::remove_locked(const std::string& vm) {
  const std::vector<pid_t> tids = backend_->threads(vm);
  MALV_TRY(backend_->remove_vm(vm));
  settings_->restore_vm(vm, tids);
  vms_.erase(vm);
  return ok_status();
}

Status CpuGroups::attach_process(std::string_view vm, pid_t pid) {
  MALV_TRY(validate_vm_name(vm));
  if (pid <= 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} is not a process id", pid));
  }
  if (pid == ::getpid()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("process {} is the host itself: its threads join a VM one by one "
                             "(attach_thread), so the accelerator's workers stay out",
                             pid));
  }
  if (const auto process = process_of(pid); process && *process != pid) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} is a thread of process {}, not a process", pid, *process));
  }
  std::lock_guard lock(mutex_);
  MALV_ASSIGN_OR_RETURN(Vm * settings, find_vm(vm));
  const std::string name(vm);
  MALV_TRY(backend_->attach_process(name, pid));
  if (!backend_->controls_weight() || !backend_->controls_cpus()) {
    settings_->note_process(pid, name);
    MALV_TRY(apply_by_thread(name, *settings, process_threads(pid)));
  }
  return ok_status();
}

Status CpuGroups::attach_thread(std::string_view vm, pid_t tid) {
  MALV_TRY(validate_vm_name(vm));
  if (tid <= 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} is not a thread id", tid));
  }
  std::lock_guard lock(mutex_);
  MALV_ASSIGN_OR_RETURN(Vm * settings, find_vm(vm));
  const std::string name(vm);
  MALV_TRY(backend_->attach_thread(name, tid));
  if (!backend_->controls_weight() || !backend_->controls_cpus()) {
    MALV_TRY(apply_by_thread(name, *settings, {tid}));
  }
  return ok_status();
}

Status CpuGroups::detach_thread(pid_t tid) {
  std::lock_guard lock(mutex_);
  for (const auto& [name, vm] : vms_) {
    const std::vector<pid_t> tids = backend_->threads(name);
    if (!std::binary_search(tids.begin(), tids.end(), tid)) continue;
    MALV_TRY(backend_->detach_thread(name, tid));
    settings_->restore(tid);
    return ok_status();
  }
  return Error(ErrorCode::kNotFound, fmt::format("thread {} is in no VM's CPU group", tid));
}

Status CpuGroups::set_weight(std::string_view vm, std::uint32_t weight) {
  MALV_TRY(validate_vm_name(vm));
  if (weight < kMinWeight || weight > kMaxWeight) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("CPU weight {} is outside {}..{}", weight, kMinWeight, kMaxWeight));
  }
  std::lock_guard lock(mutex_);
  MALV_ASSIGN_OR_RETURN(Vm * settings, find_vm(vm));
  const std::string name(vm);
  if (backend_->controls_weight()) {
    MALV_TRY(backend_->set_weight(name, weight));
  } else {
    MALV_TRY(apply_nice(name, weight, backend_->threads(name)));
  }
  settings->weight = weight;
  return ok_status();
}

Status CpuGroups::set_cpus(std::string_view vm, const std::vector<int>& cpus) {
  MALV_TRY(validate_vm_name(vm));
  for (const int cpu : cpus) {
    if (!std::binary_search(host_cpus_.begin(), host_cpus_.end(), cpu)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("CPU {} is not one of the host's CPUs ({})", cpu,
                               format_cpu_list(host_cpus_)));
    }
  }
  std::vector<int> chosen = cpus.empty() ? host_cpus_ : cpus;
  std::sort(chosen.begin(), chosen.end());
  chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  std::lock_guard lock(mutex_);
  MALV_ASSIGN_OR_RETURN(Vm * settings, find_vm(vm));
  const std::string name(vm);
  if (backend_->controls_cpus()) {
    MALV_TRY(backend_->set_cpus(name, chosen));
  } else {
    MALV_TRY(apply_affinity(name, chosen, backend_->threads(name)));
  }
  settings->cpus = std::move(chosen);
  return ok_status();
}

Result<CpuUsage> CpuGroups::usage(std::string_view vm) const {
  std::lock_guard lock(mutex_);
  if (vms_.count(vm) == 0) return unknown_vm(vm);
  const std::string name(vm);
  MALV_ASSIGN_OR_RETURN(const std::optional<std::int64_t> group_time, backend_->cpu_time_ns(name));
  CpuUsage usage;
  std::int64_t thread_time = 0;
  const std::vector<pid_t> tids = backend_->threads(name);
  for (const pid_t tid : tids) {
    const auto stat = read_schedstat(tid);
    if (!stat) continue;  // exited since listed
    thread_time += stat->run_ns;
    usage.runqueue_delay_ns += stat->wait_ns;
    ++usage.threads;
  }
  usage.cpu_time_ns = group_time.value_or(thread_time);
  return usage;
}

std::vector<pid_t> CpuGroups::threads(std::string_view vm) const {
  std::lock_guard lock(mutex_);
  if (vms_.count(vm) == 0) return {};
  return backend_->threads(std::string(vm));
}

Status CpuGroups::apply_by_thread(const std::string& vm, const Vm& settings,
                                  const std::vector<pid_t>& tids) {
  for (const pid_t tid : tids) settings_->restore_if_elsewhere(tid, vm);
  if (!backend_->controls_weight() && settings.weight) {
    MALV_TRY(apply_nice(vm, *settings.weight, tids));
  }
  if (!backend_->controls_cpus() && settings.cpus) {
    MALV_TRY(apply_affinity(vm, *settings.cpus, tids));
  }
  return ok_status();
}

Status CpuGroups::apply_nice(const std::string& vm, std::uint32_t weight,
                             const std::vector<pid_t>& tids) {
  const int nice = weight_to_nice(weight);
  std::size_t denied = 0;
  for (const pid_t tid : tids) {
    Result<bool> set = settings_->set_nice(tid, vm, nice);
    if (set.ok()) continue;
    if (set.error().code() != ErrorCode::kPermissionDenied) return std::move(set).error();
    ++denied;
  }
  if (denied > 0) {
    log::warn(kLog,
              "VM '{}': {} of {} threads keep their nice value: nice {} (weight {}) needs "
              "CAP_SYS_NICE",
              vm, denied, tids.size(), nice, weight);
  }
  return ok_status();
}

Status CpuGroups::apply_affinity(const std::string& vm, const std::vector<int>& cpus,
                                 const std::vector<pid_t>& tids) {
  for (const pid_t tid : tids) {
    Result<bool> set = settings_->set_affinity(tid, vm, cpus);
    if (!set.ok()) return std::move(set).error().with_context(fmt::format("placing VM '{}'", vm));
  }
  return ok_status();
}

}  // namespace malv::cpu_control
