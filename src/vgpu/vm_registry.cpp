#include "vgpu/vm_registry.h"

#include <fmt/format.h>

#include <algorithm>

namespace malv::vgpu {
namespace {

// The limit virtual_memory() enforces: every allocation counts against it.
std::uint64_t effective_virtual_limit(const VmConfig& c) {
  if (c.memory_limit == 0) return 0;
  return std::max(c.memory_limit, c.virtual_memory_limit);
}

Status check_config(const VmConfig& c) {
  if (c.name.empty() || c.name.size() >= 64) {
    return Error(ErrorCode::kInvalidArgument, "VM name must have 1 to 63 characters");
  }
  if (c.token.size() >= 64) {
    return Error(ErrorCode::kInvalidArgument, "VM token must be shorter than 64 characters");
  }
  if (!(c.weight > 0.0) || c.weight > 1e6) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("weight {} is not in (0, 1e6]", c.weight));
  }
  if (c.max_streams == 0 || c.max_handles == 0) {
    return Error(ErrorCode::kInvalidArgument, "max_streams and max_handles must be positive");
  }
  if (c.vsock_cid == 2 || c.vsock_cid == 0xffffffffu) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("vsock CID {} is the host's or the wildcard, not a VM's", c.vsock_cid));
  }
  if (c.cpu_weight_limit < MALV_CPU_WEIGHT_MIN || c.cpu_weight_limit > MALV_CPU_WEIGHT_MAX) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("cpu_weight_limit {} is not in [{}, {}]", c.cpu_weight_limit,
                             MALV_CPU_WEIGHT_MIN, MALV_CPU_WEIGHT_MAX));
  }
  return ok_status();
}

// Another VM than `name` with the same nonzero vsock CID, if any.
Status check_cid_unique(const std::map<std::string, std::shared_ptr<Vm>>& vms, const VmConfig& c) {
  if (c.vsock_cid == 0) return ok_status();
  for (const auto& [name, vm] : vms) {
    if (name != c.name && vm->config().vsock_cid == c.vsock_cid) {
      return Error(ErrorCode::kAlreadyExists,
                   fmt::format("vsock CID {} already belongs to VM '{}'", c.vsock_cid, name));
    }
  }
  return ok_status();
}

}  // namespace

const char* priority_class_name(PriorityClass c) {
  return c == PriorityClass::kLatency ? "latency" : "batch";
}

Result<PriorityClass> parse_priority_class(std::string_view name) {
  if (name == "latency") return PriorityClass::kLatency;
  if (name == "batch") return PriorityClass::kBatch;
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("priority class '{}' is not 'latency' or 'batch'", name));
}

Vm::Vm(VmId id, VmConfig config)
    : id_(id),
      name_(config.name),
      priority_(config.priority),
      config_(std::move(config)),
      device_memory_(fmt::format("VM '{}' memory quota", name_), config_.memory_limit),
      virtual_memory_(fmt::format("VM '{}' virtual memory limit", name_),
                      effective_virtual_limit(config_)),
      host_memory_(std::make_shared<ByteQuota>(fmt::format("VM '{}' host memory", name_),
                                               config_.host_memory_limit)),
      memory_(name_, device_memory_) {}

bool Vm::oversubscribed() const {
  std::lock_guard lock(mutex_);
  return config_.memory_limit != 0 && config_.virtual_memory_limit > config_.memory_limit;
}

Status Vm::open_session_slot() {
  const std::uint32_t limit = config().max_sessions;
  std::uint32_t open = counters_.sessions.load(std::memory_order_relaxed);
  for (;;) {
    if (limit != 0 && open >= limit) {
      return Error(
          ErrorCode::kResourceExhausted,
          fmt::format("VM '{}' session limit: {} sessions open, limit {}", name_, open, limit));
    }
    if (counters_.sessions.compare_exchange_weak(open, open + 1, std::memory_order_acq_rel)) {
      return ok_status();
    }
  }
}

void Vm::close_session_slot() { counters_.sessions.fetch_sub(1, std::memory_order_acq_rel); }

VmConfig Vm::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

void Vm::set_config(VmConfig config) {
  std::lock_guard lock(mutex_);
  priority_.store(config.priority, std::memory_order_relaxed);
  device_memory_.set_limit(config.memory_limit);
  virtual_memory_.set_limit(effective_virtual_limit(config));
  host_memory_->set_limit(config.host_memory_limit);
  config_ = std::move(config);
}

