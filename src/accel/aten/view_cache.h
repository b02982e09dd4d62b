// Tensor views of a VM's memory, as the ATen executor hands them to
// kernels, kept per worker thread (aten_executor.cpp).
//
//   ViewSpec spec{.data = bytes, .dtype = at::kFloat, .sizes = {4}, .strides = {1}};
//   at::Tensor t = ViewCache::local().get(spec, /*growable=*/false);
//   ... run a kernel on t ...
//   if (!still_views(t, spec)) ViewCache::local().forget(spec, false);
//
// PyTorch builds a TensorImpl and a Storage for every view (about five
// allocations and a microsecond on this host's CPU), and a guest names the
// same few views over and over (a training step's parameters, a loop's
// operands). The cache keeps them per thread, so no lock is taken and no
// tensor crosses threads. A view is one of the bytes its spec names, which
// the executor checked against the calling VM's buffer before the call was
// queued: an entry left from a buffer since freed matches only a spec that
// names the same bytes with the same layout, which it then views correctly.
// Kernels may resize or restride what they write (or, wrongly, what they
// read): the executor compares each view with its spec after every call
// and forgets the ones that changed.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/SmallVector.h>

#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace malv::accel::aten {

// Where a tensor's bytes are in host memory and how it views them.
struct ViewSpec {
  std::byte* data = nullptr;  // the first element
  c10::ScalarType dtype = c10::ScalarType::Float;
  c10::SmallVector<std::int64_t, 5> sizes;
  c10::SmallVector<std::int64_t, 5> strides;  // elements

  std::int64_t numel() const;
  bool same_as(const ViewSpec& other) const;
};

// A new tensor over the spec's bytes. A growable one's storage may be
// resized by a kernel: it then moves to libtorch's CPU allocator and the
// caller copies the result home; the VM's memory is never freed by it.
at::Tensor make_view(const ViewSpec& spec, bool growable);

// True while `tensor` is still the view `spec` describes (same first byte,
// dtype, sizes and strides).
bool still_views(const at::Tensor& tensor, const ViewSpec& spec);

class ViewCache {
 public:
  // The calling thread's cache.
  static ViewCache& local();

  // The cached view, made on first use.
  at::Tensor get(const ViewSpec& spec, bool growable);
  void forget(const ViewSpec& spec, bool growable);
  std::size_t size() const { return entries_.size(); }

  // Views kept per thread; past it the cache starts afresh.
  static constexpr std::size_t kCapacity = 4096;

 private:
  struct Entry {
    ViewSpec spec;
    bool growable = false;
    at::Tensor tensor;
  };
  std::unordered_multimap<std::uint64_t, Entry> entries_;  // by key_of()
};

}  // namespace malv::accel::aten
