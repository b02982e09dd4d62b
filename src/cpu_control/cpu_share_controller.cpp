#include "cpu_control/cpu_share_controller.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iterator>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_priority.h"
#include "base/vm_metrics.h"
#include "cpu_control/cpu_list.h"
#include "mlaas/baselines.h"

namespace malv::cpu_control {
namespace {

constexpr std::string_view kComponent = "cpu_control";

std::string none_policy() {
  return fmt::format("{}/{}", mlaas::kBuiltinModuleName,
                     mlaas::baseline_policy(mlaas::PolicyClass::kCpuSched).name);
}

std::int64_t non_negative(std::int64_t v) { return v < 0 ? 0 : v; }

}  // namespace

void CpuShareController::detach_process(pid_t pid) {
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    const pid_t tid = static_cast<pid_t>(std::atoll(task.path().filename().c_str()));
    if (tid > 0) (void)groups_->detach_thread(tid);
  }
}

namespace {}  // namespace

Result<std::unique_ptr<CpuShareController>> CpuShareController::start(
    mlaas::PolicyRegistry& registry, mlaas::PolicyRunner& runner, HostView host,
    CpuControlOptions options) {
  std::unique_ptr<CpuShareController> c(
      new CpuShareController(registry, runner, std::move(host), options));
  MALV_ASSIGN_OR_RETURN(c->groups_, CpuGroups::open(options.groups));
  if (!options.batch_worker_threads.empty()) c->batch_worker_cpus_ = c->worker_cores({});
  if (options.start_thread) c->thread_ = std::thread([raw = c.get()] { raw->loop(); });
  return c;
}

CpuShareController::CpuShareController(mlaas::PolicyRegistry& registry, mlaas::PolicyRunner& runner,
                                       HostView host, CpuControlOptions options)
    : registry_(registry),
      runner_(runner),
      host_(std::move(host)),
      options_(options),
      balancer_(runner) {}

CpuShareController::~CpuShareController() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [vm, state] : vms_) {
    if (state.managed) unmanage(vm, state);
  }
  if (groups_) place_batch_workers(worker_cores({}));  // every core again (of their home)
  groups_.reset();                                     // removes the host's own group
}

std::shared_ptr<void> CpuShareController::join(const std::string& vm, pid_t guest_pid,
                                               pid_t host_tid) {
  std::uint64_t token = 0;
  {
    std::lock_guard lock(mu_);
    token = next_token_++;
    VmState& state = vms_[vm];
    state.members[token] = {guest_pid, host_tid};
    if (state.managed) {
      // Already in its group: the newcomer joins it now, not an interval later.
      if (guest_pid > 0) (void)groups_->attach_process(vm, guest_pid);
      if (host_tid > 0) (void)groups_->attach_thread(vm, host_tid);
    }
  }
  wake();
  // The token is the membership: dropping it leaves.
  return std::shared_ptr<void>(nullptr, [this, vm, token](void*) { leave(vm, token); });
}

void CpuShareController::leave(const std::string& vm, std::uint64_t token) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm);
  if (it == vms_.end()) return;
  auto member = it->second.members.find(token);
  if (member == it->second.members.end()) return;
  // A host thread goes back to the host's group at once: it may serve
  // another VM next. A guest process that left is exiting or no longer
  // this VM's; the interval's clean-up takes it out with the group.
  if (it->second.managed && member->second.host_tid > 0) {
    (void)groups_->detach_thread(member->second.host_tid);
  }
  it->second.members.erase(member);
}

void CpuShareController::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  wake_cv_.notify_all();
}

void CpuShareController::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_cv_.wait_for(lock, options_.interval, [this] { return stopping_ || woken_; });
    if (stopping_) return;
    woken_ = false;
    lock.unlock();
    run_interval();
    lock.lock();
  }
}

