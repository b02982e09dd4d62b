// StrongId<Tag, Rep>: an integer id that cannot be mixed up with another kind.
//
// A BufferId cannot be passed where a StreamId is meant, and neither converts
// silently to an integer. Raw integers appear only at the wire (proto/).
//
//   struct VmTag {};
//   using VmId = StrongId<VmTag>;
//   VmId vm{3};
//   std::unordered_map<VmId, Vm> vms;  // hashable
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace malv {

template <typename Tag, typename Rep = std::uint64_t>
class StrongId {
 public:
  using rep_type = Rep;

  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep value) : value_(value) {}

  constexpr Rep value() const { return value_; }
  constexpr bool valid() const { return value_ != Rep{}; }

  friend constexpr auto operator<=>(StrongId, StrongId) = default;

 private:
  Rep value_{};  // zero is "no id"
};

}  // namespace malv

template <typename Tag, typename Rep>
struct std::hash<malv::StrongId<Tag, Rep>> {
  std::size_t operator()(malv::StrongId<Tag, Rep> id) const noexcept {
    return std::hash<Rep>{}(id.value());
  }
};
