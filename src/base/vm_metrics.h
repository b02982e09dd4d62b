// Prometheus text for the host's per-VM /metrics families: one family,
// then a sample per row labelled with the row's VM (`row.vm`): the CPU
// controller's and the ivshmem server's status rows.
//
//   append_vm_family(out, "malv_vm_cpu_weight", "gauge", "The VM's CPU weight", rows,
//                    [](const Row& r) { return r.weight; });
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

namespace malv {

template <typename Row, typename Value>
void append_vm_family(std::string& out, std::string_view name, std::string_view type,
                      std::string_view help, const std::vector<Row>& rows, Value value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  for (const Row& row : rows) out += fmt::format("{}{{vm=\"{}\"}} {}\n", name, row.vm, value(row));
}

}  // namespace malv
