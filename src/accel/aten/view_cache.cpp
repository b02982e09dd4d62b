// Cached tensor views of a VM's memory (see view_cache.h).
#include "accel/aten/view_cache.h"

#include <c10/core/CPUAllocator.h>

#include <algorithm>

namespace malv::accel::aten {
namespace {

void keep_memory(void*) {}  // the VM's buffer is not the storage's to free

std::uint64_t key_of(const ViewSpec& spec, bool growable) {
  // FNV-1a over the spec's words.
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::uint64_t word) { h = (h ^ word) * 0x100000001b3ull; };
  mix(reinterpret_cast<std::uintptr_t>(spec.data));
  mix((static_cast<std::uint64_t>(spec.dtype) << 1) | (growable ? 1 : 0));
  mix(spec.sizes.size());
  for (std::int64_t s : spec.sizes) mix(static_cast<std::uint64_t>(s));
  for (std::int64_t s : spec.strides) mix(static_cast<std::uint64_t>(s));
  return h;
}

}  // namespace

std::int64_t ViewSpec::numel() const {
  std::int64_t n = 1;
  for (std::int64_t s : sizes) n *= s;
  return n;
}

bool ViewSpec::same_as(const ViewSpec& other) const {
  return data == other.data && dtype == other.dtype &&
         std::equal(sizes.begin(), sizes.end(), other.sizes.begin(), other.sizes.end()) &&
         std::equal(strides.begin(), strides.end(), other.strides.begin(), other.strides.end());
}

at::Tensor make_view(const ViewSpec& spec, bool growable) {
  const auto options = at::TensorOptions().dtype(spec.dtype).device(at::kCPU);
  if (!growable) return at::from_blob(spec.data, spec.sizes, spec.strides, options);
  // The bytes the view reaches, as from_blob computes them.
  std::int64_t extent = 1;
  bool empty = false;
  for (std::size_t d = 0; d < spec.sizes.size(); ++d) {
    if (spec.sizes[d] == 0) empty = true;
    extent += (spec.sizes[d] - 1) * spec.strides[d];
  }
  const std::size_t bytes =
      empty ? 0 : static_cast<std::size_t>(extent) * c10::elementSize(spec.dtype);
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes,
                       c10::DataPtr(spec.data, spec.data, &keep_memory, at::kCPU),
                       c10::GetCPUAllocator(), /*resizable=*/true);
  at::Tensor view = at::empty({0}, options);
  view.set_(storage, 0, spec.sizes, spec.strides);
  return view;
}

bool still_views(const at::Tensor& tensor, const ViewSpec& spec) {
  return tensor.data_ptr() == static_cast<void*>(spec.data) && tensor.scalar_type() == spec.dtype &&
         tensor.sizes().equals(c10::IntArrayRef(spec.sizes)) &&
         tensor.strides().equals(c10::IntArrayRef(spec.strides));
}

ViewCache& ViewCache::local() {
  thread_local ViewCache cache;
  return cache;
}

at::Tensor ViewCache::get(const ViewSpec& spec, bool growable) {
  const std::uint64_t key = key_of(spec, growable);
  auto [first, last] = entries_.equal_range(key);
  for (auto it = first; it != last; ++it) {
    if (it->second.growable == growable && it->second.spec.same_as(spec)) return it->second.tensor;
  }
  if (entries_.size() >= kCapacity) entries_.clear();
  at::Tensor view = make_view(spec, growable);
  return entries_.emplace(key, Entry{spec, growable, std::move(view)})->second.tensor;
}

void ViewCache::forget(const ViewSpec& spec, bool growable) {
  auto [first, last] = entries_.equal_range(key_of(spec, growable));
  for (auto it = first; it != last; ++it) {
    if (it->second.growable == growable && it->second.spec.same_as(spec)) {
      entries_.erase(it);
      return;
    }
  }
}

}  // namespace malv::accel::aten
