// The guest side of `malv bench soak`: one short-lived VM tenant, run as its
// own process (`malv bench soak-guest`, hidden), that touches every kind of
// host object a guest can hold and then goes away.
//
// For `rounds` rounds it allocates buffers of seeded sizes on two streams,
// writes them, launches gemm and add (the add's output is read back and
// checked), orders the streams with an event, selects a gpu_sched policy of
// its own (guest::select_policy, a run-time switch), saves a checkpoint
// through the host's checkpoint service and restores it into a fresh
// buffer (checked against the original), and frees part of what it holds.
// Then it disconnects, its last frees still in flight.
//
// It exits 0 when every step succeeded and every check held,
// kSoakGuestWrongResult when a check found wrong data, 1 when a call failed
// (the reason on stderr). The bench SIGKILLs some guests at random moments;
// whatever they held must come back to the host all the same.
//
//   bench::SoakGuestSpec spec{.socket = s, .vm = "soak-0", .token = t, .seed = 42, .index = 7};
//   Status s = run_soak_guest(spec);  // what `malv bench soak-guest` runs
#include <fmt/format.h>

#include <array>
#include <cstring>
#include <random>
#include <vector>

#include "bench/bench.h"
#include "malv/checkpoint.h"
#include "malv/connection.h"
#include "malv/policy_selection.h"

