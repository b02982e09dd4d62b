// Session handlers of the data pipeline (kDatasetOpen/Next/Close).
// Work in progress: refused until the data pipeline lands.
#include "microlake/session.h"

namespace malv::microlake {

Status Session::run(const wire::Command&, const proto::DatasetOpenRequest&) {
  return Error(ErrorCode::kUnimplemented, "this host offers no data pipeline yet");
}

Status Session::run(const wire::Command&, const proto::DatasetNextRequest&) {
  return Error(ErrorCode::kUnimplemented, "this host offers no data pipeline yet");
}

Status Session::run(const wire::Command&, const proto::DatasetCloseRequest&) {
  return Error(ErrorCode::kUnimplemented, "this host offers no data pipeline yet");
}

}  // namespace malv::microlake
