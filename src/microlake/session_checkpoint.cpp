// Session handlers of the checkpoint service (kCheckpointSave/Restore).
// Work in progress: refused until the checkpoint service lands.
#include "microlake/session.h"

namespace malv::microlake {

Status Session::run(const wire::Command&, const proto::CheckpointSaveRequest&) {
  return Error(ErrorCode::kUnimplemented, "this host offers no checkpoint service yet");
}

Status Session::run(const wire::Command&, const proto::CheckpointRestoreRequest&) {
  return Error(ErrorCode::kUnimplemented, "this host offers no checkpoint service yet");
}

}  // namespace malv::microlake
