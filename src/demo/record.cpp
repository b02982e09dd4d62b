#include "demo/record.h"

#include "harness/report.h"

namespace malv::demo {

std::string short_policy_name(const std::string& qualified) {
  const auto slash = qualified.rfind('/');
  return slash == std::string::npos ? qualified : qualified.substr(slash + 1);
}

namespace {

// The last tick at or before t (the first tick if none is).
const Tick* tick_at(const std::vector<Tick>& ticks, double t) {
  const Tick* found = ticks.empty() ? nullptr : &ticks.front();
  for (const Tick& tick : ticks) {
    if (tick.t <= t + 1e-9) found = &tick;
  }
  return found;
}

}  // namespace

std::vector<PhaseSummary> DemoRecord::phases() const {
  std::vector<PhaseSummary> out;
  if (ticks.empty()) return out;
  std::vector<std::pair<double, std::string>> bounds{
      {0.0, initial_host_policy.empty() ? short_policy_name(initial_policy) : initial_host_policy}};
  for (const PolicySwitch& s : switches) {
    if (!s.host_policy.empty()) {
      bounds.emplace_back(s.t, s.host_policy);
      continue;
    }
    std::string label;
    for (const auto& [vm, policy] : s.policies) {
      const std::string name = short_policy_name(policy);
      if (label.find(name) == std::string::npos) label += (label.empty() ? "" : "+") + name;
    }
    bounds.emplace_back(s.t, label);
  }
  for (std::size_t p = 0; p < bounds.size(); ++p) {
    PhaseSummary phase;
    phase.label = bounds[p].second;
    phase.start_s = bounds[p].first;
    phase.end_s = p + 1 < bounds.size() ? bounds[p + 1].first : run_s;
    const Tick* first = tick_at(ticks, phase.start_s);
    const Tick* last = tick_at(ticks, phase.end_s);
    const double span = last->t - first->t;
    double busy_total = 0;
    for (std::size_t v = 0; v < vms.size(); ++v) {
      busy_total += last->vms[v].busy_s - first->vms[v].busy_s;
    }
    std::vector<double> latencies;
    for (const auto& [t, ms] : infer_latencies_ms) {
      if (t > phase.start_s && t <= phase.end_s) latencies.push_back(ms);
    }
    for (std::size_t v = 0; v < vms.size(); ++v) {
      PhaseVmSummary s;
      const double examples = static_cast<double>(last->vms[v].examples - first->vms[v].examples);
      s.examples_per_s = span > 0 ? examples / span : 0.0;
      s.share = busy_total > 0 ? (last->vms[v].busy_s - first->vms[v].busy_s) / busy_total : 0.0;
      if (vms[v].role == VmRole::kInfer) {
        s.requests = latencies.size();
        s.p50_ms = harness::percentile(latencies, 0.50);
        s.p90_ms = harness::percentile(latencies, 0.90);
        s.p99_ms = harness::percentile(latencies, 0.99);
      }
      phase.vms.push_back(s);
    }
    out.push_back(std::move(phase));
  }
  return out;
}

}  // namespace malv::demo
