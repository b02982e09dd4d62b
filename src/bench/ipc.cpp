// `malv bench ipc`: the remoting path against its baselines, in one run.
//
// A real host (`malv serve`, CPU backend unless --backend) runs as a child process; this
// process is the guest. Figures: blocking no-op round trips over the shared
// memory rings, over TCP, and a plain 64-byte request / 32-byte response
// over a Unix socket to an echo process (the baseline a socket-RPC design
// like LAKE's netlink or GVirtuS would pay); fire-and-forget no-op kernel
// launches; and 64 MiB host->device / device->host transfers through the
// arena against a plain memcpy of the same size.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/clock.h"
#include "bench/bench.h"
#include "harness/host_process.h"
#include "harness/report.h"
#include "ipc/socket.h"
#include "malv/connection.h"

namespace malv::bench {
namespace {

// A child process answering every 64-byte request with a 32-byte response.
pid_t start_echo(ipc::Socket child_end) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::byte request[64];
    std::byte response[32] = {};
    while (child_end.read_exact(request, sizeof(request)).ok()) {
      std::memcpy(response, request, 8);  // echo the tag
      if (!child_end.write_all(response, sizeof(response)).ok()) break;
    }
    ::_exit(0);
  }
  return pid;
}

template <typename Fn>
Result<std::vector<double>> time_each_us(int n, Fn&& fn) {
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    Stopwatch watch;
    MALV_TRY(fn());
    samples.push_back(watch.elapsed_us());
  }
  return samples;
}

}  // namespace

