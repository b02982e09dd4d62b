// Feature schemas and per-VM rings of recent vectors (see feature_registry.h).
#include "mlaas/feature_registry.h"

#include <fmt/format.h>

#include <algorithm>

namespace malv::mlaas {

Result<FeatureSchemaId> FeatureRegistry::declare(std::string_view name,
                                                 const std::vector<std::string>& features,
                                                 std::size_t window) {
  if (name.empty()) return Error(ErrorCode::kInvalidArgument, "feature schema name is empty");
  if (features.empty() || features.size() > kMaxFeatures) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("feature schema '{}': 1-{} features, got {}", name, kMaxFeatures,
                             features.size()));
  }
  if (window == 0 || window > kMaxWindow) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("feature schema '{}': window must be 1-{}, got {}", name, kMaxWindow, window));
  }
  std::lock_guard lock(mu_);
  for (Entry& entry : entries_) {
    if (entry.schema.name != name) continue;
    if (entry.schema.features != features) {
      return Error(ErrorCode::kAlreadyExists,
                   fmt::format("feature schema '{}' exists with other features", name));
    }
    if (window > entry.schema.window) {
      entry.schema.window = window;
      entry.windows.clear();  // rings are sized by window; start them again
    }
    return entry.schema.id;
  }
  FeatureSchemaId id{static_cast<std::uint32_t>(entries_.size() + 1)};
  entries_.push_back(Entry{FeatureSchema{id, std::string(name), features, window}, {}});
  return id;
}

Result<FeatureSchema> FeatureRegistry::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  for (const Entry& entry : entries_) {
    if (entry.schema.name == name) return entry.schema;
  }
  return Error(ErrorCode::kNotFound, fmt::format("no feature schema named '{}'", name));
}

Result<FeatureSchema> FeatureRegistry::schema(FeatureSchemaId id) const {
  std::lock_guard lock(mu_);
  MALV_ASSIGN_OR_RETURN(const Entry* entry, entry_locked(id));
  return entry->schema;
}

Result<FeatureRegistry::Entry*> FeatureRegistry::entry_locked(FeatureSchemaId id) {
  if (!id.valid() || id.value() > entries_.size()) {
    return Error(ErrorCode::kNotFound, fmt::format("no feature schema {}", id.value()));
  }
  return &entries_[id.value() - 1];
}

Result<const FeatureRegistry::Entry*> FeatureRegistry::entry_locked(FeatureSchemaId id) const {
  if (!id.valid() || id.value() > entries_.size()) {
    return Error(ErrorCode::kNotFound, fmt::format("no feature schema {}", id.value()));
  }
  return &entries_[id.value() - 1];
}

Status FeatureRegistry::push(FeatureSchemaId id, std::uint64_t vm, std::span<const float> values) {
  std::lock_guard lock(mu_);
  MALV_ASSIGN_OR_RETURN(Entry * entry, entry_locked(id));
  const std::size_t count = entry->schema.features.size();
  if (values.size() != count) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("feature schema '{}' has {} features, got {} values",
                             entry->schema.name, count, values.size()));
  }
  Window& w = entry->windows[vm];
  if (w.ring.empty()) w.ring.resize(entry->schema.window * count);
  std::copy(values.begin(), values.end(),
            w.ring.begin() + static_cast<std::ptrdiff_t>(w.next * count));
  w.next = (w.next + 1) % entry->schema.window;
  w.rows = std::min(w.rows + 1, entry->schema.window);
  return ok_status();
}

Result<std::size_t> FeatureRegistry::read(FeatureSchemaId id, std::uint64_t vm,
                                          std::span<float> out) const {
  std::lock_guard lock(mu_);
  MALV_ASSIGN_OR_RETURN(const Entry* entry, entry_locked(id));
  auto it = entry->windows.find(vm);
  if (it == entry->windows.end()) return std::size_t{0};
  const Window& w = it->second;
  const std::size_t count = entry->schema.features.size();
  const std::size_t window = entry->schema.window;
  const std::size_t rows = std::min(w.rows, out.size() / count);
  // The newest `rows` rows, oldest first: they start `rows` before next.
  std::size_t row = (w.next + window - rows) % window;
  for (std::size_t i = 0; i < rows; ++i) {
    std::copy_n(w.ring.begin() + static_cast<std::ptrdiff_t>(row * count), count,
                out.begin() + static_cast<std::ptrdiff_t>(i * count));
    row = (row + 1) % window;
  }
  return rows;
}

void FeatureRegistry::remove_vm(std::uint64_t vm) {
  std::lock_guard lock(mu_);
  for (Entry& entry : entries_) entry.windows.erase(vm);
}

}  // namespace malv::mlaas
