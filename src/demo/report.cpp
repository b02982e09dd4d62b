#include "demo/report.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "demo/svg.h"

namespace malv::demo {
namespace {

using nlohmann::json;

constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"};

const char* color_of(std::size_t vm) { return kColors[vm % std::size(kColors)]; }

std::string role_name(VmRole role) { return role == VmRole::kInfer ? "infer" : "train"; }

std::string latency_cell(const PhaseVmSummary& s) {
  return s.requests == 0 ? "-" : fmt::format("{:.2f}/{:.2f}", s.p50_ms, s.p99_ms);
}

// Examples per second over the whole run.
double overall_rate(const DemoRecord& record, std::size_t vm) {
  if (record.ticks.size() < 2) return 0.0;
  const Tick& first = record.ticks.front();
  const Tick& last = record.ticks.back();
  const double span = last.t - first.t;
  return span > 0 ? static_cast<double>(last.vms[vm].examples - first.vms[vm].examples) / span
                  : 0.0;
}

std::size_t infer_index(const DemoRecord& record) {
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    if (record.vms[v].role == VmRole::kInfer) return v;
  }
  return record.vms.size();
}

double training_rate(const DemoRecord& record, const PhaseSummary& phase) {
  double sum = 0;
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    if (record.vms[v].role == VmRole::kTrain) sum += phase.vms[v].examples_per_s;
  }
  return sum;
}

// One sentence on what the switch changed, first phase against the last.
std::string headline(const DemoRecord& record, const std::vector<PhaseSummary>& phases) {
  if (phases.size() < 2) return "the run ended before the policy switch";
  const PhaseSummary& before = phases.front();
  const PhaseSummary& after = phases.back();
  std::string out;
  const std::size_t infer = infer_index(record);
  if (infer < record.vms.size() && after.vms[infer].p99_ms > 0 && before.vms[infer].p99_ms > 0) {
    const double ratio = before.vms[infer].p99_ms / after.vms[infer].p99_ms;
    out += fmt::format("inference p99 {:.2f} ms under {}, {:.2f} ms under {} ({:.1f}x {}); ",
                       before.vms[infer].p99_ms, before.label, after.vms[infer].p99_ms, after.label,
                       ratio >= 1 ? ratio : 1 / ratio, ratio >= 1 ? "lower" : "higher");
  }
  const double train_before = training_rate(record, before);
  if (train_before > 0) {
    out += fmt::format("training throughput under {} is {:.0f}% of that under {}", after.label,
                       100 * training_rate(record, after) / train_before, before.label);
  }
  return out;
}

json vm_final_json(const DemoVmSpec& spec, const VmLive& live) {
  json out{{"state", live.state},
           {"examples", live.examples},
           {"memory_used_bytes", live.memory_used},
           {"busy_seconds", live.busy_s},
           {"gpu_policy", live.policy}};
  if (spec.virtual_memory != 0) {
    out["memory_manager"] = {{"borrowed_bytes", live.borrowed_bytes},
                             {"spilled_bytes", live.spilled_bytes},
                             {"bytes_in", live.bytes_in}};
  }
  if (spec.role == VmRole::kTrain) {
    out["steps"] = live.step;
    out["epoch"] = live.epoch;
    out["loss"] = live.loss;
    if (live.test_accuracy >= 0) out["test_accuracy"] = live.test_accuracy;
    if (live.finished_at_s >= 0) out["finished_at_s"] = live.finished_at_s;
  } else {
    out["requests"] = live.requests;
    out["accuracy"] = live.accuracy;
  }
  return out;
}

}  // namespace

std::string demo_summary(const DemoRecord& record) {
  const std::vector<PhaseSummary> phases = record.phases();
  std::string out =
      fmt::format("\nSummary: {:.1f} s with every guest running ({:.1f} s to start them)\n",
                  record.run_s, record.startup_s);
  std::string header1 = fmt::format("{:<20}", "");
  std::string header2 = fmt::format("{:<7} {:<12}", "VM", "CLASS");
  for (std::size_t p = 0; p < phases.size(); ++p) {
    header1 +=
        fmt::format(" | {:<33}", fmt::format("phase {}: {} ({:.0f}-{:.0f} s)", p + 1,
                                             phases[p].label, phases[p].start_s, phases[p].end_s));
    header2 += fmt::format(" | {:>8} {:>7} {:>16}", "ex/s", "accel", "p50/p99 ms");
  }
  out += header1 + "\n" + header2 + "\n";
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    const DemoVmSpec& spec = record.vms[v];
    std::string line =
        fmt::format("{:<7} {:<12}", spec.name, fmt::format("{} w{:g}", spec.priority, spec.weight));
    for (const PhaseSummary& phase : phases) {
      const PhaseVmSummary& s = phase.vms[v];
      line += fmt::format(" | {:>8.0f} {:>6.1f}% {:>16}", s.examples_per_s, s.share * 100,
                          latency_cell(s));
    }
    out += line + "\n";
  }
  out += fmt::format("\n{}.\n", headline(record, phases));
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    const VmLive& live = record.live[v];
    if (live.finished_at_s >= 0) {
      out += fmt::format(
          "{} finished its training budget at t = {:.1f} s (test accuracy {:.4f}); "
          "it ran no more after that.\n",
          record.vms[v].name, live.finished_at_s, live.test_accuracy);
    }
  }
  out +=
      "ex/s: examples per second (training steps x batch, or requests x batch); accel: share of\n"
      "the accelerator time the VMs used (host-side accounting); p50/p99: inference request\n"
      "latency, arrival to answer. The phases are the scheduler's host level: fifo serves VMs\n"
      "by arrival; priority serves the latency VM first and batch VMs by weight (w1, w2) when\n"
      "they contend for the device (here each training VM holds one of its two slots).\n";
  return out;
}

