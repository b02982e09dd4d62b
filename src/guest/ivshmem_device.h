// IvshmemDevice: the guest's end of a VM's ivshmem region: the shared
// memory (ipc/ivshmem_layout.h) and a way to ring the host's doorbells.
//
// Two ways to reach one:
//  * inside a VM, the PCI device QEMU's ivshmem-doorbell makes (vendor
//    0x1af4, device 0x1110): BAR 2 (sysfs `resource2`) is the region, BAR 0
//    (`resource0`) holds the doorbell register. Both are mapped from user
//    space; no kernel driver is needed. Completions are polled for (with
//    back-off): without a driver (uio/vfio) a guest process cannot take the
//    device's interrupts (docs/vms.md says why this is the choice);
//  * on the host, a process standing in for QEMU: it connects to the VM's
//    ivshmem socket as QEMU would and gets the same region and doorbells
//    (tests, and a VM's sessions checked without booting one).
//
//   MALV_ASSIGN_OR_RETURN(auto device, open_ivshmem_device(""));  // auto-detect
//   device->ring(host_peer, vector);
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "malv/result.h"

namespace malv::guest {

class IvshmemDevice {
 public:
  virtual ~IvshmemDevice() = default;
  virtual std::span<std::byte> region() = 0;
  // Signals `vector` of ivshmem peer `peer` (the host's id is in the
  // region's header).
  virtual void ring(std::uint32_t peer, std::uint32_t vector) = 0;
  // What this is, for messages: "PCI 0000:00:03.0" or "socket PATH".
  virtual std::string describe() const = 0;
};

// `where`: empty (the first ivshmem PCI device in this machine that holds a
// MaLV-OS region), a PCI address ("0000:00:03.0") or its sysfs directory,
// or the path of a VM's ivshmem socket on the host (a stand-in for QEMU).
[[nodiscard]] Result<std::unique_ptr<IvshmemDevice>> open_ivshmem_device(const std::string& where);

// The sysfs directory of the first ivshmem PCI device, if this machine has
// one (a guest inside a VM served over ivshmem).
std::optional<std::string> find_ivshmem_pci_device();

}  // namespace malv::guest