Status VmRegistry::admit(const std::string& name, const VmConfig& config) const {
  std::uint64_t others = 0;
  for (const auto& [other, vm] : vms_) {
    if (other != name) others += vm->config().memory_limit;
  }
  const std::uint64_t capacity = ledger_ != nullptr ? ledger_->capacity() : 0;
  // What VMs without a quota hold cannot be taken back: it is not free.
  const std::uint64_t pool = ledger_ != nullptr ? ledger_->pool()->used() : 0;
  const std::uint64_t held = others + pool;
  if (capacity != 0 && config.memory_limit > 0 &&
      (held > capacity || config.memory_limit > capacity - held)) {
    return Error(
        ErrorCode::kResourceExhausted,
        fmt::format("VM '{}': a resident quota of {} bytes does not fit: the device has {} "
                    "bytes and the other VMs' quotas guarantee {} of them{} ({} left)",
                    config.name, config.memory_limit, capacity, others,
                    pool == 0 ? "" : fmt::format(", VMs without a quota hold {}", pool),
                    held < capacity ? capacity - held : 0));
  }
  return ok_status();
}

void VmRegistry::publish_guaranteed() {
  if (ledger_ == nullptr) return;
  std::uint64_t sum = 0;
  for (const auto& [name, vm] : vms_) sum += vm->config().memory_limit;
  ledger_->set_guaranteed(sum);
}

Result<std::shared_ptr<Vm>> VmRegistry::create(VmConfig config) {
  MALV_TRY(check_config(config));
  if (config_check_) MALV_TRY(config_check_(config));
  std::lock_guard lock(mutex_);
  if (vms_.count(config.name) != 0) {
    return Error(ErrorCode::kAlreadyExists, fmt::format("VM '{}' already exists", config.name));
  }
  MALV_TRY(check_cid_unique(vms_, config));
  MALV_TRY(admit(config.name, config));
  auto vm = std::make_shared<Vm>(VmId{next_id_++}, config);
  vms_.emplace(config.name, vm);
  publish_guaranteed();
  return vm;
}

Status VmRegistry::update(const std::string& name, const VmConfig& config) {
  MALV_TRY(check_config(config));
  if (config_check_) MALV_TRY(config_check_(config));
  if (config.name != name) {
    return Error(ErrorCode::kInvalidArgument, "a VM cannot be renamed");
  }
  MALV_ASSIGN_OR_RETURN(std::shared_ptr<Vm> vm, find(name));
  std::lock_guard lock(mutex_);
  MALV_TRY(check_cid_unique(vms_, config));
  MALV_TRY(admit(name, config));
  vm->set_config(config);
  publish_guaranteed();
  return ok_status();
}

Status VmRegistry::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (vms_.erase(name) == 0) {
    return Error(ErrorCode::kNotFound, fmt::format("no VM named '{}'", name));
  }
  publish_guaranteed();
  return ok_status();
}

Result<std::shared_ptr<Vm>> VmRegistry::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return Error(ErrorCode::kNotFound, fmt::format("no VM named '{}'", name));
  return it->second;
}

Result<std::shared_ptr<Vm>> VmRegistry::authenticate(const std::string& name,
                                                     const std::string& token) const {
  Result<std::shared_ptr<Vm>> vm = find(name);
  // The same answer for an unknown VM and a wrong token: no probing for names.
  if (!vm.ok() || vm.value()->config().token != token) {
    return Error(ErrorCode::kUnauthenticated,
                 fmt::format("VM '{}' is unknown or the token is wrong", name));
  }
  return vm;
}

Result<std::shared_ptr<Vm>> VmRegistry::authenticate_vsock(std::uint32_t cid) const {
  std::lock_guard lock(mutex_);
  if (cid != 0) {
    for (const auto& [name, vm] : vms_) {
      if (vm->config().vsock_cid == cid) return vm;
    }
  }
  return Error(ErrorCode::kUnauthenticated, fmt::format("no VM has vsock CID {}", cid));
}

std::vector<std::shared_ptr<Vm>> VmRegistry::list() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<Vm>> out;
  for (const auto& [name, vm] : vms_) out.push_back(vm);
  return out;
}

}  // namespace malv::vgpu
