// Result<T>: a value or an Error, the one error idiom of MaLV-OS.
//
// Fallible functions return [[nodiscard]] Result<T>; nothing throws across
// component edges. MALV_TRY and MALV_ASSIGN_OR_RETURN propagate errors in
// standard C++ (no statement-expression extension):
//
//   Result<Buffer> open_buffer(std::size_t size) {
//     MALV_TRY(check_size(size));                       // Result<void>
//     MALV_ASSIGN_OR_RETURN(auto mem, allocate(size));  // Result<Memory>
//     return Buffer(std::move(mem));
//   }
#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "malv/error.h"

namespace malv {

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::decay_t<T>, Error>, "Result<Error> is not meaningful");

 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit
  template <typename U>
  requires(std::is_convertible_v<U&&, T> && !std::is_same_v<std::decay_t<U>, T> &&
           !std::is_same_v<std::decay_t<U>, Error>) Result(U&& value)
      : state_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    check(true);
    return std::get<0>(state_);
  }
  const T& value() const& {
    check(true);
    return std::get<0>(state_);
  }
  T&& value() && {
    check(true);
    return std::move(std::get<0>(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    check(false);
    return std::get<1>(state_);
  }
  Error&& error() && {
    check(false);
    return std::move(std::get<1>(state_));
  }

  T value_or(T fallback) && { return ok() ? std::move(std::get<0>(state_)) : std::move(fallback); }

 private:
  // Reading the value of a failed Result (or the error of a good one) is a
  // bug in the caller; stop at once rather than read garbage.
  void check(bool want_value) const {
    if (ok() != want_value) std::abort();
  }

  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  void value() const {
    if (!ok()) std::abort();
  }
  const Error& error() const& {
    if (ok()) std::abort();
    return *error_;
  }
  Error&& error() && {
    if (ok()) std::abort();
    return std::move(*error_);
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace malv

#define MALV_CONCAT_INNER(a, b) a##b
#define MALV_CONCAT(a, b) MALV_CONCAT_INNER(a, b)

// Evaluates expr (a Result); returns its Error from the enclosing function on failure.
#define MALV_TRY(expr)                            \
  do {                                            \
    auto&& malv_try_result_ = (expr);             \
    if (!malv_try_result_.ok()) {                 \
      return std::move(malv_try_result_).error(); \
    }                                             \
  } while (false)

// Like MALV_TRY, but adds a context line to the error on the way out.
#define MALV_TRY_CONTEXT(expr, context)                                 \
  do {                                                                  \
    auto&& malv_try_result_ = (expr);                                   \
    if (!malv_try_result_.ok()) {                                       \
      return std::move(malv_try_result_).error().with_context(context); \
    }                                                                   \
  } while (false)

// Declares or assigns lhs from a Result's value, or returns its Error.
#define MALV_ASSIGN_OR_RETURN(lhs, expr) \
  MALV_ASSIGN_OR_RETURN_IMPL(MALV_CONCAT(malv_result_, __LINE__), lhs, expr)
#define MALV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) {                                 \
    return std::move(tmp).error();                 \
  }                                                \
  lhs = std::move(tmp).value()
