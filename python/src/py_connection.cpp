// malv._malv.Connection: connecting (unix, tcp, vsock, ivshmem), ping,
// device info, policies, close. python/malv/__init__.py's connect() picks the
// transport from its arguments and the environment, as `malv guest` does.
#include "py_connection.h"

#include <fmt/format.h>
#include <pthread.h>
#include <pybind11/stl.h>

#include <atomic>

#include "connection_capi.h"
#include "malv/policy_selection.h"

namespace py = pybind11;

namespace malv::python {

namespace {
std::atomic<pid_t> g_process_id{0};
void forget_process_id() { g_process_id.store(0, std::memory_order_relaxed); }
}  // namespace

pid_t process_id() {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, &forget_process_id) == 0;
  }();
  (void)registered;
  pid_t pid = g_process_id.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = ::getpid();
    g_process_id.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

PyConnection::PyConnection(std::unique_ptr<guest::Connection> connection, std::string vm)
    : connection_(std::move(connection)), pid_(process_id()), vm_(std::move(vm)) {}

PyConnection::~PyConnection() {
  std::lock_guard lock(mutex_);
  closers_.clear();  // objects still alive hold a shared_ptr: none are left here
  if (forked()) {
    // The parent's session: leave it to the parent (a deliberate leak).
    (void)stream_.release();
    (void)connection_.release();
    return;
  }
  stream_.reset();
  connection_.reset();
}

guest::Connection& PyConnection::connection() {
  if (connection_ == nullptr) {
    throw MalvException(
        Error(ErrorCode::kDisconnected, fmt::format("the connection of VM '{}' is closed", vm_)));
  }
  if (forked()) {
    throw MalvException(Error(
        ErrorCode::kFailedPrecondition,
        fmt::format("the connection of VM '{}' was opened by process {}; this process ({}) was "
                    "forked from it and may not use it (a DataLoader with num_workers > 0? use "
                    "num_workers=0: the host does the loading)",
                    vm_, pid_, process_id())));
  }
  return *connection_;
}

guest::Stream& PyConnection::stream() {
  guest::Connection& conn = connection();
  if (stream_ == nullptr) {
    stream_ = std::make_unique<guest::Stream>(unwrap(conn.create_stream()));
  }
  return *stream_;
}

std::uint64_t PyConnection::add_closer(std::function<void()> closer) {
  const std::uint64_t id = next_closer_++;
  closers_.emplace(id, std::move(closer));
  return id;
}

void PyConnection::remove_closer(std::uint64_t id) { closers_.erase(id); }

void PyConnection::close() {
  if (connection_ == nullptr) return;
  // Closers release their objects' handles through the connection; they
  // must not remove themselves while the map is walked.
  auto closers = std::move(closers_);
  closers_.clear();
  if (forked()) {  // the parent's session: only forget it here
    (void)stream_.release();
    (void)connection_.release();
    return;
  }
  for (auto& [id, closer] : closers) closer();
  stream_.reset();
  connection_.reset();
}

namespace {

guest::ConnectOptions options_of(const std::string& vm, const std::string& token,
                                 std::uint64_t arena_bytes) {
  return {.vm_name = vm, .credential = token, .arena_bytes = arena_bytes};
}

std::shared_ptr<PyConnection> adopt(Result<std::unique_ptr<guest::Connection>> connection,
                                    const std::string& vm) {
  return std::make_shared<PyConnection>(unwrap(std::move(connection)), vm);
}

}  // namespace

namespace {

// The capsule's payload: the API and what keeps the connection alive.
struct CapsuleHolder {
  ConnectionApi api;
  std::shared_ptr<PyConnection> connection;
};

PyConnection& of(void* context) { return *static_cast<PyConnection*>(context); }

}  // namespace

bool is_device_buffer_view(py::handle object) {
  return PyCapsule_CheckExact(object.ptr()) != 0 &&
         PyCapsule_IsValid(object.ptr(), kDeviceBufferCapsule) != 0;
}

const DeviceBufferView& device_buffer_view(py::handle capsule) {
  if (!is_device_buffer_view(capsule)) {
    throw MalvException(Error(ErrorCode::kInvalidArgument,
                              "expected a device tensor's buffer view (malv._torch._buffer_view)"));
  }
  const auto* view = static_cast<const DeviceBufferView*>(
      PyCapsule_GetPointer(capsule.ptr(), kDeviceBufferCapsule));
  if (view->version != kDeviceBufferViewVersion || view->buffer == nullptr) {
    throw MalvException(Error(ErrorCode::kInvalidArgument,
                              "a device buffer view of another version of the malv package"));
  }
  return *view;
}

void check_same_connection(const DeviceBufferView& view, const guest::Connection& connection) {
  if (view.connection != &connection) {
    throw MalvException(Error(ErrorCode::kInvalidArgument,
                              "a device tensor of another connection: attach this connection to "
                              "the device (malv.torch.device(conn)) or pass conn= the device's"));
  }
}

py::capsule connection_capsule(std::shared_ptr<PyConnection> connection) {
  auto* holder = new CapsuleHolder{};
  holder->connection = std::move(connection);
  holder->api.context = holder->connection.get();
  holder->api.lock = [](void* context, guest::Stream** stream) -> guest::Connection* {
    PyConnection& self = of(context);
    self.mutex().lock();
    try {
      guest::Connection& conn = self.connection();
      if (stream != nullptr) *stream = &self.stream();
      return &conn;
    } catch (...) {
      self.mutex().unlock();
      return nullptr;
    }
  };
  holder->api.unlock = [](void* context) { of(context).mutex().unlock(); };
  holder->api.add_closer = [](void* context, void (*fn)(void*), void* arg) {
    return of(context).add_closer([fn, arg] { fn(arg); });
  };
  holder->api.remove_closer = [](void* context, std::uint64_t id) {
    of(context).remove_closer(id);
  };
  return py::capsule(&holder->api, kConnectionCapsule, [](PyObject* capsule) {
    auto* api = static_cast<ConnectionApi*>(PyCapsule_GetPointer(capsule, kConnectionCapsule));
    delete reinterpret_cast<CapsuleHolder*>(api);  // api is the holder's first member
  });
}

