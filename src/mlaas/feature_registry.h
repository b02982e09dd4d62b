// FeatureRegistry: named feature schemas and, per VM, a bounded window of
// the most recent feature vectors of each schema.
//
// A module (through the host services) or the host declares a schema once
// (names and window length); the host captures vectors as work happens
// (push); a policy reads a VM's window when it scores a batch. Memory is
// bounded: window * count floats per (schema, VM), in a ring that
// overwrites the oldest vector.
//
//   FeatureSchemaId id = features.declare("gpu_cmd", {"flops", "bytes"}, 64).value();
//   features.push(id, vm_id, std::array{1e9f, 4e6f}).value();
//   std::vector<float> rows(64 * 2);
//   std::size_t n = features.read(id, vm_id, rows).value();  // oldest first
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/strong_id.h"
#include "malv/result.h"

namespace malv::mlaas {

struct FeatureSchemaTag {};
using FeatureSchemaId = StrongId<FeatureSchemaTag, std::uint32_t>;

struct FeatureSchema {
  FeatureSchemaId id;
  std::string name;
  std::vector<std::string> features;
  std::size_t window = 0;
};

class FeatureRegistry {
 public:
  static constexpr std::size_t kMaxFeatures = 1024;
  static constexpr std::size_t kMaxWindow = 65536;

  // Declares a schema; the same name with the same feature names returns the
  // existing id (window: the larger of the two is kept), other names fail.
  [[nodiscard]] Result<FeatureSchemaId> declare(std::string_view name,
                                                const std::vector<std::string>& features,
                                                std::size_t window);
  [[nodiscard]] Result<FeatureSchema> find(std::string_view name) const;
  [[nodiscard]] Result<FeatureSchema> schema(FeatureSchemaId id) const;

  // Appends one vector of exactly the schema's feature count.
  [[nodiscard]] Status push(FeatureSchemaId id, std::uint64_t vm, std::span<const float> values);
  // Copies the VM's most recent vectors, oldest first, as many as fit in
  // out (whole rows); returns the number of rows copied.
  [[nodiscard]] Result<std::size_t> read(FeatureSchemaId id, std::uint64_t vm,
                                         std::span<float> out) const;
  // Drops every window of the VM.
  void remove_vm(std::uint64_t vm);

 private:
  struct Window {
    std::vector<float> ring;  // window * count floats
    std::size_t next = 0;     // row the next push writes
    std::size_t rows = 0;     // valid rows, <= window
  };
  struct Entry {
    FeatureSchema schema;
    std::map<std::uint64_t, Window> windows;
  };
  Result<Entry*> entry_locked(FeatureSchemaId id);
  Result<const Entry*> entry_locked(FeatureSchemaId id) const;

  mutable std::mutex mu_;
  std::vector<Entry> entries_;  // index = id - 1
};

}  // namespace malv::mlaas
