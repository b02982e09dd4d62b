// Inline SVG line charts for the demo's HTML report: no scripts, no
// external files, so the report opens anywhere, offline.
//
//   LineChart chart{.title = "Throughput", .y_unit = "examples/s", .x_max = 60};
//   chart.series.push_back({"train-a", "#1f77b4", {{0, 0}, {1, 9800}, ...}});
//   chart.markers.push_back({30.2, "fifo -> priority"});
//   html += svg_line_chart(chart);
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace malv::demo {

struct ChartSeries {
  std::string name;
  std::string color;                              // CSS colour
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
};

// A vertical line at x, labelled (the policy switch).
struct ChartMarker {
  double x = 0;
  std::string label;
};

struct LineChart {
  std::string title;
  std::string y_unit;
  double x_max = 0;  // seconds
  std::vector<ChartSeries> series;
  std::vector<ChartMarker> markers;
};

std::string svg_line_chart(const LineChart& chart);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string html_escape(const std::string& text);

}  // namespace malv::demo
