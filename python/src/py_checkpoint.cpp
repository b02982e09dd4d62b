// malv._malv.save_checkpoint / restore_checkpoint: the host's checkpoint
// service (libmalv's guest::save_checkpoint / restore_checkpoint) for byte
// blobs. python/malv/checkpoint.py turns a state_dict into blobs and a
// manifest, and back.
//
// The blobs travel through one device buffer of this VM (charged to its
// quota while the call runs): written into it on the connection's stream,
// snapshotted and written to disk by the host (the call returns once the
// file is durable); a restore copies the file's entries into it and reads
// them back into new numpy arrays. An entry may instead name a device
// tensor (a malv._torch._buffer_view capsule): the host saves it from, or
// restores it into, the tensor's own buffer, and its bytes never cross to
// the guest.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "malv/checkpoint.h"
#include "py_connection.h"

namespace py = pybind11;

namespace malv::python {
namespace {

constexpr std::uint64_t kAlignment = 256;

std::uint64_t aligned(std::uint64_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

using Blob = py::array_t<std::uint8_t, py::array::c_style>;

// Each entry's value: a uint8 array (its bytes go through the staging
// buffer) or a device buffer view (the host reads or writes it in place).
struct Piece {
  std::byte* data = nullptr;  // a blob's bytes, or nullptr for a device view
  std::uint64_t bytes = 0;
  std::uint64_t offset = 0;                  // in the staging buffer
  const DeviceBufferView* device = nullptr;  // the view (its capsule is the caller's)
};

// Lays out the staging buffer: every blob at an aligned offset.
std::uint64_t place(std::vector<Piece>& pieces) {
  std::uint64_t total = 0;
  for (Piece& piece : pieces) {
    if (piece.device != nullptr) continue;
    piece.offset = total;
    total += aligned(piece.bytes);
  }
  return total;
}

// The checkpoint items of `pieces`, with the connection's mutex held.
std::vector<guest::CheckpointItem> items_of(const std::vector<std::string>& names,
                                            const std::vector<Piece>& pieces,
                                            const guest::Buffer& staging,
                                            const guest::Connection& conn) {
  std::vector<guest::CheckpointItem> items;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].device != nullptr) {
      check_same_connection(*pieces[i].device, conn);
      items.push_back(
          {names[i], pieces[i].device->buffer, pieces[i].device->offset, pieces[i].bytes});
    } else {
      items.push_back({names[i], &staging, pieces[i].offset, pieces[i].bytes});
    }
  }
  return items;
}

std::uint64_t save(PyConnection& self, const std::string& name,
                   const std::vector<std::pair<std::string, py::object>>& entries,
                   const py::bytes& metadata) {
  std::vector<std::string> names;
  std::vector<Blob> blobs;  // keeps the converted arrays alive
  std::vector<Piece> pieces;
  for (const auto& [entry, value] : entries) {
    names.push_back(entry);
    if (is_device_buffer_view(value)) {
      const DeviceBufferView& view = device_buffer_view(value);
      pieces.push_back({.bytes = view.bytes, .device = &view});
      continue;
    }
    const Blob& blob = blobs.emplace_back(value.cast<Blob>());
    // Only read from (the array may be read-only).
    pieces.push_back(
        {.data = const_cast<std::byte*>(reinterpret_cast<const std::byte*>(blob.data())),
         .bytes = static_cast<std::uint64_t>(blob.size())});
  }
  const std::uint64_t total = place(pieces);
  const std::string_view meta = metadata;
  py::gil_scoped_release release;
  std::lock_guard lock(self.mutex());
  guest::Connection& conn = self.connection();
  guest::Stream& stream = self.stream();
  guest::Buffer staging = unwrap(conn.allocate(std::max<std::uint64_t>(total, 1)));
  const std::vector<guest::CheckpointItem> items = items_of(names, pieces, staging, conn);
  for (const Piece& piece : pieces) {
    if (piece.device != nullptr || piece.bytes == 0) continue;
    unwrap(
        stream.write(staging, piece.offset, std::span<const std::byte>(piece.data, piece.bytes)));
  }
  Result<std::uint64_t> written = guest::save_checkpoint(
      conn, stream, name, items, std::as_bytes(std::span(meta.data(), meta.size())));
  if (!written.ok()) {
    (void)stream.synchronize();  // the stream error is this call's; report it once, here
    throw MalvException(std::move(written).error());
  }
  return written.value();
}

// Entries: (name, bytes) restored into a new uint8 array, or (name, device
// buffer view) restored into that device tensor (None in the result).
py::tuple restore(PyConnection& self, const std::string& name,
                  const std::vector<std::pair<std::string, py::object>>& entries) {
  std::vector<std::string> names;
  std::vector<std::optional<Blob>> blobs;
  std::vector<Piece> pieces;
  for (const auto& [entry, target] : entries) {
    names.push_back(entry);
    if (is_device_buffer_view(target)) {
      const DeviceBufferView& view = device_buffer_view(target);
      blobs.emplace_back();
      pieces.push_back({.bytes = view.bytes, .device = &view});
      continue;
    }
    const auto bytes = target.cast<std::uint64_t>();
    Blob& blob = blobs.emplace_back(Blob(static_cast<py::ssize_t>(bytes))).value();
    pieces.push_back({.data = reinterpret_cast<std::byte*>(blob.mutable_data()), .bytes = bytes});
  }
  const std::uint64_t total = place(pieces);
  std::vector<std::byte> metadata;
  {
    py::gil_scoped_release release;
    std::lock_guard lock(self.mutex());
    guest::Connection& conn = self.connection();
    guest::Stream& stream = self.stream();
    guest::Buffer staging = unwrap(conn.allocate(std::max<std::uint64_t>(total, 1)));
    const std::vector<guest::CheckpointItem> items = items_of(names, pieces, staging, conn);
    Result<std::vector<std::byte>> restored = guest::restore_checkpoint(conn, stream, name, items);
    if (!restored.ok()) {
      (void)stream.synchronize();  // the stream error is this call's; report it once, here
      throw MalvException(std::move(restored).error());
    }
    metadata = std::move(restored).value();
    for (const Piece& piece : pieces) {
      if (piece.device != nullptr || piece.bytes == 0) continue;
      unwrap(stream.read(staging, piece.offset, std::span(piece.data, piece.bytes)));
    }
    Status synced = stream.synchronize();
    if (!synced.ok()) {
      throw MalvException(
          std::move(synced).error().with_context(fmt::format("reading back checkpoint {}", name)));
    }
  }
  py::list arrays;
  for (std::optional<Blob>& blob : blobs) {
    if (blob) {
      arrays.append(std::move(*blob));
    } else {
      arrays.append(py::none());
    }
  }
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(metadata.data()), metadata.size()),
                        arrays);
}

}  // namespace

void register_checkpoint(py::module_& m) {
  m.def("save_checkpoint", &save, py::arg("connection"), py::arg("name"), py::arg("entries"),
        py::arg("metadata"),
        "Saves (entry name, uint8 array or device buffer view) pairs and metadata bytes as "
        "checkpoint `name`; "
        "returns the file's size once it is durable");
  m.def("restore_checkpoint", &restore, py::arg("connection"), py::arg("name"), py::arg("entries"),
        "Restores (entry name, bytes or device buffer view) entries of checkpoint `name`: "
        "(metadata, [uint8 array, or None for a device view])");
}

}  // namespace malv::python
