// The extension's side of a guest connection (python/malv/_malv).
//
// PyConnection owns a libmalv Connection and the one stream the Python
// services use. Every call from Python takes its mutex and releases the GIL
// while it waits for the host (a Connection is used from one thread at a
// time; Python threads may share one). Objects handed out (datasets) hold
// a shared_ptr to it, and register a closer: close() runs every closer,
// which releases that object's host handles while the Connection still
// exists, then ends the session. Using an object after that raises
// malv.Disconnected, never touches freed memory.
//
// A forked child (a DataLoader worker) shares the parent's channel but not
// its bookkeeping: it may not use the connection (malv.FailedPrecondition),
// and what it destroys is dropped without a word to the host, which would
// otherwise see the parent's handles freed behind its back.
#pragma once

#include <pybind11/pybind11.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "device_buffer_capi.h"
#include "malv/connection.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::python {

// Thrown by the extension; turned into the malv.Error subclass of its code
// (malv_module.cpp registers the translation).
class MalvException : public std::exception {
 public:
  explicit MalvException(Error error) : error_(std::move(error)), text_(error_.to_string()) {}
  const Error& error() const { return error_; }
  const char* what() const noexcept override { return text_.c_str(); }

 private:
  Error error_;
  std::string text_;
};

// The value of a Result, or a MalvException carrying its Error.
template <typename T>
T unwrap(Result<T> result) {
  if (!result.ok()) throw MalvException(std::move(result).error());
  return std::move(result).value();
}
inline void unwrap(Status status) {
  if (!status.ok()) throw MalvException(std::move(status).error());
}

// This process's id, without a system call each time (glibc stopped caching
// getpid(), and the torch device asks on every operator): kept by a fork
// handler.
pid_t process_id();

class PyConnection : public std::enable_shared_from_this<PyConnection> {
 public:
  explicit PyConnection(std::unique_ptr<guest::Connection> connection, std::string vm);
  ~PyConnection();

  // Held while the Connection is used (GIL released): one user at a time.
  std::mutex& mutex() { return mutex_; }
  // The live connection and stream; raises malv.Disconnected after close().
  // Call with mutex() held.
  guest::Connection& connection();
  guest::Stream& stream();
  bool closed() const { return connection_ == nullptr; }
  // True in a process forked after the connection was opened.
  bool forked() const { return process_id() != pid_; }
  const std::string& vm() const { return vm_; }

  // Objects that hold host handles register how to release them; the id
  // unregisters (from the object's destructor).
  std::uint64_t add_closer(std::function<void()> closer);
  void remove_closer(std::uint64_t id);
  // Releases every registered object, then ends the session. Idempotent.
  void close();

 private:
  std::mutex mutex_;
  std::unique_ptr<guest::Connection> connection_;
  std::unique_ptr<guest::Stream> stream_;
  pid_t pid_;
  std::string vm_;
  std::uint64_t next_closer_ = 1;
  std::map<std::uint64_t, std::function<void()>> closers_;
};

// The device tensor range a malv._torch._buffer_view capsule names
// (device_buffer_capi.h), valid while the capsule lives; malv.InvalidArgument
// when `capsule` is not one. With the GIL held.
bool is_device_buffer_view(pybind11::handle object);
const DeviceBufferView& device_buffer_view(pybind11::handle capsule);
// malv.InvalidArgument when the view names a buffer of another connection
// (call with the connection's mutex held).
void check_same_connection(const DeviceBufferView& view, const guest::Connection& connection);

// Registers the module's parts (each .cpp file one).
// conn._c_api(): the capsule another extension uses (connection_capi.h).
pybind11::capsule connection_capsule(std::shared_ptr<PyConnection> connection);

void register_connection(pybind11::module_& m);
void register_dataset(pybind11::module_& m);
void register_checkpoint(pybind11::module_& m);

}  // namespace malv::python
