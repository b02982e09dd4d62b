// malv._malv: the extension module of the `malv` Python package (pybind11
// over libmalv's public API; docs/python.md). The pure-Python modules in
// python/malv/ build the user-facing API on it.
//
// Errors: every libmalv Error becomes an instance of the malv.Error
// subclass for its code, which python/malv/errors.py registers with
// _set_error_classes() when the package is imported; each carries the code's
// name (.code), its number (.code_value), the message and the context lines.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "malv/error.h"
#include "py_connection.h"

namespace py = pybind11;

namespace malv::python {
namespace {

// code number -> Python class; set once at import (the GIL guards it). A
// heap object never destroyed: the interpreter may outlive static
// destructors' order.
py::dict& error_classes() {
  static auto* classes = new py::dict();
  return *classes;
}

void raise(const Error& error) {
  const auto value = static_cast<std::uint16_t>(error.code());
  py::object cls = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
  py::dict& classes = error_classes();
  if (classes.contains(py::int_(value))) {
    cls = classes[py::int_(value)];
  } else if (classes.contains(py::int_(-1))) {
    cls = classes[py::int_(-1)];  // malv.Error: a code this package does not know
  }
  py::object instance =
      cls(error.message(), std::string(error_code_name(error.code())), value, error.context());
  PyErr_SetObject(cls.ptr(), instance.ptr());
}

}  // namespace
}  // namespace malv::python

PYBIND11_MODULE(_malv, m) {
  using namespace malv::python;
  m.doc() = "MaLV-OS guest library (libmalv) for Python; use the `malv` package";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const MalvException& e) {
      raise(e.error());
    }
  });
  m.def(
      "_set_error_classes", [](py::dict classes) { error_classes() = std::move(classes); },
      "Registers {code number: exception class} (-1: the base class)");
  m.def("error_codes", [] {
    py::dict codes;
    for (int value = 1; value < 64; ++value) {
      const std::string_view name = malv::error_code_name(static_cast<malv::ErrorCode>(value));
      if (!name.empty() && name != "unknown") codes[py::int_(value)] = std::string(name);
    }
    return codes;
  });
  register_connection(m);
  register_dataset(m);
  register_checkpoint(m);
}
