// malv._torch: the `malv` torch device's extension (device_ops.cpp,
// device_state.cpp), loaded by `import malv.torch` only, so that
// `import malv` never pays for libtorch. Its kernels register with the
// dispatcher when it loads; Python attaches a connection to it.
#include <c10/core/Allocator.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>

#include "connection_capi.h"
#include "device_buffer_capi.h"
#include "device_state.h"
#include "malv/aten.h"

namespace py = pybind11;

namespace malv::torch_device {
c10::Allocator* device_allocator();
namespace {

// What a capsule of _buffer_view holds: the view, and the tensor it is of.
struct BufferViewHolder {
  malv::python::DeviceBufferView view;  // first: the capsule's pointer
  PyObject* tensor = nullptr;           // a strong reference
};

// The capsule of the `bytes` bytes at `address` (a contiguous device
// tensor's data_ptr()), holding `tensor` alive (device_buffer_capi.h).
py::capsule buffer_view(std::uintptr_t address, std::uint64_t bytes, py::object tensor) {
  auto holder = std::make_unique<BufferViewHolder>();
  {
    py::gil_scoped_release release;
    Session session;  // the connection the buffer must belong to
    const DeviceSpan span = DeviceState::get().locate(reinterpret_cast<const void*>(address));
    TORCH_CHECK(span.offset + bytes <= span.bytes, "malv: a tensor of ", bytes, " bytes at byte ",
                span.offset, " of a device buffer of ", span.bytes);
    holder->view.connection = &session.connection();
    holder->view.buffer = span.object;
    holder->view.offset = span.offset;
    holder->view.bytes = bytes;
  }
  holder->tensor = tensor.release().ptr();
  py::capsule capsule(&holder->view, malv::python::kDeviceBufferCapsule, [](PyObject* self) {
    auto* view = static_cast<malv::python::DeviceBufferView*>(
        PyCapsule_GetPointer(self, malv::python::kDeviceBufferCapsule));
    auto* gone = reinterpret_cast<BufferViewHolder*>(view);  // view is its first member
    Py_XDECREF(gone->tensor);
    delete gone;
  });
  (void)holder.release();
  return capsule;
}

}  // namespace

}  // namespace malv::torch_device

PYBIND11_MODULE(_torch, m) {
  using namespace malv::torch_device;
  m.doc() = "The malv torch device (PrivateUse1); use malv.torch";
  c10::SetAllocator(c10::DeviceType::PrivateUse1, device_allocator());
  m.def(
      "_attach",
      [](py::capsule capsule) {
        auto* api = static_cast<const malv::python::ConnectionApi*>(
            PyCapsule_GetPointer(capsule.ptr(), malv::python::kConnectionCapsule));
        if (api == nullptr) throw py::error_already_set();
        // The capsule keeps the connection alive as long as the device uses it.
        static auto* held = new py::object();
        DeviceState::get().attach(api);
        *held = capsule;
      },
      "Attaches a connection (its _c_api() capsule) to the device");
  // Without the GIL, as everything that takes the connection's lock: no
  // thread may hold the GIL and wait for the lock while another holds the
  // lock and waits for the GIL (raise_quota_exceeded takes it, lock released).
  m.def(
      "synchronize",
      [] {
        Session session;
        const malv::Status synced = session.stream().synchronize();
        if (!synced.ok()) throw std::runtime_error("malv: " + synced.error().to_string());
      },
      "Waits for everything queued on the device", py::call_guard<py::gil_scoped_release>());
  m.def(
      "empty_cache", [] { DeviceState::get().empty_cache(); },
      "Gives the device memory PyTorch freed and the device kept for reuse back to the host",
      py::call_guard<py::gil_scoped_release>());
  m.def("_buffer_view", &buffer_view, py::arg("address"), py::arg("bytes"), py::arg("tensor"),
        "For the package's host services: a capsule naming the device buffer range of a "
        "contiguous device tensor (python/src/device_buffer_capi.h)");
  m.def(
      "stats",
      [] {
        const DeviceState& state = DeviceState::get();
        // Operators libmalv holds for the next batch (the flusher sends them
        // once the batch in flight completes), and the batches the
        // connection sent; 0 with no connection.
        std::uint32_t held = 0;
        std::uint64_t batches = 0;
        if (const malv::python::ConnectionApi* api = state.api()) {
          py::gil_scoped_release release;
          malv::guest::Stream* stream = nullptr;
          if (malv::guest::Connection* conn = api->lock(api->context, &stream)) {
            held = malv::guest::aten_held(*conn);
            batches = malv::guest::aten_batches_sent(*conn);
            api->unlock(api->context);
          }
        }
        py::dict out;
        out["operators_held"] = held;
        out["buffers"] = state.buffers_live();
        out["bytes"] = state.bytes_live();
        out["operators_sent"] = state.operators_sent();
        out["batches_sent"] = batches;
        out["operators_in_guest"] = state.operators_in_guest();
        out["cached_bytes"] = state.cached_bytes();
        return out;
      },
      "Device memory held and operators sent by this process");
}
