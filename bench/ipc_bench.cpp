// Micro-benchmarks of the remoting hot path, ours next to a baseline:
//   BM_RingPushPop            one command through the shared-memory SPSC ring
//   BM_UnixSocketPairEcho     baseline: the same 64 bytes through a socketpair
//   BM_DecodeCommand          structural decode of one launch record
// Run: build/release/bench/ipc_bench
#include <benchmark/benchmark.h>

#include <vector>

#include "ipc/socket.h"
#include "ipc/spsc_ring.h"
#include "malv/protocol.h"
#include "proto/decoder.h"
#include "proto/encoder.h"

namespace {

using namespace malv;

void BM_RingPushPop(benchmark::State& state) {
  ipc::RingHeader header;
  ipc::initialize_ring_header(&header);
  std::vector<wire::Command> slots(1024);
  ipc::RingProducer<wire::Command> producer(&header, slots.data(), 1024);
  ipc::RingConsumer<wire::Command> consumer(&header, slots.data(), 1024);
  const wire::Command cmd = proto::make_command(wire::Opcode::kNop, 1);
  for (auto _ : state) {
    (void)producer.try_push(std::span(&cmd, 1));
    auto available = consumer.available();
    benchmark::DoNotOptimize(consumer.read(0));
    consumer.pop(available.value());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RingPushPop);

void BM_UnixSocketPairEcho(benchmark::State& state) {
  auto pair = ipc::Socket::unix_pair().value();
  std::byte buffer[64] = {};
  for (auto _ : state) {
    (void)pair.first.write_all(buffer, sizeof(buffer));
    (void)pair.second.read_exact(buffer, sizeof(buffer));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UnixSocketPairEcho);

void BM_DecodeCommand(benchmark::State& state) {
  std::vector<wire::KernelArg> args{proto::buffer_arg(1), proto::buffer_arg(2),
                                    proto::i64_arg(1024)};
  auto records = proto::make_launch(7, 3, 4, args);
  auto extensions = std::as_bytes(std::span(records)).subspan(sizeof(wire::Command));
  for (auto _ : state) {
    benchmark::DoNotOptimize(proto::decode_command(records[0], extensions));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeCommand);

}  // namespace

BENCHMARK_MAIN();
