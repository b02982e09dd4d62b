// The results of `malv demo`: a summary for the console, and two files —
// malv-demo-report.json (everything measured, for scripts) and a
// self-contained malv-demo-report.html (summary table and inline SVG charts
// of per-VM throughput, accelerator share and inference latency over time,
// the policy switch marked).
//
//   fmt::print("{}", demo_summary(record));
//   MALV_TRY(write_demo_reports(record, "out/"));  // both files
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "demo/record.h"
#include "malv/result.h"

namespace malv::demo {

inline constexpr const char* kDemoJsonReport = "malv-demo-report.json";
inline constexpr const char* kDemoHtmlReport = "malv-demo-report.html";

// Per-phase figures of each VM and what the switch changed, as text.
std::string demo_summary(const DemoRecord& record);

nlohmann::json demo_report_json(const DemoRecord& record);
std::string demo_report_html(const DemoRecord& record);

// Writes both files into `dir` (created if missing).
[[nodiscard]] Status write_demo_reports(const DemoRecord& record, const std::string& dir);

}  // namespace malv::demo