json demo_report_json(const DemoRecord& record) {
  const std::vector<PhaseSummary> phases = record.phases();
  json vms = json::array();
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    const DemoVmSpec& spec = record.vms[v];
    json per_phase = json::array();
    for (const PhaseSummary& phase : phases) {
      const PhaseVmSummary& s = phase.vms[v];
      json entry{{"phase", phase.label},
                 {"examples_per_s", s.examples_per_s},
                 {"accelerator_share", s.share}};
      if (spec.role == VmRole::kInfer) {
        entry["requests"] = s.requests;
        entry["p50_ms"] = s.p50_ms;
        entry["p90_ms"] = s.p90_ms;
        entry["p99_ms"] = s.p99_ms;
      }
      per_phase.push_back(entry);
    }
    vms.push_back({{"name", spec.name},
                   {"role", role_name(spec.role)},
                   {"priority", spec.priority},
                   {"weight", spec.weight},
                   {"memory_quota_bytes", spec.memory_quota},
                   {"virtual_memory_bytes", spec.virtual_memory},
                   {"batch", spec.batch},
                   {"examples_per_s", overall_rate(record, v)},
                   {"phases", per_phase},
                   {"final", vm_final_json(spec, record.live[v])}});
  }
  json phase_list = json::array();
  for (const PhaseSummary& phase : phases) {
    phase_list.push_back(
        {{"label", phase.label}, {"start_s", phase.start_s}, {"end_s", phase.end_s}});
  }
  json switches = json::array();
  for (const PolicySwitch& s : record.switches) {
    switches.push_back({{"t_s", s.t}, {"host_policy", s.host_policy}, {"policies", s.policies}});
  }
  json samples = json::array();
  for (const Tick& tick : record.ticks) {
    json by_vm = json::object();
    for (std::size_t v = 0; v < record.vms.size(); ++v) {
      const VmSample& s = tick.vms[v];
      json entry{{"policy", s.policy},       {"examples_per_s", s.examples_per_s},
                 {"examples", s.examples},   {"accelerator_share", s.share},
                 {"busy_seconds", s.busy_s}, {"memory_used_bytes", s.memory_used}};
      if (record.vms[v].role == VmRole::kInfer) {
        entry["p50_ms"] = s.p50_ms;
        entry["p99_ms"] = s.p99_ms;
      } else {
        entry["loss"] = s.loss;
      }
      by_vm[record.vms[v].name] = entry;
    }
    samples.push_back({{"t_s", tick.t}, {"vms", by_vm}});
  }
  json out{{"report", "malv demo"},
           {"version", 1},
           {"host", {{"backend", record.backend}, {"device", record.device}}},
           {"planned_duration_s", record.planned_duration_s},
           {"startup_s", record.startup_s},
           {"run_s", record.run_s},
           {"initial_policy", record.initial_policy},
           {"initial_host_policy", record.initial_host_policy},
           {"policy_switches", switches},
           {"phases", phase_list},
           {"headline", headline(record, phases)},
           {"inference_model", record.inference_model},
           {"vms", vms},
           {"samples", samples}};
  out["policy_switch_t_s"] = record.switches.empty() ? json(nullptr) : json(record.switches[0].t);
  return out;
}

