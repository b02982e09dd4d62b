#include "harness/report.h"

#include <fmt/format.h>

namespace malv::harness {

void print_figures(const std::string& title, const std::vector<Figure>& figures, bool json,
                   const nlohmann::json& extra) {
  if (json) {
    nlohmann::json out = extra;
    for (const Figure& f : figures) out[f.key] = f.value;
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("\n{}\n", title);
  for (const Figure& f : figures) {
    fmt::print("  {:<34} {:>14.3f} {:<6} {}\n", f.key, f.value, f.unit, f.what);
  }
}

}  // namespace malv::harness
