// SessionServices: what a session offers a guest beyond the accelerator.
//
// The host daemon fills this in per admitted guest; every service is
// optional, and a command that needs an absent one fails with
// kUnimplemented naming it, so a bare Micro-LAKE server (tests, development
// hosts) works without them.
//
//   Admission admission;
//   admission.services.policies = &policy_registry;  // kPolicyList / kPolicySelect
#pragma once

namespace malv::mlaas {
class PolicyRegistry;
}

namespace malv::microlake {

struct SessionServices {
  // The guest lists the MLaaS policies and selects its own, within the
  // admin's allow-lists (mlaas::Requester::kGuest). Must outlive the session.
  mlaas::PolicyRegistry* policies = nullptr;
};

}  // namespace malv::microlake
