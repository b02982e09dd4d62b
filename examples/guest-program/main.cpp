// malv-guest-example: a guest program that uses an accelerator through a
// MaLV-OS host, built against an installed libmalv (README.md).
//
// It connects, allocates two device buffers, scales a vector on one stream,
// applies ReLU on a second stream that waits for the first through an event,
// reads the result back, checks every value and prints one line:
//
//   malv-guest-example /run/malv.sock [--vm NAME] [--token TOKEN] [--policy CLASS=POLICY]
//
// The socket path may also come from $MALV_SOCKET.
#include <malv/connection.h>
#include <malv/policy_selection.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

namespace {

using malv::Result;
using malv::Status;
using namespace malv::guest;

struct Options {
  std::string socket;
  std::string vm = "example";
  std::string token;
  std::string policy;  // "class=policy" to select, or empty
};

Result<std::string> run(const Options& options) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                        Connection::connect_unix(
                            options.socket, {.vm_name = options.vm, .credential = options.token}));
  if (!options.policy.empty()) MALV_TRY(select_policy(*conn, options.policy));
  MALV_ASSIGN_OR_RETURN(DeviceInfo device, conn->device_info());

  constexpr std::int64_t n = 1 << 16;
  std::vector<float> host(n);
  for (std::int64_t i = 0; i < n; ++i) host[i] = static_cast<float>(i - n / 2) * 0.25f;

  MALV_ASSIGN_OR_RETURN(Buffer x, conn->allocate(n * sizeof(float)));
  MALV_ASSIGN_OR_RETURN(Buffer y, conn->allocate(n * sizeof(float)));
  MALV_ASSIGN_OR_RETURN(Stream first, conn->create_stream());
  MALV_ASSIGN_OR_RETURN(Stream second, conn->create_stream());
  MALV_ASSIGN_OR_RETURN(Event start, conn->create_event());
  MALV_ASSIGN_OR_RETURN(Event scaled, conn->create_event());
  MALV_ASSIGN_OR_RETURN(Kernel scale, conn->kernel("scale"));
  MALV_ASSIGN_OR_RETURN(Kernel relu, conn->kernel("relu"));

  // first: y = 2 x, then `scaled` happens; second waits for it: y = relu(y).
  MALV_TRY(first.write(x, 0, std::as_bytes(std::span(host))));
  MALV_TRY(first.record(start));
  MALV_TRY(first.launch(
      scale, {KernelArg::buffer(x), KernelArg::buffer(y), KernelArg::i64(n), KernelArg::f32(2)}));
  MALV_TRY(first.record(scaled));
  MALV_TRY(second.wait(scaled));
  MALV_TRY(second.launch(relu, {KernelArg::buffer(y), KernelArg::buffer(y), KernelArg::i64(n)}));
  std::vector<float> back(n);
  MALV_TRY(second.read(y, 0, std::as_writable_bytes(std::span(back))));
  MALV_TRY(second.synchronize());
  MALV_ASSIGN_OR_RETURN(std::uint64_t ns, conn->elapsed_ns(start, scaled));

  std::int64_t wrong = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float want = host[i] > 0 ? 2 * host[i] : 0.0f;
    if (back[i] != want) ++wrong;
  }
  if (wrong != 0) {
    return malv::Error(malv::ErrorCode::kDataLoss,
                       std::to_string(wrong) + " of " + std::to_string(n) + " values are wrong");
  }
  return "relu(2x) of " + std::to_string(n) + " floats on " + device.backend + " (" + device.name +
         ") checked; scale took " + std::to_string(ns / 1000) + " us";
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s SOCKET [--vm NAME] [--token TOKEN] [--policy CLASS=POLICY]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (const char* env = std::getenv("MALV_SOCKET")) options.socket = env;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--vm" || arg == "--token" || arg == "--policy") && i + 1 < argc) {
      std::string& field = arg == "--vm"      ? options.vm
                           : arg == "--token" ? options.token
                                              : options.policy;
      field = argv[++i];
    } else if (!arg.empty() && arg[0] != '-') {
      options.socket = arg;
    } else {
      return usage(argv[0]);
    }
  }
  if (options.socket.empty()) return usage(argv[0]);

  Result<std::string> done = run(options);
  if (!done.ok()) {
    std::fprintf(stderr, "malv-guest-example: %s\n", done.error().to_string().c_str());
    return 1;
  }
  std::printf("malv-guest-example: ok: %s\n", done.value().c_str());
  return 0;
}
