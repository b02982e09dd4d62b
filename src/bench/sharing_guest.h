// The guest side of `malv bench sharing`: one VM's workload, run as its own
// process (`malv bench sharing-guest`, hidden), and SharingGuest, the handle
// the benchmark holds on such a process.
//
// Protocol over the child's stdin/stdout pipes, so that every guest of a
// phase starts its timed work at the same moment:
//
//   guest -> bench   "ready\n"         connected, buffers allocated, warmed up
//   bench -> guest   "go\n"            start the timed loop now
//   guest -> bench   one JSON line     {"ops", "seconds", "latencies_us"}
//
// A guest whose stdin closes before "go" exits without working; the handle's
// destructor kills and reaps a guest that is still running, so no process
// outlives a failed benchmark.
//
//   MALV_ASSIGN_OR_RETURN(auto g, SharingGuest::spawn({.socket = s, .vm = "a", ...}));
//   MALV_TRY(g->wait_ready());
//   MALV_TRY(g->go());
//   MALV_ASSIGN_OR_RETURN(SharingGuestResult r, g->result());
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "malv/result.h"

namespace malv::bench {

// What a guest runs once told to go.
//  gemm:  256x256x256 sgemm launches on one stream, two event-fenced windows
//         in flight, so the VM always has queued work (a batch tenant).
//  infer: one small inference-sized request (write 1x31 input, 1x31 by
//         31x256 gemm, relu, 256x2 gemm, read 2 floats, synchronize) every
//         1/rate seconds; each request's latency is one sample.
//  tiny:  back-to-back 1024-element relu launches, windowed like gemm: a VM
//         that keeps the scheduler deciding every few microseconds.
struct SharingGuestResult {
  std::uint64_t ops = 0;  // kernels (gemm, tiny) or requests (infer) completed
  double seconds = 0;     // length of the timed loop
  std::vector<double> latencies_us;
};

class SharingGuest {
 public:
  [[nodiscard]] static Result<std::unique_ptr<SharingGuest>> spawn(const SharingGuestSpec& spec);
  ~SharingGuest();
  SharingGuest(const SharingGuest&) = delete;
  SharingGuest& operator=(const SharingGuest&) = delete;

  [[nodiscard]] Status wait_ready();
  [[nodiscard]] Status go();
  // Waits for the guest to finish and reads its result.
  [[nodiscard]] Result<SharingGuestResult> result();
  const std::string& vm() const { return vm_; }

 private:
  SharingGuest() = default;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string vm_;
  std::string buffered_;  // bytes read past the last line
  [[nodiscard]] Result<std::string> read_line();
};

// Registers the hidden `malv bench sharing-guest` subcommand.

}  // namespace malv::bench