std::string demo_report_html(const DemoRecord& record) {
  const std::vector<PhaseSummary> phases = record.phases();
  std::vector<ChartMarker> markers;
  for (std::size_t p = 1; p < phases.size(); ++p) {
    markers.push_back(
        {phases[p].start_s, fmt::format("{} \u2192 {}", phases[p - 1].label, phases[p].label)});
  }
  LineChart throughput{.title = "Training throughput per VM",
                       .y_unit = "examples/s",
                       .x_max = record.run_s,
                       .series = {},
                       .markers = markers};
  LineChart share{.title = "Accelerator share per VM (host accounting)",
                  .y_unit = "% of the VMs' accelerator time",
                  .x_max = record.run_s,
                  .series = {},
                  .markers = markers};
  LineChart latency{.title = "Inference latency, per 1 s window",
                    .y_unit = "ms",
                    .x_max = record.run_s,
                    .series = {},
                    .markers = markers};
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    ChartSeries rate{record.vms[v].name, color_of(v), {}};
    ChartSeries part{record.vms[v].name, color_of(v), {}};
    ChartSeries p99{record.vms[v].name + " p99", "#d62728", {}};
    ChartSeries p50{record.vms[v].name + " p50", "#2ca02c", {}};
    for (const Tick& tick : record.ticks) {
      if (tick.t <= 0) continue;  // the baseline tick: no rates yet
      rate.points.emplace_back(tick.t, tick.vms[v].examples_per_s);
      part.points.emplace_back(tick.t, tick.vms[v].share * 100);
      if (tick.vms[v].p99_ms > 0) {
        p99.points.emplace_back(tick.t, tick.vms[v].p99_ms);
        p50.points.emplace_back(tick.t, tick.vms[v].p50_ms);
      }
    }
    share.series.push_back(std::move(part));
    if (record.vms[v].role == VmRole::kTrain) {
      throughput.series.push_back(std::move(rate));
    } else {
      latency.series.push_back(std::move(p50));
      latency.series.push_back(std::move(p99));
    }
  }

  std::string rows;
  for (std::size_t v = 0; v < record.vms.size(); ++v) {
    const DemoVmSpec& spec = record.vms[v];
    rows += fmt::format(
        "<tr><td><span class=\"dot\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td>"
        "<td>{:g}</td><td>{:.0f} MiB</td>",
        color_of(v), html_escape(spec.name), role_name(spec.role), spec.priority, spec.weight,
        static_cast<double>(spec.memory_quota) / 1048576.0);
    for (const PhaseSummary& phase : phases) {
      const PhaseVmSummary& s = phase.vms[v];
      rows += fmt::format("<td>{:.0f}</td><td>{:.1f}%</td><td>{}</td>", s.examples_per_s,
                          s.share * 100, latency_cell(s));
    }
    rows += "</tr>\n";
  }
  std::string phase_headers;
  std::string phase_columns;
  for (std::size_t p = 0; p < phases.size(); ++p) {
    phase_headers +=
        fmt::format("<th colspan=\"3\">phase {}: {} ({:.1f}\u2013{:.1f} s)</th>", p + 1,
                    html_escape(phases[p].label), phases[p].start_s, phases[p].end_s);
    phase_columns += "<th>examples/s</th><th>accel share</th><th>p50/p99 ms</th>";
  }
  const json& model = record.inference_model;
  return fmt::format(
      R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MaLV-OS demo report</title>
<style>
body{{font-family:sans-serif;max-width:980px;margin:24px auto;color:#222;line-height:1.4}}
table{{border-collapse:collapse;margin:12px 0}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .dot{{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}}
.headline{{background:#f4f7fb;border-left:4px solid #1f77b4;padding:8px 12px}} svg{{display:block;margin:16px 0}}
</style></head><body>
<h1>MaLV-OS demo: three VMs share one accelerator</h1>
<p>A host (<code>malv serve</code>, backend <b>{}</b>: {}) ran three guest VMs as separate processes:
two training VMs (an MLP on Fashion-MNIST, batch class, compute weights 1 and 2) and one
latency-class inference VM serving requests from a model checkpoint. Every VM started on the
GPU-scheduling policy <b>{}</b>; the demo switched them at run time, through the admin API and
without stopping any guest, at the time marked by the dashed line.</p>
<p class="headline">{}.</p>
<table><tr><th rowspan="2">VM</th><th rowspan="2">role</th><th rowspan="2">class</th><th rowspan="2">weight</th><th rowspan="2">memory quota</th>{}</tr>
<tr>{}</tr>
{}</table>
{}{}{}
<h2>How to read this</h2>
<p><b>examples/s</b>: training steps &times; batch, or requests &times; batch. <b>accel share</b>: each VM's
share of the accelerator time all VMs used, as the host's vGPU scheduler charged it. <b>p50/p99</b>:
inference latency from a request's arrival to its answer (open-loop Poisson arrivals at {} requests/s,
{} examples each). fifo orders work by arrival time; priority runs the latency VM first and
shares the rest between the training VMs by their weights. The inference model was trained natively
for {} steps ({:.1f} s, test accuracy {:.3f}) just before the run.</p>
<p>Started {:.1f} s after launch; planned run {:.0f} s, measured {:.1f} s. Machine-readable data:
<code>{}</code>.</p>
</body></html>
)",
      html_escape(record.backend), html_escape(record.device),
      html_escape(short_policy_name(record.initial_policy)), html_escape(headline(record, phases)),
      phase_headers, phase_columns, rows, svg_line_chart(throughput), svg_line_chart(share),
      svg_line_chart(latency), model.value("rate", 0.0), model.value("batch", 0),
      model.value("steps", 0), model.value("seconds", 0.0), model.value("test_accuracy", 0.0),
      record.startup_s, record.planned_duration_s, record.run_s, kDemoJsonReport);
}

Status write_demo_reports(const DemoRecord& record, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error(ErrorCode::kIo, fmt::format("cannot create {}: {}", dir, ec.message()));
  const std::pair<std::string, std::string> files[] = {
      {kDemoJsonReport, demo_report_json(record).dump(2) + "\n"},
      {kDemoHtmlReport, demo_report_html(record)},
  };
  for (const auto& [name, text] : files) {
    const std::string path = (fs::path(dir) / name).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return Error(ErrorCode::kIo, "cannot write " + path);
  }
  return ok_status();
}

}  // namespace malv::demo
