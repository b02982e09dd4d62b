// Shared helpers for the ring tests: a 64-byte record that carries its own
// checksum, so a torn or stale read is detected.
#pragma once

#include <cstdint>

namespace malv::ipc::testing {

struct SeqRecord {
  std::uint64_t seq;
  std::uint64_t payload[6];
  std::uint64_t checksum;
};
static_assert(sizeof(SeqRecord) == 64);

inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

inline SeqRecord make_record(std::uint64_t seq) {
  SeqRecord r{};
  r.seq = seq;
  std::uint64_t sum = seq;
  for (int i = 0; i < 6; ++i) {
    r.payload[i] = mix(seq * 7 + static_cast<std::uint64_t>(i));
    sum = mix(sum ^ r.payload[i]);
  }
  r.checksum = sum;
  return r;
}

inline bool record_intact(const SeqRecord& r, std::uint64_t expected_seq) {
  if (r.seq != expected_seq) return false;
  std::uint64_t sum = r.seq;
  for (int i = 0; i < 6; ++i) {
    if (r.payload[i] != mix(r.seq * 7 + static_cast<std::uint64_t>(i))) return false;
    sum = mix(sum ^ r.payload[i]);
  }
  return sum == r.checksum;
}

}  // namespace malv::ipc::testing
