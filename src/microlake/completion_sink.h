// CompletionSink: where a session's completions go. The shared-memory
// endpoint pushes them into the completion ring; the stream endpoint (TCP,
// vsock) sends them as frames, preceded by the arena bytes the command wrote.
#pragma once

#include "malv/protocol.h"
#include "proto/request.h"

namespace malv::microlake {

class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // Thread-safe; called from the dispatcher and from backend threads. Never
  // blocks on the guest: the endpoint reserved room before the command was
  // taken.
  virtual void post(const wire::Completion& completion, proto::ArenaRange arena_out) = 0;
  // The session owes the guest nothing any more: its last command in
  // flight completed (called after that completion's post, on the thread
  // that completed it). A hint for the endpoint's dispatcher.
  virtual void settled() {}
};

}  // namespace malv::microlake
