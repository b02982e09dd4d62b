// The C-level view of a malv.Connection that another extension of the
// package uses (the torch device, malv._torch): `conn._c_api()` returns a
// capsule named kConnectionCapsule holding a ConnectionApi. The extension
// then uses the same session as Python does, under the same lock, and the
// capsule keeps the connection object alive.
//
//   guest::Stream* stream = nullptr;
//   guest::Connection* conn = api->lock(api->context, &stream);  // nullptr: closed
//   ... use conn / stream ...
//   api->unlock(api->context);
#pragma once

#include <cstdint>

namespace malv::guest {
class Connection;
class Stream;
}  // namespace malv::guest

namespace malv::python {

inline constexpr const char* kConnectionCapsule = "malv._malv.ConnectionApi";
inline constexpr std::uint32_t kConnectionApiVersion = 1;

struct ConnectionApi {
  std::uint32_t version = kConnectionApiVersion;
  void* context = nullptr;
  // Takes the connection's lock: the connection and its stream, or nullptr
  // (the lock not held) when it is closed or this process was forked.
  guest::Connection* (*lock)(void* context, guest::Stream** stream) = nullptr;
  void (*unlock)(void* context) = nullptr;
  // With the lock held: `fn(arg)` runs (lock held) when the connection
  // closes, before its session ends; returns an id for remove_closer.
  std::uint64_t (*add_closer)(void* context, void (*fn)(void*), void* arg) = nullptr;
  void (*remove_closer)(void* context, std::uint64_t id) = nullptr;
};

}  // namespace malv::python
