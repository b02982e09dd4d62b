// The ATen executor's per-thread cache of tensor views (view_cache.h): the
// same spec gives the same tensor, any difference in bytes, dtype, sizes,
// strides or growability another; a growable view's storage can grow (and
// then no longer views its bytes), a plain one's cannot; forget() and a
// full cache drop views; each thread has its own.
#include "accel/aten/view_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace malv::accel::aten {
namespace {

ViewSpec spec_of(std::vector<float>& bytes, std::vector<std::int64_t> sizes,
                 std::vector<std::int64_t> strides, std::size_t first = 0) {
  ViewSpec spec;
  spec.data = reinterpret_cast<std::byte*>(bytes.data() + first);
  spec.dtype = at::kFloat;
  spec.sizes.assign(sizes.begin(), sizes.end());
  spec.strides.assign(strides.begin(), strides.end());
  return spec;
}

TEST(ViewCacheTest, TheSameSpecGivesTheSameTensorAndAnyDifferenceAnother) {
  std::vector<float> memory{1, 2, 3, 4, 5, 6};
  ViewCache& cache = ViewCache::local();
  const ViewSpec spec = spec_of(memory, {2, 3}, {3, 1});
  const at::Tensor first = cache.get(spec, false);
  EXPECT_EQ(first.data_ptr(), memory.data());
  EXPECT_EQ(first.sizes(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(cache.get(spec, false).unsafeGetTensorImpl(), first.unsafeGetTensorImpl());

  const std::vector<ViewSpec> others{spec_of(memory, {3, 2}, {1, 3}),
                                     spec_of(memory, {2, 3}, {3, 1}, 1), spec_of(memory, {6}, {1})};
  for (const ViewSpec& other : others) {
    EXPECT_NE(cache.get(other, false).unsafeGetTensorImpl(), first.unsafeGetTensorImpl());
  }
  ViewSpec ints = spec;
  ints.dtype = at::kInt;
  EXPECT_NE(cache.get(ints, false).unsafeGetTensorImpl(), first.unsafeGetTensorImpl());
  EXPECT_NE(cache.get(spec, true).unsafeGetTensorImpl(), first.unsafeGetTensorImpl());
  // It views the bytes, not a copy: a write shows through.
  memory[4] = 50;
  EXPECT_EQ(cache.get(spec, false)[1][1].item<float>(), 50);

  cache.forget(spec, false);
  EXPECT_NE(cache.get(spec, false).unsafeGetTensorImpl(), first.unsafeGetTensorImpl());
}

TEST(ViewCacheTest, AGrowableViewsStorageGrowsAwayFromTheBytesAPlainOneRefuses) {
  std::vector<float> memory{1, 2, 3, 4};
  const ViewSpec spec = spec_of(memory, {2}, {1});
  at::Tensor plain = make_view(spec, false);
  EXPECT_THROW(plain.resize_({8}), c10::Error);

  at::Tensor growable = make_view(spec, true);
  EXPECT_TRUE(still_views(growable, spec));
  growable.resize_({2});  // the same size: stays
  EXPECT_TRUE(still_views(growable, spec));
  growable.resize_({8});
  EXPECT_FALSE(still_views(growable, spec));
  EXPECT_NE(growable.data_ptr(), memory.data());
  EXPECT_EQ(growable[1].item<float>(), 2);              // its bytes came along
  EXPECT_EQ(memory, (std::vector<float>{1, 2, 3, 4}));  // and were never freed or moved

  at::Tensor restrided = make_view(spec_of(memory, {2, 2}, {2, 1}), true);
  restrided.as_strided_({2, 2}, {1, 2});
  EXPECT_FALSE(still_views(restrided, spec_of(memory, {2, 2}, {2, 1})));
}

TEST(ViewCacheTest, AFullCacheStartsAfreshAndEachThreadHasItsOwn) {
  std::vector<float> memory(ViewCache::kCapacity + 2, 0);
  ViewCache& cache = ViewCache::local();
  for (std::size_t i = 0; i <= ViewCache::kCapacity; ++i) {
    (void)cache.get(spec_of(memory, {1}, {1}, i), false);
  }
  EXPECT_LE(cache.size(), ViewCache::kCapacity);
  EXPECT_GE(cache.size(), 1u);

  const ViewSpec spec = spec_of(memory, {2}, {1});
  const at::Tensor here = cache.get(spec, false);
  const c10::TensorImpl* there = nullptr;
  std::thread other([&] { there = ViewCache::local().get(spec, false).unsafeGetTensorImpl(); });
  other.join();
  EXPECT_NE(there, here.unsafeGetTensorImpl());
}

}  // namespace
}  // namespace malv::accel::aten