namespace malv::bench {
namespace {

using guest::Buffer;
using guest::KernelArg;

// What one round holds on the host, sized so that a few dozen guests fit
// in a VM's quota many times over: gemm operands of dim^2 floats, and the
// add's vectors.
constexpr std::int64_t kMinDim = 32;
constexpr std::int64_t kMaxDim = 128;
constexpr std::size_t kMinVector = 1024;
constexpr std::size_t kMaxVector = 64 * 1024;

std::vector<float> random_floats(std::mt19937_64& rng, std::size_t n) {
  // Small integers: their sums are exact, so the check below can use ==.
  std::uniform_int_distribution<int> dist(-64, 64);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

Result<Buffer> upload(guest::Connection& conn, guest::Stream& stream,
                      const std::vector<float>& data) {
  MALV_ASSIGN_OR_RETURN(Buffer b, conn.allocate(data.size() * sizeof(float)));
  MALV_TRY(stream.write(b, 0, std::as_bytes(std::span(data))));
  return b;
}

Error check_failed(const std::string& what) { return Error(ErrorCode::kDataLoss, what); }

// The gpu_sched policies this VM may select, by full name: those of the
// basic module but learned-sjf. A learned policy's model lives in device
// memory that the host owns (the MLaaS inference service; learned-sjf has
// one since it ships trained), which would make the bench's check "the VMs'
// memory adds up to the device's" inexact.
Result<std::vector<std::string>> selectable_gpu_policies(guest::Connection& conn) {
  MALV_ASSIGN_OR_RETURN(std::vector<guest::PolicyEntry> policies, guest::list_policies(conn));
  std::vector<std::string> names;
  for (const guest::PolicyEntry& p : policies) {
    if (p.policy_class == "gpu_sched" && p.allowed && p.name.starts_with("malv_sched_basic/") &&
        p.name.find("learned") == std::string::npos) {
      names.push_back(p.name);
    }
  }
  if (names.empty()) return check_failed("the host offers no gpu_sched policy to select");
  return names;
}

// Buffers that live across rounds (each round frees the oldest).
struct Held {
  std::vector<Buffer> buffers;
};

Status run_round(guest::Connection& conn, const SoakGuestSpec& spec, int round,
                 std::mt19937_64& rng, const std::vector<std::string>& policies, Held& held) {
  MALV_ASSIGN_OR_RETURN(guest::Kernel gemm, conn.kernel("gemm"));
  MALV_ASSIGN_OR_RETURN(guest::Kernel add, conn.kernel("add"));
  MALV_ASSIGN_OR_RETURN(guest::Stream compute, conn.create_stream());
  MALV_ASSIGN_OR_RETURN(guest::Stream copy, conn.create_stream());
  MALV_ASSIGN_OR_RETURN(guest::Event computed, conn.create_event());

  const std::int64_t dim = std::uniform_int_distribution<std::int64_t>(kMinDim, kMaxDim)(rng);
  const std::size_t n = std::uniform_int_distribution<std::size_t>(kMinVector, kMaxVector)(rng);
  const auto square = static_cast<std::size_t>(dim * dim);
  MALV_ASSIGN_OR_RETURN(Buffer a, upload(conn, compute, random_floats(rng, square)));
  MALV_ASSIGN_OR_RETURN(Buffer b, upload(conn, compute, random_floats(rng, square)));
  MALV_ASSIGN_OR_RETURN(Buffer c, conn.allocate(square * sizeof(float)));
  const std::vector<float> x = random_floats(rng, n);
  const std::vector<float> y = random_floats(rng, n);
  MALV_ASSIGN_OR_RETURN(Buffer xb, upload(conn, compute, x));
  MALV_ASSIGN_OR_RETURN(Buffer yb, upload(conn, compute, y));
  MALV_ASSIGN_OR_RETURN(Buffer zb, conn.allocate(n * sizeof(float)));

  for (int i = 0; i < 4; ++i) {
    MALV_TRY(compute.launch(
        gemm, {KernelArg::buffer(a), KernelArg::buffer(b), KernelArg::buffer(c),
               KernelArg::i64(dim), KernelArg::i64(dim), KernelArg::i64(dim), KernelArg::i64(0),
               KernelArg::i64(0), KernelArg::f32(1.0f), KernelArg::f32(0.0f)}));
  }
  MALV_TRY(compute.launch(add, {KernelArg::buffer(xb), KernelArg::buffer(yb), KernelArg::buffer(zb),
                                KernelArg::i64(static_cast<std::int64_t>(n))}));
  MALV_TRY(compute.record(computed));
  // The second stream reads what the first wrote: ordered by the event.
  MALV_TRY(copy.wait(computed));
  std::vector<float> z(n);
  MALV_TRY(copy.read(zb, 0, std::as_writable_bytes(std::span(z))));
  MALV_TRY(copy.synchronize());
  for (std::size_t i = 0; i < n; ++i) {
    if (z[i] != x[i] + y[i]) {
      return check_failed(fmt::format("add: element {} is {}, expected {}", i, z[i], x[i] + y[i]));
    }
  }

  // A run-time switch of this VM's own gpu_sched policy.
  const std::string& policy = policies[rng() % policies.size()];
  MALV_TRY(guest::select_policy(conn, "gpu_sched=" + policy));

  // A checkpoint of the gemm's operands and result, then a restore into
  // fresh buffers on the other stream, compared with the original.
  const std::string name = fmt::format("soak-{}-r{}", spec.index % 64, round);
  const std::string metadata = fmt::format("guest {} round {} dim {}", spec.index, round, dim);
  const std::array<guest::CheckpointItem, 2> items{
      {{"a", &a, 0, a.size()}, {"c", &c, 0, c.size()}}};
  MALV_TRY(guest::save_checkpoint(conn, compute, name, items,
                                  std::as_bytes(std::span(metadata.data(), metadata.size()))));
  MALV_ASSIGN_OR_RETURN(Buffer a2, conn.allocate(a.size()));
  MALV_ASSIGN_OR_RETURN(Buffer c2, conn.allocate(c.size()));
  const std::array<guest::CheckpointItem, 2> into{
      {{"a", &a2, 0, a2.size()}, {"c", &c2, 0, c2.size()}}};
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> meta,
                        guest::restore_checkpoint(conn, copy, name, into));
  if (std::string(reinterpret_cast<const char*>(meta.data()), meta.size()) != metadata) {
    return check_failed("checkpoint " + name + ": restored metadata differs");
  }
  std::vector<float> c_host(square);
  std::vector<float> c2_host(square);
  MALV_TRY(compute.read(c, 0, std::as_writable_bytes(std::span(c_host))));
  MALV_TRY(copy.read(c2, 0, std::as_writable_bytes(std::span(c2_host))));
  MALV_TRY(conn.synchronize());
  if (std::memcmp(c_host.data(), c2_host.data(), square * sizeof(float)) != 0) {
    return check_failed("checkpoint " + name + ": restored gemm result differs");
  }

  // Keep part of this round's buffers for later (and for the disconnect).
  held.buffers.push_back(std::move(c));
  held.buffers.push_back(std::move(a2));
  if (held.buffers.size() > 4) held.buffers.erase(held.buffers.begin());
  return ok_status();
}

}  // namespace

Status run_soak_guest(const SoakGuestSpec& spec) {
  std::mt19937_64 rng(spec.seed ^ (spec.index * 0x9e3779b97f4a7c15ull));
  MALV_ASSIGN_OR_RETURN(
      auto conn,
      guest::Connection::connect_unix(spec.socket, {.vm_name = spec.vm, .credential = spec.token}));
  MALV_ASSIGN_OR_RETURN(std::vector<std::string> policies, selectable_gpu_policies(*conn));
  Held held;
  for (int round = 0; round < spec.rounds; ++round) {
    MALV_TRY(run_round(*conn, spec, round, rng, policies, held));
  }
  // `held` goes first (its frees are queued, fire and forget), then the
  // connection closes without waiting for them: the host's teardown of the
  // session, not the guest, settles what was still open.
  return ok_status();
}

}  // namespace malv::bench
