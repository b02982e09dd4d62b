#include "cpu_control/thread_balancer.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>

#include "base/clock.h"
#include "base/log.h"
#include "malv/mlaas.h"

namespace malv::cpu_control {
namespace {

// Linux's default scheduler slice and cache_nice_tries of a core-level
// domain: what the estimates below and the kernel's rule use.
constexpr std::int64_t kSliceNs = 3'000'000;
constexpr std::uint32_t kCacheNiceTries = 1;
constexpr std::int64_t kMigrationCostNs = 500'000;

struct ThreadState {
  bool runnable = false;
  int cpu = -1;  // where it last ran
  std::int64_t since_ran_ns = -1;
};

// State and last CPU from /proc/<tid>/stat; false when it is gone.
bool read_stat(pid_t tid, ThreadState* out) {
  std::ifstream in(fmt::format("/proc/{}/stat", tid));
  std::string text;
  if (!std::getline(in, text)) return false;
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  std::vector<std::string> f;
  while (fields >> field) f.push_back(field);
  // f[0] is field 3 (state); field 39 (processor) is f[36].
  if (f.size() < 37) return false;
  out->runnable = f[0] == "R";
  out->cpu = std::atoi(f[36].c_str());
  return true;
}

// Time since the thread last started running, from the scheduler's
// se.exec_start (milliseconds of its clock); -1 when not shown.
std::int64_t read_since_ran(pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/sched", tid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("se.exec_start", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) return -1;
    const double ms = std::atof(line.c_str() + colon + 1);
    if (ms <= 0) return -1;
    return std::max<std::int64_t>(0, mono_now_ns() - static_cast<std::int64_t>(ms * 1e6));
  }
  return -1;
}

bool pin(pid_t tid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(tid, sizeof(set), &set) == 0;
}

void allow(pid_t tid, const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  (void)::sched_setaffinity(tid, sizeof(set), &set);  // a thread that exited is fine
}

// The kernel's rule (can_migrate_task() without NUMA): never a running
// thread; a cache-hot one only after cache_nice_tries failed attempts.
bool kernel_rule(const malv_cpu_migration& m) {
  if (m.running != 0) return false;
  const bool hot = m.since_ran_ns >= 0 && m.since_ran_ns < kMigrationCostNs;
  return !hot || m.nr_fails > m.cache_nice_tries;
}

}  // namespace