void CpuShareController::run_interval() {
  std::lock_guard lock(mu_);
  const std::int64_t now = mono_now_ns();
  const std::string none = none_policy();
  // VMs whose config names a process are members without a session.
  for (const std::string& vm : host_.vm_names()) {
    std::optional<VmCpuFacts> facts = host_.facts(vm);
    if (facts && facts->config_pid > 0) vms_[vm];
  }
  for (auto it = vms_.begin(); it != vms_.end();) {
    const std::string& vm = it->first;
    VmState& state = it->second;
    state.status.vm = vm;
    state.status.members = static_cast<std::uint32_t>(state.members.size());
    const std::optional<VmCpuFacts> facts = host_.facts(vm);
    const pid_t config_pid = facts ? facts->config_pid : 0;
    if (state.managed && config_pid != state.config_pid) {
      // The admin changed the VM's process: the old one leaves its group.
      if (state.config_pid > 0) detach_process(state.config_pid);
      if (config_pid > 0) (void)groups_->attach_process(vm, config_pid);
    }
    state.config_pid = config_pid;
    if ((state.members.empty() && config_pid == 0) || !facts) {
      // Every member left (or the VM was deleted): nothing is left behind.
      if (state.managed) unmanage(vm, state);
      it = vms_.erase(it);
      continue;
    }
    state.status.policy = registry_.selected(vm, mlaas::PolicyClass::kCpuSched);
    if (state.status.policy == none) {
      if (state.managed) unmanage(vm, state);
    } else if (state.managed || manage(vm, state)) {
      decide_share(vm, state, now);
    }
    ++it;
  }
  place_all();
  balance_threads();
}

void CpuShareController::balance_threads() {
  std::vector<BalancedVm> balanced;
  for (auto& [vm, state] : vms_) {
    const bool wants = state.managed && state.placement == MALV_CPU_PLACE_BALANCED;
    if (state.balanced && !wants) {
      balancer_.release(vm, state.cpus.empty() ? groups_->cpus() : state.cpus);
    }
    state.balanced = wants;
    if (!wants) continue;
    BalancedVm b;
    b.name = vm;
    b.vm_id = state.last_facts.vm_id;
    b.priority_class = state.last_facts.priority_class;
    b.threads = groups_->threads(vm);
    b.cpus = state.cpus.empty() ? groups_->cpus() : state.cpus;
    balanced.push_back(std::move(b));
  }
  if (!balanced.empty()) balancer_.balance(balanced);
}

BalancerStats CpuShareController::balancer_stats() const {
  std::lock_guard lock(mu_);
  return balancer_.stats();
}

bool CpuShareController::manage(const std::string& vm, VmState& state) {
  if (Status s = groups_->add_vm(vm); !s.ok()) {
    log::warn(kComponent, "VM {}: no control group, its CPU share is left alone: {}", vm,
              s.error().to_string());
    return false;
  }
  if (state.config_pid > 0) {
    if (Status s = groups_->attach_process(vm, state.config_pid); !s.ok()) {
      log::warn(kComponent, "VM {}: its configured process {} not placed: {}", vm, state.config_pid,
                s.error().to_string());
    }
  }
  for (const auto& [token, member] : state.members) {
    if (member.guest_pid > 0) {
      if (Status s = groups_->attach_process(vm, member.guest_pid); !s.ok()) {
        log::warn(kComponent, "VM {}: guest process {} not placed: {}", vm, member.guest_pid,
                  s.error().to_string());
      }
    }
    if (member.host_tid > 0) {
      if (Status s = groups_->attach_thread(vm, member.host_tid); !s.ok()) {
        log::warn(kComponent, "VM {}: host thread {} not placed: {}", vm, member.host_tid,
                  s.error().to_string());
      }
    }
  }
  state.managed = true;
  state.weight = MALV_CPU_WEIGHT_DEFAULT;
  state.placement = MALV_CPU_PLACE_ANY;
  state.last_sample_ns = 0;  // the first interval only takes the baseline sample
  state.pending_outcome.reset();
  log::info(kComponent, "VM {}: CPU share now decided by {}", vm, state.status.policy);
  return true;
}

void CpuShareController::set_slices(const std::string& vm, VmState& state, bool quick) {
  if (!quick) {
    for (pid_t tid : state.short_slices) (void)set_thread_slice(tid, std::chrono::microseconds(0));
    state.short_slices.clear();
    return;
  }
  std::set<pid_t> now;
  for (pid_t tid : groups_->threads(vm)) {
    if (state.short_slices.count(tid) != 0 || set_thread_slice(tid, kShortSlice)) now.insert(tid);
  }
  state.short_slices = std::move(now);
}

void CpuShareController::unmanage(const std::string& vm, VmState& state) {
  set_slices(vm, state, false);
  if (state.balanced) {
    balancer_.release(vm, groups_->cpus());
    state.balanced = false;
  }
  if (Status s = groups_->remove_vm(vm); !s.ok()) {
    log::warn(kComponent, "VM {}: removing its control group: {}", vm, s.error().to_string());
  }
  state.managed = false;
  state.weight = 0;
  state.placement = MALV_CPU_PLACE_ANY;
  state.cpus.clear();
  state.pending_outcome.reset();
  state.status.managed = false;
  state.status.weight = 0;
  state.status.cpus.clear();
  state.status.threads = 0;
}