void register_connection(py::module_& m) {
  py::class_<PyConnection, std::shared_ptr<PyConnection>>(
      m, "Connection", "A session with a MaLV-OS host (libmalv's guest::Connection)")
      .def_static(
          "connect_unix",
          [](const std::string& path, const std::string& vm, const std::string& token,
             std::uint64_t arena_bytes) {
            Result<std::unique_ptr<guest::Connection>> c = [&] {
              py::gil_scoped_release release;
              return guest::Connection::connect_unix(path, options_of(vm, token, arena_bytes));
            }();
            if (!c.ok()) {
              throw MalvException(
                  std::move(c).error().with_context(fmt::format("connecting to {}", path)));
            }
            return adopt(std::move(c), vm);
          },
          py::arg("path"), py::arg("vm"), py::arg("token"), py::arg("arena_bytes") = 0)
      .def_static(
          "connect_tcp",
          [](const std::string& host, std::uint16_t port, const std::string& vm,
             const std::string& token, std::uint64_t arena_bytes) {
            Result<std::unique_ptr<guest::Connection>> c = [&] {
              py::gil_scoped_release release;
              return guest::Connection::connect_tcp(host, port, options_of(vm, token, arena_bytes));
            }();
            return adopt(std::move(c), vm);
          },
          py::arg("host"), py::arg("port"), py::arg("vm"), py::arg("token"),
          py::arg("arena_bytes") = 0)
      .def_static(
          "connect_vsock",
          [](std::uint32_t cid, std::uint32_t port, const std::string& vm, const std::string& token,
             std::uint64_t arena_bytes) {
            Result<std::unique_ptr<guest::Connection>> c = [&] {
              py::gil_scoped_release release;
              return guest::Connection::connect_vsock(cid, port,
                                                      options_of(vm, token, arena_bytes));
            }();
            return adopt(std::move(c), vm);
          },
          py::arg("cid"), py::arg("port"), py::arg("vm"), py::arg("token"),
          py::arg("arena_bytes") = 0)
      .def_static(
          "connect_ivshmem",
          [](const std::string& device, const std::string& vm, const std::string& token,
             std::uint64_t arena_bytes) {
            Result<std::unique_ptr<guest::Connection>> c = [&] {
              py::gil_scoped_release release;
              return guest::Connection::connect_ivshmem(device, options_of(vm, token, arena_bytes));
            }();
            return adopt(std::move(c), vm);
          },
          py::arg("device"), py::arg("vm"), py::arg("token"), py::arg("arena_bytes") = 0)
      .def_property_readonly("vm", &PyConnection::vm)
      .def_property_readonly("closed", &PyConnection::closed)
      .def("ping",
           [](PyConnection& self) {
             py::gil_scoped_release release;
             std::lock_guard lock(self.mutex());
             unwrap(self.connection().ping());
           })
      .def("synchronize",
           [](PyConnection& self) {
             py::gil_scoped_release release;
             std::lock_guard lock(self.mutex());
             unwrap(self.connection().synchronize());
           })
      .def("device_info",
           [](PyConnection& self) {
             guest::DeviceInfo info;
             {
               py::gil_scoped_release release;
               std::lock_guard lock(self.mutex());
               info = unwrap(self.connection().device_info());
             }
             py::dict d;
             d["backend"] = info.backend;
             d["name"] = info.name;
             d["total_memory"] = info.total_memory;
             d["free_memory"] = info.free_memory;
             d["compute_units"] = info.compute_units;
             return d;
           })
      .def_property_readonly("arena_bytes",
                             [](PyConnection& self) {
                               std::lock_guard lock(self.mutex());
                               return self.connection().arena_bytes();
                             })
      .def("list_policies",
           [](PyConnection& self) {
             std::vector<guest::PolicyEntry> rows;
             {
               py::gil_scoped_release release;
               std::lock_guard lock(self.mutex());
               rows = unwrap(guest::list_policies(self.connection()));
             }
             py::list out;
             for (const guest::PolicyEntry& row : rows) {
               py::dict d;
               d["policy_class"] = row.policy_class;
               d["name"] = row.name;
               d["baseline"] = row.baseline;
               d["allowed"] = row.allowed;
               d["selected"] = row.selected;
               out.append(d);
             }
             return out;
           })
      .def(
          "select_policy",
          [](PyConnection& self, const std::string& selection) {
            py::gil_scoped_release release;
            std::lock_guard lock(self.mutex());
            unwrap(guest::select_policy(self.connection(), selection));
          },
          py::arg("selection"))
      .def("close",
           [](PyConnection& self) {
             py::gil_scoped_release release;
             std::lock_guard lock(self.mutex());
             self.close();
           })
      .def(
          "_c_api",
          [](std::shared_ptr<PyConnection> self) { return connection_capsule(std::move(self)); },
          "For extensions of this package (malv._torch): a capsule of the C-level view "
          "(python/src/connection_capi.h)")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyConnection& self, py::args) {
        py::gil_scoped_release release;
        std::lock_guard lock(self.mutex());
        self.close();
        return false;
      });
  m.def("ivshmem_device_present", &guest::ivshmem_device_present,
        "True inside a VM that has an ivshmem PCI device");
}

}  // namespace malv::python