Status run_ipc(const IpcOptions& flags) {
  // The echo child is forked before any thread exists in this process.
  MALV_ASSIGN_OR_RETURN(auto pair, ipc::Socket::unix_pair());
  pid_t echo = start_echo(std::move(pair.second));
  struct Reap {
    pid_t pid;
    ~Reap() { ::waitpid(pid, nullptr, 0); }
  } reap{echo};
  ipc::Socket rpc = std::move(pair.first);

  MALV_ASSIGN_OR_RETURN(auto host, harness::HostProcess::spawn({"--backend", flags.backend, "--tcp",
                                                                "127.0.0.1:0", "--arena-mib", "64",
                                                                "--memory-mib", "1024", "--open"}));
  MALV_ASSIGN_OR_RETURN(
      auto conn, guest::Connection::connect_unix(host->socket_path(), {.vm_name = "bench-shm"}));
  MALV_ASSIGN_OR_RETURN(auto tcp, guest::Connection::connect_tcp("127.0.0.1", host->tcp_port(),
                                                                 {.vm_name = "bench-tcp"}));
  if (!flags.json) fmt::print(stderr, "bench ipc: round trips ...\n");
  for (int i = 0; i < 2000; ++i) MALV_TRY(conn->ping());  // warm up
  MALV_ASSIGN_OR_RETURN(auto shm, time_each_us(flags.roundtrips, [&] { return conn->ping(); }));
  std::byte request[64] = {};
  std::byte response[32];
  MALV_ASSIGN_OR_RETURN(auto unix_rpc, time_each_us(flags.roundtrips, [&]() -> Status {
                          MALV_TRY(rpc.write_all(request, sizeof(request)));
                          return rpc.read_exact(response, sizeof(response));
                        }));
  for (int i = 0; i < 500; ++i) MALV_TRY(tcp->ping());
  MALV_ASSIGN_OR_RETURN(auto tcp_rt,
                        time_each_us(flags.roundtrips / 4, [&] { return tcp->ping(); }));
  rpc.shutdown();

  if (!flags.json) fmt::print(stderr, "bench ipc: {} async launches ...\n", flags.launches);
  MALV_ASSIGN_OR_RETURN(guest::Kernel nop, conn->kernel("nop"));
  MALV_ASSIGN_OR_RETURN(guest::Stream stream, conn->create_stream());
  std::vector<double> launch_rates;
  for (int r = 0; r < 3; ++r) {
    Stopwatch watch;
    for (int i = 0; i < flags.launches; ++i) MALV_TRY(stream.launch(nop, {}));
    MALV_TRY(stream.synchronize());
    launch_rates.push_back(flags.launches / watch.elapsed_s());
  }

  if (!flags.json) fmt::print(stderr, "bench ipc: {} MiB transfers ...\n", flags.transfer_mib);
  const std::uint64_t bytes = std::uint64_t(flags.transfer_mib) << 20;
  std::vector<std::byte> host_src(bytes, std::byte{1}), host_dst(bytes, std::byte{2});
  MALV_ASSIGN_OR_RETURN(guest::Buffer device, conn->allocate(bytes));
  MALV_TRY(stream.write(device, 0, host_src));  // first touch of device pages
  MALV_TRY(stream.synchronize());
  // Zero-copy: the guest's data lives in host memory of the shared arena
  // (like CUDA's page-locked memory); the host makes the one copy.
  MALV_ASSIGN_OR_RETURN(guest::HostBuffer pinned, conn->allocate_host(bytes));
  std::memcpy(pinned.data().data(), host_src.data(), bytes);
  MALV_ASSIGN_OR_RETURN(double h2d, harness::median_gbps(flags.repeats, bytes, [&]() -> Status {
                          MALV_TRY(stream.write(device, 0, pinned, 0, bytes));
                          return stream.synchronize();
                        }));
  MALV_ASSIGN_OR_RETURN(double d2h, harness::median_gbps(flags.repeats, bytes, [&]() -> Status {
                          MALV_TRY(stream.read(device, 0, pinned, 0, bytes));
                          return stream.synchronize();
                        }));
  if (std::memcmp(pinned.data().data(), host_src.data(), bytes) != 0) {
    return Error(ErrorCode::kDataLoss, "zero-copy read back different bytes");
  }
  pinned.reset();
  // Pageable guest memory: chunks are copied into the arena, then to the device.
  MALV_ASSIGN_OR_RETURN(double h2d_copy,
                        harness::median_gbps(flags.repeats, bytes, [&]() -> Status {
                          MALV_TRY(stream.write(device, 0, host_src));
                          return stream.synchronize();
                        }));
  MALV_ASSIGN_OR_RETURN(double d2h_copy,
                        harness::median_gbps(flags.repeats, bytes, [&]() -> Status {
                          MALV_TRY(stream.read(device, 0, host_dst));
                          return stream.synchronize();
                        }));
  if (host_dst != host_src) return Error(ErrorCode::kDataLoss, "read back different bytes");
  MALV_ASSIGN_OR_RETURN(double memcpy_rate,
                        harness::median_gbps(flags.repeats, bytes, [&]() -> Status {
                          std::memcpy(host_dst.data(), host_src.data(), bytes);
                          return ok_status();
                        }));

  const double shm_p50 = harness::percentile(shm, 0.5);
  const double unix_p50 = harness::percentile(unix_rpc, 0.5);
  std::vector<harness::Figure> figures{
      {"shm_roundtrip_p50_us", shm_p50, "us", "no-op command, blocking, shared-memory rings"},
      {"shm_roundtrip_p99_us", harness::percentile(shm, 0.99), "us", ""},
      {"unix_rpc_roundtrip_p50_us", unix_p50, "us",
       "baseline: 64 B request/32 B reply, Unix socket"},
      {"tcp_roundtrip_p50_us", harness::percentile(tcp_rt, 0.5), "us",
       "no-op command over loopback TCP"},
      {"shm_speedup_over_unix_rpc", unix_p50 / shm_p50, "x", "goal >= 5"},
      {"async_launch_ops_per_s", harness::median(launch_rates), "ops/s",
       "no-op kernels, one sync; goal >= 1e6"},
      {"h2d_gbps", h2d, "GB/s", "64 MiB arena host buffer -> device (zero-copy)"},
      {"d2h_gbps", d2h, "GB/s", "64 MiB device -> arena host buffer (zero-copy)"},
      {"h2d_pageable_gbps", h2d_copy, "GB/s", "64 MiB ordinary guest memory -> device"},
      {"d2h_pageable_gbps", d2h_copy, "GB/s", "64 MiB device -> ordinary guest memory"},
      {"memcpy_gbps", memcpy_rate, "GB/s", "plain memcpy of the same size (the limit)"},
      {"h2d_fraction_of_memcpy", h2d / memcpy_rate, "", "goal >= 0.7"},
      {"d2h_fraction_of_memcpy", d2h / memcpy_rate, "", "goal >= 0.7"},
  };
  MALV_ASSIGN_OR_RETURN(guest::DeviceInfo info, conn->device_info());
  harness::print_figures("malv bench ipc", figures, flags.json,
                         {{"backend", info.backend}, {"device", info.name}});
  return ok_status();
}

}  // namespace malv::bench
