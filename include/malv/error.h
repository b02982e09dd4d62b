// Error: what went wrong, and what the caller should do about it.
//
// An Error carries a code chosen by what the caller should do next (fix the
// input, retry later, free something, give up), a human-readable message,
// and a chain of context lines added as the error travels up the stack:
//
//   return Error(ErrorCode::kInvalidArgument, "offset past end of buffer")
//       .with_context("write to buffer 7");
//
// Codes are stable numbers: the wire protocol carries them as status codes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace malv {

// Grouped by the caller's next step. Values are part of the wire protocol.
enum class ErrorCode : std::uint16_t {
  kOk = 0,
  // Fix the input and try again.
  kInvalidArgument = 1,   // malformed or out-of-range value
  kOutOfRange = 2,        // offset/length past the end of an object
  kNotFound = 3,          // named thing does not exist
  kAlreadyExists = 4,     // name taken
  kStaleHandle = 5,       // handle was freed, or belongs to another session
  kWrongHandleType = 6,   // handle names an object of another type
  kPermissionDenied = 7,  // handle lacks the right, or admin forbids it
  kUnauthenticated = 8,   // credential missing or wrong
  kUnimplemented = 9,     // unknown opcode, unsupported version or feature
  // Free something or wait, then retry.
  kResourceExhausted = 20,  // quota or capacity reached
  kUnavailable = 21,        // transient: peer busy, ring full, try again
  kDeadlineExceeded = 22,   // took too long
  // The object is in the wrong state for this request.
  kFailedPrecondition = 30,
  kAborted = 31,      // cancelled because an earlier command failed
  kDeviceReset = 32,  // the accelerator was reset; objects are gone
  // Give up: a bug, lost data or a broken peer.
  kInternal = 40,
  kDataLoss = 41,
  kIo = 42,
  kDisconnected = 43,
};

// Stable lowercase name of a code ("invalid_argument").
std::string_view error_code_name(ErrorCode code);

// True for codes where retrying the same request later can succeed.
bool is_retryable(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::vector<std::string>& context() const { return context_; }

  // Adds an outer context line ("while loading module foo"); returns *this
  // so it chains in a return statement.
  Error&& with_context(std::string context) &&;
  Error& with_context(std::string context) &;

  // "invalid_argument: offset past end (in: write to buffer 7; in: ...)"
  std::string to_string() const;

 private:
  ErrorCode code_;
  std::string message_;
  std::vector<std::string> context_;  // innermost first
};

// Errno value to an Error with the call that failed: errno_error("mmap", errno).
Error errno_error(std::string_view what, int errno_value);

}  // namespace malv
