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

#include <functional>
#include <memory>

#include "accel/aten_operators.h"
#include "base/byte_quota.h"
#include "offload/checkpoint_store.h"

namespace malv::mlaas {
class PolicyRegistry;
}
namespace malv::offload {
class DatasetCatalog;
}  // namespace malv::offload

namespace malv::microlake {

struct SessionServices {
  // The guest lists the MLaaS policies and selects its own, within the
  // admin's allow-lists (mlaas::Requester::kGuest). Must outlive the session.
  mlaas::PolicyRegistry* policies = nullptr;
  // kDatasetOpen/Next/Close: the host's data pipeline over its data
  // directories (src/offload/data_pipeline.h).
  offload::DatasetCatalog* datasets = nullptr;
  // kCheckpointSave/Restore: this VM's checkpoint directory
  // (src/offload/checkpoint_store.h).
  offload::CheckpointStore* checkpoints = nullptr;
  // The VM's host-memory quota, charged with checkpoint snapshots waiting to
  // be written (its arenas are charged by its backend at admission). Null:
  // uncharged.
  std::shared_ptr<ByteQuota> host_memory;
  // The VM's checkpoint disk quota, read at every save (the admin may
  // change it while the guest runs). Empty: none.
  std::function<offload::CheckpointQuota()> checkpoint_quota;
  // Held for as long as the session lives and dropped at its end (the
  // host's per-session registrations, e.g. the VM's CPU group membership).
  std::shared_ptr<void> keep_alive;
  // Told how long the VM's guest waited each time one of its data pipelines
  // had no batch staged (offload::PipelineOptions::on_stall). Empty: nobody.
  std::function<void(std::int64_t waited_ns)> data_stall;
  // kAtenIntern/kAtenOp: the host's executor of PyTorch operators (null:
  // none, the torch device is refused), and why this VM may not use it
  // now ("" or empty: it may), e.g. its buffers are not memory the host
  // addresses (a CUDA backend, or memory the manager moves).
  accel::AtenOperators* aten = nullptr;
  std::function<std::string()> aten_refusal;
};

}  // namespace malv::microlake
