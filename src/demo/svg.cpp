#include "demo/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace malv::demo {
namespace {

constexpr double kWidth = 760;
constexpr double kHeight = 280;
constexpr double kLeft = 64;
constexpr double kRight = 16;
constexpr double kTop = 36;
constexpr double kBottom = 40;

// A round step (1, 2 or 5 times a power of ten) giving about `count` ticks.
double nice_step(double range, int count) {
  if (!(range > 0)) return 1;
  const double raw = range / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

std::string number(double v) {
  if (std::fabs(v) >= 1000) return fmt::format("{:.0f}", v);
  if (std::fabs(v) >= 10 || v == std::floor(v)) return fmt::format("{:g}", v);
  return fmt::format("{:.2g}", v);
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_line_chart(const LineChart& chart) {
  double y_max = 0;
  for (const ChartSeries& s : chart.series) {
    for (const auto& [x, y] : s.points) y_max = std::max(y_max, y);
  }
  const double y_step = nice_step(y_max > 0 ? y_max * 1.1 : 1.0, 5);
  const double y_top = y_step * std::ceil((y_max > 0 ? y_max * 1.05 : 1.0) / y_step);
  const double x_top = chart.x_max > 0 ? chart.x_max : 1.0;
  const double plot_w = kWidth - kLeft - kRight;
  const double plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + plot_w * std::clamp(x / x_top, 0.0, 1.0); };
  auto py = [&](double y) { return kTop + plot_h * (1.0 - std::clamp(y / y_top, 0.0, 1.0)); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" "
      "height=\"{1}\" role=\"img\" aria-label=\"{2}\" "
      "style=\"font-family:sans-serif;font-size:12px\">\n"
      "<text x=\"{3}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{2}</text>\n",
      kWidth, kHeight, html_escape(chart.title), kLeft);
  // Grid and axis labels.
  for (double y = 0; y <= y_top + y_step / 2; y += y_step) {
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\" fill=\"#555\">{5}</text>\n",
        kLeft, kWidth - kRight, py(y), kLeft - 6, py(y) + 4, number(y));
  }
  const double x_step = nice_step(x_top, 8);
  for (double x = 0; x <= x_top + 1e-9; x += x_step) {
    svg +=
        fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
                    px(x), kHeight - kBottom + 16, number(x));
  }
  svg += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">seconds since all guests "
      "started</text>\n"
      "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\" "
      "fill=\"#555\">{}</text>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n",
      kLeft + plot_w / 2, kHeight - 6, kTop + plot_h / 2, kTop + plot_h / 2,
      html_escape(chart.y_unit), kLeft, kTop, plot_w, plot_h);
  // Markers, then the series on top of them.
  for (const ChartMarker& m : chart.markers) {
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#333\" "
        "stroke-dasharray=\"6 4\" stroke-width=\"1.5\"/>"
        "<text x=\"{3:.1f}\" y=\"{4}\" fill=\"#333\">{5}</text>\n",
        px(m.x), kTop, kTop + plot_h, px(m.x) + 4, kTop + 14, html_escape(m.label));
  }
  for (const ChartSeries& s : chart.series) {
    if (s.points.empty()) continue;
    std::string path;
    for (const auto& [x, y] : s.points) {
      path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "" : " ", px(x), py(y));
    }
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n",
                       s.color, path);
  }
  // Legend, top right.
  double legend_x = kWidth - kRight - 8;
  for (auto it = chart.series.rbegin(); it != chart.series.rend(); ++it) {
    const double text_w = 7.0 * static_cast<double>(it->name.size());
    legend_x -= text_w + 26;
    svg += fmt::format(
        "<rect x=\"{:.0f}\" y=\"10\" width=\"14\" height=\"4\" fill=\"{}\"/>"
        "<text x=\"{:.0f}\" y=\"16\">{}</text>\n",
        legend_x, it->color, legend_x + 18, html_escape(it->name));
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace malv::demo
