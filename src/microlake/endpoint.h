// Endpoint: the host end of one guest's channel. It owns the transport
// (shared-memory rings or a stream socket) and the Session behind it, and
// runs the session's dispatcher loop on the calling thread until the guest
// goes away or stop() is called.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "microlake/session.h"

namespace malv::microlake {

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Dispatches commands until the guest disconnects, breaks the protocol or
  // stop() is called. On return, the session and all it held are released.
  virtual void run() = 0;
  // Asks run() to return soon; safe from any thread.
  virtual void stop() = 0;
  virtual const std::string& vm_name() const = 0;
};

// How long a dispatcher spins on an empty ring before sleeping on the
// doorbell (yielding its core between polls while its guest's work runs),
// and how often a sleeping one checks that its guest still lives.
inline constexpr std::chrono::microseconds kDispatcherSpin{50};
inline constexpr std::chrono::milliseconds kLivenessCheck{20};

}  // namespace malv::microlake
