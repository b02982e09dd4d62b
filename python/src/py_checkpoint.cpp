// malv._malv.save_checkpoint / restore_checkpoint: the host's checkpoint
// service (libmalv's guest::save_checkpoint / restore_checkpoint) for byte
// blobs. python/malv/checkpoint.py turns a state_dict into blobs and a
// manifest, and back.
//
// The blobs travel through one device buffer of this VM (charged to its
// quota while the call runs): written into it on the connection's stream,
// snapshotted and written to disk by the host (the call returns once the
// file is durable); a restore copies the file's entries into it and reads
// them back into new numpy arrays.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

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

std::uint64_t save(PyConnection& self, const std::string& name,
                   const std::vector<std::pair<std::string, Blob>>& entries,
                   const py::bytes& metadata) {
  struct Piece {
    const std::byte* data;
    std::uint64_t bytes;
    std::uint64_t offset;
  };
  std::vector<Piece> pieces;
  std::uint64_t total = 0;
  for (const auto& [entry, blob] : entries) {
    pieces.push_back({reinterpret_cast<const std::byte*>(blob.data()),
                      static_cast<std::uint64_t>(blob.size()), total});
    total += aligned(static_cast<std::uint64_t>(blob.size()));
  }
  const std::string_view meta = metadata;
  py::gil_scoped_release release;
  std::lock_guard lock(self.mutex());
  guest::Connection& conn = self.connection();
  guest::Stream& stream = self.stream();
  guest::Buffer staging = unwrap(conn.allocate(std::max<std::uint64_t>(total, 1)));
  std::vector<guest::CheckpointItem> items;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].bytes != 0) {
      unwrap(stream.write(staging, pieces[i].offset, std::span(pieces[i].data, pieces[i].bytes)));
    }
    items.push_back({entries[i].first, &staging, pieces[i].offset, pieces[i].bytes});
  }
  Result<std::uint64_t> written = guest::save_checkpoint(
      conn, stream, name, items, std::as_bytes(std::span(meta.data(), meta.size())));
  if (!written.ok()) {
    (void)stream.synchronize();  // the stream error is this call's; report it once, here
    throw MalvException(std::move(written).error());
  }
  return written.value();
}

py::tuple restore(PyConnection& self, const std::string& name,
                  const std::vector<std::pair<std::string, std::uint64_t>>& entries) {
  std::vector<Blob> blobs;
  std::vector<std::uint64_t> offsets;
  std::uint64_t total = 0;
  for (const auto& [entry, bytes] : entries) {
    blobs.emplace_back(static_cast<py::ssize_t>(bytes));
    offsets.push_back(total);
    total += aligned(bytes);
  }
  std::vector<std::byte*> out;
  for (Blob& blob : blobs) out.push_back(reinterpret_cast<std::byte*>(blob.mutable_data()));
  std::vector<std::byte> metadata;
  {
    py::gil_scoped_release release;
    std::lock_guard lock(self.mutex());
    guest::Connection& conn = self.connection();
    guest::Stream& stream = self.stream();
    guest::Buffer staging = unwrap(conn.allocate(std::max<std::uint64_t>(total, 1)));
    std::vector<guest::CheckpointItem> items;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      items.push_back({entries[i].first, &staging, offsets[i], entries[i].second});
    }
    Result<std::vector<std::byte>> restored = guest::restore_checkpoint(conn, stream, name, items);
    if (!restored.ok()) {
      (void)stream.synchronize();  // the stream error is this call's; report it once, here
      throw MalvException(std::move(restored).error());
    }
    metadata = std::move(restored).value();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].second == 0) continue;
      unwrap(stream.read(staging, offsets[i], std::span(out[i], entries[i].second)));
    }
    Status synced = stream.synchronize();
    if (!synced.ok()) {
      throw MalvException(
          std::move(synced).error().with_context(fmt::format("reading back checkpoint {}", name)));
    }
  }
  py::list arrays;
  for (Blob& blob : blobs) arrays.append(std::move(blob));
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(metadata.data()), metadata.size()),
                        arrays);
}

}  // namespace

void register_checkpoint(py::module_& m) {
  m.def("save_checkpoint", &save, py::arg("connection"), py::arg("name"), py::arg("entries"),
        py::arg("metadata"),
        "Saves (entry name, uint8 array) pairs and metadata bytes as checkpoint `name`; "
        "returns the file's size once it is durable");
  m.def("restore_checkpoint", &restore, py::arg("connection"), py::arg("name"), py::arg("entries"),
        "Restores (entry name, bytes) entries of checkpoint `name`: (metadata, [uint8 arrays])");
}

}  // namespace malv::python
