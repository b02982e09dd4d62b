// Rng: a small seeded pseudo-random generator (SplitMix64) for everything
// that must be reproducible bit for bit: initial weights (nn/) and the order of
// training examples (the guest's own loader and the host's data pipeline). std::shuffle and
// std::uniform_*_distribution are not specified exactly by the standard (libstdc++ and libc++
// differ), so the model would not start from the same parameters everywhere; this does.
//
//   Rng rng(seed);
//   float u = rng.uniform(-limit, limit);
//   std::vector<std::uint32_t> order = shuffled_indices(60000, seed, epoch);
#pragma once

#include <cstdint>
#include <vector>

namespace malv::data {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1), 24 random bits: exactly representable as a float.
  float unit() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float low, float high) { return low + (high - low) * unit(); }
  // In [0, bound) for bound > 0. The modulo bias (below 2^-40 for the
  // bounds used here) is irrelevant; what matters is that the sequence is a
  // pure function of the seed.
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }

 private:
  std::uint64_t state_;
};

// A seed for sub-stream `stream` of `seed` (one per layer, one per epoch).
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  Rng rng(seed ^ (0xD1B54A32D192ED03ull * (stream + 1)));
  return rng.next();
}

// The permutation of [0, count) that epoch `epoch` visits examples in:
// a Fisher-Yates shuffle driven by derive_seed(seed, epoch).
std::vector<std::uint32_t> shuffled_indices(std::uint32_t count, std::uint64_t seed,
                                            std::uint64_t epoch);

}  // namespace malv::data
