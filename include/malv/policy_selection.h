// Policy selection from the guest (libmalv): a VM lists the MLaaS policies
// its host offers and picks its own, within what the host's admin allows.
//
//   MALV_ASSIGN_OR_RETURN(auto policies, list_policies(*connection));
//   MALV_TRY(select_policy(*connection, "gpu_sched=fair-share"));
//
// A selection takes effect at the VM's next decision of that class. The host
// checks the admin's allow-list; a refusal comes back as kPermissionDenied
// with the policies this VM may select named in the error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "malv/connection.h"
#include "malv/result.h"

namespace malv::guest {

struct PolicyEntry {
  std::string policy_class;  // "gpu_sched", "memory", "cpu_sched", "prefetch"
  std::string name;          // "module/policy"
  bool baseline = false;     // the class baseline (used when nothing is selected)
  bool allowed = false;      // this VM may select it
  bool selected = false;     // this VM uses it now
};

[[nodiscard]] Result<std::vector<PolicyEntry>> list_policies(Connection& connection);

// `selection` is "class=policy"; policy is "module/policy" or a unique bare name.
[[nodiscard]] Status select_policy(Connection& connection, std::string_view selection);

// Parses the host's policy table (docs/protocol.md, kPolicyList).
[[nodiscard]] Result<std::vector<PolicyEntry>> parse_policy_table(std::string_view table);

}  // namespace malv::guest