void CpuShareController::decide_share(const std::string& vm, VmState& state, std::int64_t now) {
  Result<CpuUsage> usage = groups_->usage(vm);
  std::optional<VmCpuFacts> facts = host_.facts(vm);
  if (!usage.ok() || !facts) return;
  const bool first = state.last_sample_ns == 0;
  malv_cpu_sched_observation o{};
  o.kind = MALV_CPU_SCHED_SHARE;
  o.priority_class = facts->priority_class;
  o.vm_id = facts->vm_id;
  o.vm_weight = facts->vm_weight;
  o.interval_ns = first ? 0 : now - state.last_sample_ns;
  o.cpu_time_ns = first ? 0 : non_negative(usage->cpu_time_ns - state.last_usage.cpu_time_ns);
  o.runqueue_delay_ns =
      first ? 0 : non_negative(usage->runqueue_delay_ns - state.last_usage.runqueue_delay_ns);
  o.accel_busy_ns = first ? 0 : non_negative(facts->accel_busy_ns - state.last_facts.accel_busy_ns);
  o.accel_starved_ns =
      first ? 0 : non_negative(facts->accel_starved_ns - state.last_facts.accel_starved_ns);
  o.pending_latency_requests = facts->pending_latency_requests;
  o.threads = usage->threads;
  o.host_cpus = static_cast<std::uint32_t>(groups_->cpus().size());
  o.current_weight = state.weight;
  state.last_sample_ns = now;
  state.last_usage = *usage;
  state.last_facts = *facts;

  // What the interval under the previous decision looked like.
  if (state.pending_outcome && !first) {
    malv_cpu_sched_outcome outcome = *state.pending_outcome;
    outcome.cpu_time_ns = o.cpu_time_ns;
    outcome.runqueue_delay_ns = o.runqueue_delay_ns;
    outcome.accel_starved_ns = o.accel_starved_ns;
    runner_.feedback(vm, mlaas::PolicyClass::kCpuSched, &outcome, 1);
  }

  malv_cpu_sched_decision d{};
  runner_.decide(vm, std::span(&o, 1), std::span(&d, 1));
  std::uint32_t weight = d.weight == 0 ? state.weight : d.weight;
  weight =
      std::clamp(weight, MALV_CPU_WEIGHT_MIN, std::max(MALV_CPU_WEIGHT_MIN, facts->weight_limit));
  if (weight != state.weight || state.status.decisions == 0) {
    if (Status s = groups_->set_weight(vm, weight); !s.ok()) {
      log::warn(kComponent, "VM {}: weight {} not applied: {}", vm, weight, s.error().to_string());
    } else {
      state.weight = weight;
    }
  }
  state.placement = d.placement;
  set_slices(
      vm, state,
      facts->priority_class == MALV_PRIORITY_LATENCY && state.weight > MALV_CPU_WEIGHT_DEFAULT);
  malv_cpu_sched_outcome next{};
  next.vm = o;
  next.applied = {state.weight, state.placement, 0, 0};
  state.pending_outcome = next;

  state.status.managed = true;
  state.status.weight = state.weight;
  state.status.placement = state.placement;
  state.status.threads = usage->threads;
  state.status.cpu_time_ns = o.cpu_time_ns;
  state.status.runqueue_delay_ns = o.runqueue_delay_ns;
  state.status.accel_starved_ns = o.accel_starved_ns;
  state.status.cpu_time_total_ns += o.cpu_time_ns;
  state.status.runqueue_delay_total_ns += o.runqueue_delay_ns;
  ++state.status.decisions;
}

