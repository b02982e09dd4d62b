#include "malv/error.h"

#include <fmt/format.h>

#include <cstring>

namespace malv {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kOutOfRange: return "out_of_range";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kStaleHandle: return "stale_handle";
    case ErrorCode::kWrongHandleType: return "wrong_handle_type";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kUnimplemented: return "unimplemented";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline_exceeded";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kAborted: return "aborted";
    case ErrorCode::kDeviceReset: return "device_reset";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kDataLoss: return "data_loss";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kDisconnected: return "disconnected";
  }
  return "unknown";
}

bool is_retryable(ErrorCode code) {
  return code == ErrorCode::kResourceExhausted || code == ErrorCode::kUnavailable ||
         code == ErrorCode::kDeadlineExceeded;
}

Error&& Error::with_context(std::string context) && {
  context_.push_back(std::move(context));
  return std::move(*this);
}

Error& Error::with_context(std::string context) & {
  context_.push_back(std::move(context));
  return *this;
}

std::string Error::to_string() const {
  std::string out = fmt::format("{}: {}", error_code_name(code_), message_);
  for (const auto& line : context_) out += fmt::format(" (in: {})", line);
  return out;
}

Error errno_error(std::string_view what, int errno_value) {
  ErrorCode code = ErrorCode::kIo;
  switch (errno_value) {
    case EAGAIN: code = ErrorCode::kUnavailable; break;
    case ENOENT: code = ErrorCode::kNotFound; break;
    case EACCES:
    case EPERM: code = ErrorCode::kPermissionDenied; break;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE: code = ErrorCode::kResourceExhausted; break;
    case EINVAL: code = ErrorCode::kInvalidArgument; break;
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN: code = ErrorCode::kDisconnected; break;
    case ETIMEDOUT: code = ErrorCode::kDeadlineExceeded; break;
    case EEXIST: code = ErrorCode::kAlreadyExists; break;
    default: break;
  }
  return Error(code, fmt::format("{}: {}", what, std::strerror(errno_value)));
}

}  // namespace malv