void ThreadBalancer::balance(const std::vector<BalancedVm>& vms) {
  ++stats_.passes;
  // Where each balanced thread is, and how loaded each core is.
  std::map<pid_t, ThreadState> states;
  std::map<int, std::uint32_t> load;
  std::map<pid_t, const BalancedVm*> owner;
  for (const BalancedVm& vm : vms) {
    for (int cpu : vm.cpus) load.try_emplace(cpu, 0);
    for (pid_t tid : vm.threads) {
      ThreadState s;
      if (!read_stat(tid, &s)) continue;
      owner[tid] = &vm;
      states[tid] = s;
    }
  }
  // Threads no longer there are forgotten; new ones are pinned where the
  // fewest balanced threads are.
  std::erase_if(placed_, [&](const auto& p) { return states.count(p.first) == 0; });
  std::map<int, std::uint32_t> pinned;
  for (const auto& [tid, p] : placed_) ++pinned[p.cpu];
  for (auto& [tid, s] : states) {
    const BalancedVm& vm = *owner[tid];
    if (vm.cpus.empty()) continue;
    auto it = placed_.find(tid);
    if (it != placed_.end() &&
        std::find(vm.cpus.begin(), vm.cpus.end(), it->second.cpu) != vm.cpus.end()) {
      continue;
    }
    const int cpu = *std::min_element(vm.cpus.begin(), vm.cpus.end(),
                                      [&](int a, int b) { return pinned[a] < pinned[b]; });
    if (!pin(tid, cpu)) continue;
    placed_[tid] = {vm.name, cpu};
    ++pinned[cpu];
    s.cpu = cpu;
  }
  for (const auto& [tid, s] : states) {
    auto it = placed_.find(tid);
    if (it != placed_.end() && s.runnable) ++load[it->second.cpu];
  }
  if (load.size() < 2) {
    last_load_ = load;
    return;
  }
  const auto busiest = std::max_element(
      load.begin(), load.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const auto idlest = std::min_element(
      load.begin(), load.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const std::uint32_t imbalance = busiest->second - idlest->second;
  if (imbalance < 2) {
    nr_fails_ = 0;
    last_load_ = load;
    return;
  }
  ++stats_.imbalanced_passes;
  const int src = busiest->first;
  const int dst = idlest->first;
  std::uint32_t idle_type = MALV_CPU_NOT_IDLE;
  if (idlest->second == 0) {
    idle_type = last_load_[dst] > 0 ? MALV_CPU_NEWLY_IDLE : MALV_CPU_IDLE;
  }
  // The candidates: runnable balanced threads on the busiest core, asked
  // per VM (each VM's own policy decides about its own threads).
  std::map<const BalancedVm*, std::vector<pid_t>> by_vm;
  for (const auto& [tid, s] : states) {
    auto it = placed_.find(tid);
    if (it != placed_.end() && it->second.cpu == src && s.runnable)
      by_vm[owner[tid]].push_back(tid);
  }
  std::uint32_t to_move = imbalance / 2;
  for (const auto& [vm, tids] : by_vm) {
    if (to_move == 0) break;
    // A VM may run only on its own cores.
    if (std::find(vm->cpus.begin(), vm->cpus.end(), dst) == vm->cpus.end()) continue;
    std::vector<malv_cpu_sched_observation> obs(tids.size());
    for (std::size_t i = 0; i < tids.size(); ++i) {
      malv_cpu_sched_observation& o = obs[i];
      o.kind = MALV_CPU_SCHED_MIGRATE;
      o.priority_class = vm->priority_class;
      o.vm_id = vm->vm_id;
      malv_cpu_migration& m = o.migration;
      m.thread_id = static_cast<std::uint64_t>(tids[i]);
      m.src_cpu = static_cast<std::uint32_t>(src);
      m.dst_cpu = static_cast<std::uint32_t>(dst);
      m.src_len = busiest->second;
      m.dst_len = idlest->second;
      m.idle_type = idle_type;
      m.since_ran_ns = read_since_ran(tids[i]);
      m.running = m.since_ran_ns >= 0 && m.since_ran_ns < kSliceNs ? 1 : 0;
      m.same_node = 1;
      m.nr_fails = nr_fails_;
      m.cache_nice_tries = kCacheNiceTries;
      m.imbalance = imbalance;
    }
    std::vector<malv_cpu_sched_decision> decisions(obs.size());
    runner_.decide(vm->name, std::span<const malv_cpu_sched_observation>(obs),
                   std::span(decisions));
    stats_.candidates += obs.size();
    for (std::size_t i = 0; i < obs.size() && to_move > 0; ++i) {
      bool move = decisions[i].migrate == MALV_CPU_MIGRATE_YES;
      if (decisions[i].migrate == MALV_CPU_MIGRATE_DEFAULT) {
        ++stats_.kernel_rule;
        move = kernel_rule(obs[i].migration);
      }
      if (!move || !pin(tids[i], dst)) continue;
      placed_[tids[i]].cpu = dst;
      ++stats_.migrations;
      --to_move;
    }
  }
  nr_fails_ = to_move == imbalance / 2 ? nr_fails_ + 1 : 0;
  last_load_ = load;
}

void ThreadBalancer::release(const std::string& vm, const std::vector<int>& cpus) {
  for (auto it = placed_.begin(); it != placed_.end();) {
    if (it->second.vm != vm) {
      ++it;
      continue;
    }
    if (!cpus.empty()) allow(it->first, cpus);
    it = placed_.erase(it);
  }
}

}  // namespace malv::cpu_control