void CpuShareController::place_all() {
  const std::vector<int> all = groups_->cpus();
  std::vector<int> shared = all;
  std::map<std::string, std::vector<int>, std::less<>> wanted;
  for (auto& [vm, state] : vms_) {
    if (!state.managed) continue;
    // One core each, from the top, while one is left for everyone else.
    if (state.placement == MALV_CPU_PLACE_DEDICATED && shared.size() > 1) {
      wanted[vm] = {shared.back()};
      shared.pop_back();
    }
  }
  place_batch_workers(worker_cores(shared));
  for (auto& [vm, state] : vms_) {
    if (!state.managed) continue;
    auto dedicated = wanted.find(vm);
    const std::vector<int>& cpus = dedicated != wanted.end() ? dedicated->second : shared;
    if (cpus == state.cpus) continue;
    if (Status s = groups_->set_cpus(vm, cpus); !s.ok()) {
      log::warn(kComponent, "VM {}: cores not applied: {}", vm, s.error().to_string());
      continue;
    }
    state.cpus = cpus;
    state.status.cpus = cpus;
  }
}

std::vector<int> CpuShareController::worker_cores(const std::vector<int>& shared) const {
  const std::vector<int>& home =
      options_.batch_worker_home.empty() ? groups_->cpus() : options_.batch_worker_home;
  if (shared.empty()) return home;
  std::vector<int> both;
  std::set_intersection(home.begin(), home.end(), shared.begin(), shared.end(),
                        std::back_inserter(both));
  // Every core of their home dedicated to VMs: the shared cores, rather
  // than none.
  return both.empty() ? shared : both;
}

void CpuShareController::place_batch_workers(const std::vector<int>& cpus) {
  if (options_.batch_worker_threads.empty() || cpus == batch_worker_cpus_) return;
  for (const pid_t tid : options_.batch_worker_threads) {
    if (Status s = set_thread_affinity(tid, cpus); !s.ok()) {
      log::warn(kComponent, "accelerator worker {}: cores not applied: {}", tid,
                s.error().to_string());
    }
  }
  log::info(kComponent, "the accelerator's batch workers run on cores {}", format_cpu_list(cpus));
  batch_worker_cpus_ = cpus;
}

std::vector<int> CpuShareController::batch_worker_cpus() const {
  std::lock_guard lock(mu_);
  return batch_worker_cpus_;
}

std::vector<VmCpuStatus> CpuShareController::status() const {
  std::lock_guard lock(mu_);
  std::vector<VmCpuStatus> out;
  for (const auto& [vm, state] : vms_) {
    VmCpuStatus s = state.status;
    s.vm = vm;
    s.members = static_cast<std::uint32_t>(state.members.size());
    if (s.policy.empty()) s.policy = registry_.selected(vm, mlaas::PolicyClass::kCpuSched);
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<VmCpuStatus> CpuShareController::status(std::string_view vm) const {
  for (VmCpuStatus& s : status()) {
    if (s.vm == vm) return std::move(s);
  }
  return std::nullopt;
}

std::string CpuShareController::metrics_text() const {
  const std::vector<VmCpuStatus> all = status();
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    append_vm_family(out, name, type, help, all, value);
  };
  family("malv_vm_cpu_managed", "gauge",
         "1 while the VM is in a control group (its cpu_sched policy is not builtin/none)",
         [](const VmCpuStatus& s) { return s.managed ? 1 : 0; });
  family("malv_vm_cpu_weight", "gauge", "The VM's CPU weight in force (100: the default share)",
         [](const VmCpuStatus& s) { return s.weight; });
  family("malv_vm_cpu_threads", "gauge", "Threads in the VM's control group",
         [](const VmCpuStatus& s) { return s.threads; });
  family("malv_vm_cpu_decisions_total", "counter", "CPU share decisions applied to the VM",
         [](const VmCpuStatus& s) { return s.decisions; });
  family("malv_vm_cpu_seconds_total", "counter", "CPU time of the VM's group while managed",
         [](const VmCpuStatus& s) { return static_cast<double>(s.cpu_time_total_ns) / 1e9; });
  family("malv_vm_cpu_runqueue_delay_seconds_total", "counter",
         "Time the VM's threads were runnable but waited for a CPU, while managed",
         [](const VmCpuStatus& s) { return static_cast<double>(s.runqueue_delay_total_ns) / 1e9; });
  if (!options_.batch_worker_threads.empty()) {
    out += fmt::format(
        "# HELP malv_cpu_batch_worker_cores Cores the accelerator's batch workers may run on "
        "(fewer than the host's while a core is dedicated to a latency VM)\n"
        "# TYPE malv_cpu_batch_worker_cores gauge\n"
        "malv_cpu_batch_worker_cores {}\n",
        batch_worker_cpus().size());
  }
  return out;
}

std::string CpuShareController::mechanism() const { return groups_->describe(); }

}  // namespace malv::cpu_control
