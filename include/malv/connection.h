// Connection: a guest's session with a MaLV-OS host (libmalv).
//
// The client side of the accelerator API, shaped after the CUDA driver API:
// buffers in device memory, ordered streams, events, and kernels launched by
// name. Work on streams is asynchronous; errors surface at the next
// synchronize of the stream that ran the failing command, naming it.
//
//   MALV_ASSIGN_OR_RETURN(auto conn, Connection::connect_unix(path, {.vm_name = "vm-a"}));
//   MALV_ASSIGN_OR_RETURN(Buffer x, conn->allocate(n * sizeof(float)));
//   MALV_ASSIGN_OR_RETURN(Stream s, conn->create_stream());
//   MALV_ASSIGN_OR_RETURN(Kernel relu, conn->kernel("relu"));
//   MALV_TRY(s.write(x, 0, as_bytes(span(host))));
//   MALV_TRY(s.launch(relu, {KernelArg::buffer(x), KernelArg::buffer(x), KernelArg::i64(n)}));
//   MALV_TRY(s.read(x, 0, as_writable_bytes(span(host))));
//   MALV_TRY(s.synchronize());  // host now holds relu(x)
//
// A Connection and the objects it hands out are used from one thread. The
// objects must not outlive their Connection (hence unique_ptr<Connection>).
//
// This header is part of libmalv's installed API (docs/client-api.md): it
// includes nothing outside include/malv/. The channel, the arena allocator
// and the bookkeeping of commands in flight live in an internal
// ConnectionCore that the Connection owns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "malv/objects.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::guest {

struct ConnectOptions {
  std::string vm_name = "guest";
  std::string credential;
  std::uint64_t arena_bytes = 0;  // 0: the host's default
};

struct DeviceInfo {
  std::string backend;
  std::string name;
  std::uint64_t total_memory = 0;
  std::uint64_t free_memory = 0;
  std::uint32_t compute_units = 0;
};

class ConnectionCore;  // internal: channel, arena, commands in flight

// True inside a VM that has an ivshmem PCI device (Connection::connect_ivshmem
// with an empty device finds it).
bool ivshmem_device_present();

class Connection {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_unix(
      const std::string& path, const ConnectOptions& options);
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_tcp(
      const std::string& host, std::uint16_t port, const ConnectOptions& options);
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_vsock(
      std::uint32_t cid, std::uint32_t port, const ConnectOptions& options);
  // Inside a VM served over ivshmem: `device` is empty (the first ivshmem
  // PCI device), a PCI address such as "0000:00:03.0", or, on the host, the
  // VM's ivshmem socket (standing in for its QEMU). The VM is the one the
  // device belongs to; options.vm_name must name it.
  [[nodiscard]] static Result<std::unique_ptr<Connection>> connect_ivshmem(
      const std::string& device, const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] Result<DeviceInfo> device_info();
  // One blocking round trip through the host (a kNop).
  [[nodiscard]] Status ping();
  [[nodiscard]] Result<Buffer> allocate(std::uint64_t bytes);
  // Host memory in the shared arena for zero-copy transfers (at most the
  // arena's size; waits for in-flight transfers to free room).
  [[nodiscard]] Result<HostBuffer> allocate_host(std::uint64_t bytes);
  [[nodiscard]] Result<Stream> create_stream(bool high_priority = false);
  [[nodiscard]] Result<Event> create_event();
  [[nodiscard]] Result<Kernel> kernel(std::string_view name);
  // Waits for all work on all streams; the first unreported error, if any.
  [[nodiscard]] Status synchronize();
  // Nanoseconds between two events that have both happened.
  [[nodiscard]] Result<std::uint64_t> elapsed_ns(const Event& start, const Event& end);
  // Hands every command submitted so far to the host now. Stream work
  // (launch, write, read, copy, memset, record, wait) is otherwise handed
  // over in bursts: at the next call that waits for the host, or every
  // 32 commands, so that a request of several commands wakes the host once,
  // after its last command. Call flush() after queueing work that should
  // start before this thread next waits on the connection.
  void flush();
  // Times the host was told about new commands: doorbell rings on a
  // shared-memory channel (a system call only when the host was asleep);
  // 0 on TCP and vsock, where every command travels as it is submitted.
  std::uint64_t doorbells() const;
  // Bytes of the shared arena the host granted (the largest HostBuffer).
  std::uint64_t arena_bytes() const;

 private:
  explicit Connection(std::unique_ptr<ConnectionCore> core);
  friend ConnectionCore& core_of(Connection& connection);

  std::unique_ptr<ConnectionCore> core_;
};

}  // namespace malv::guest
