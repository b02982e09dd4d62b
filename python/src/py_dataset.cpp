// malv._malv.Dataset: the host's data pipeline (libmalv's guest::HostDataset)
// as numpy batches. python/malv/data.py wraps it as malv.data.HostDataset.
//
// Each batch is copied once in the guest: the host stages it in device
// memory and copies it into this dataset's two device buffers in stream
// order; the read lands it, through the channel's arena, in the numpy arrays
// returned (a CPU tensor made with torch.from_numpy shares that memory).
// next_into() instead has the host copy it into two device tensors of the
// malv torch device: nothing crosses to the guest.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>

#include "malv/dataset.h"
#include "py_connection.h"

namespace py = pybind11;

namespace malv::python {
namespace {

class PyDataset {
 public:
  PyDataset(std::shared_ptr<PyConnection> connection, const guest::DatasetOptions& options)
      : connection_(std::move(connection)), name_(options.features) {
    py::gil_scoped_release release;
    std::lock_guard lock(connection_->mutex());
    guest::Connection& conn = connection_->connection();
    dataset_.emplace(unwrap(guest::HostDataset::open(conn, options)));
    features_ = unwrap(conn.allocate(std::max<std::uint64_t>(dataset_->feature_bytes(), 1)));
    labels_ = unwrap(conn.allocate(std::max<std::uint64_t>(dataset_->label_bytes(), 1)));
    examples_ = dataset_->examples();
    batch_ = dataset_->batch();
    dims_ = dataset_->dims();
    closer_ = connection_->add_closer([this] { release_handles(); });
  }
  ~PyDataset() {
    py::gil_scoped_release release;
    std::lock_guard lock(connection_->mutex());
    connection_->remove_closer(closer_);
    if (connection_->forked()) {  // the parent's handles: only forget them here
      (void)state_.release();
      return;
    }
    release_handles();
  }
  PyDataset(const PyDataset&) = delete;
  PyDataset& operator=(const PyDataset&) = delete;

  std::uint64_t examples() const { return examples_; }
  std::uint32_t batch() const { return batch_; }
  std::uint32_t dims() const { return dims_; }
  std::uint64_t steps_per_epoch() const { return (examples_ + batch_ - 1) / batch_; }
  std::uint64_t position() {
    std::lock_guard lock(connection_->mutex());
    return live().position();
  }

  // The next batch: (features float32 [rows, dims], labels int32 [rows]).
  py::tuple next() {
    std::uint64_t rows = 0;
    {
      std::lock_guard lock(connection_->mutex());
      const std::uint64_t first = (live().position() % steps_per_epoch()) * batch_;
      rows = std::min<std::uint64_t>(batch_, examples_ - first);
    }
    py::array_t<float> x({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(dims_)});
    py::array_t<std::int32_t> y(static_cast<py::ssize_t>(rows));
    auto* x_bytes = reinterpret_cast<std::byte*>(x.mutable_data());
    auto* y_bytes = reinterpret_cast<std::byte*>(y.mutable_data());
    {
      py::gil_scoped_release release;
      std::lock_guard lock(connection_->mutex());
      guest::Stream& stream = connection_->stream();
      const std::uint32_t got = unwrap(live().next(stream, *features_, *labels_));
      if (got != rows) {
        throw MalvException(
            Error(ErrorCode::kInternal,
                  fmt::format("dataset '{}' batch of {} rows, {} expected", name_, got, rows)));
      }
      unwrap(stream.read(*features_, 0, std::span(x_bytes, rows * dims_ * sizeof(float))));
      unwrap(stream.read(*labels_, 0, std::span(y_bytes, rows * sizeof(std::int32_t))));
      Status synced = stream.synchronize();
      if (!synced.ok()) {
        throw MalvException(std::move(synced).error().with_context(
            fmt::format("reading a batch of dataset '{}'", name_)));
      }
    }
    return py::make_tuple(std::move(x), std::move(y));
  }

  // The next batch into device tensors (device_buffer_capi.h views, each
  // at the start of its buffer, of at least feature_bytes() / label_bytes()):
  // queued on the stream, no wait and no copy through the guest. Returns the
  // batch's rows; an error of the copy surfaces at the stream's next wait.
  std::uint32_t next_into(py::handle features, py::handle labels) {
    const DeviceBufferView& x = device_buffer_view(features);
    const DeviceBufferView& y = device_buffer_view(labels);
    py::gil_scoped_release release;
    std::lock_guard lock(connection_->mutex());
    guest::HostDataset& dataset = live();
    check_same_connection(x, connection_->connection());
    check_same_connection(y, connection_->connection());
    check_target("features", x, dataset.feature_bytes());
    check_target("labels", y, dataset.label_bytes());
    return unwrap(dataset.next(connection_->stream(), *x.buffer, *y.buffer));
  }

  void close() {
    py::gil_scoped_release release;
    std::lock_guard lock(connection_->mutex());
    if (connection_->forked()) connection_->connection();  // raises: the parent's handles
    release_handles();
  }

 private:
  void check_target(const char* what, const DeviceBufferView& view, std::uint64_t needed) const {
    if (view.offset != 0 || view.bytes < needed) {
      throw MalvException(
          Error(ErrorCode::kInvalidArgument,
                fmt::format("dataset '{}': the {} tensor must start its storage and hold {} bytes "
                            "(it starts at byte {} and holds {})",
                            name_, what, needed, view.offset, view.bytes)));
    }
  }

  // Call with the connection's mutex held.
  guest::HostDataset& live() {
    connection_->connection();  // raises once the connection is closed
    if (!dataset_) {
      throw MalvException(
          Error(ErrorCode::kFailedPrecondition, fmt::format("dataset '{}' is closed", name_)));
    }
    return *dataset_;
  }
  void release_handles() {
    dataset_.reset();
    features_.reset();
    labels_.reset();
  }

  // The host objects, released together (or, in a forked child, forgotten).
  struct State {
    std::optional<guest::HostDataset> dataset;
    std::optional<guest::Buffer> features;
    std::optional<guest::Buffer> labels;
  };

  std::shared_ptr<PyConnection> connection_;
  std::string name_;
  std::unique_ptr<State> state_ = std::make_unique<State>();
  std::optional<guest::HostDataset>& dataset_ = state_->dataset;
  std::optional<guest::Buffer>& features_ = state_->features;
  std::optional<guest::Buffer>& labels_ = state_->labels;
  std::uint64_t examples_ = 0;
  std::uint32_t batch_ = 0;
  std::uint32_t dims_ = 0;
  std::uint64_t closer_ = 0;
};

}  // namespace

void register_dataset(py::module_& m) {
  py::class_<PyDataset>(m, "Dataset", "A dataset served by the host's data pipeline")
      .def(py::init([](std::shared_ptr<PyConnection> connection, std::uint32_t format,
                       const std::string& features, const std::string& labels, std::uint32_t dims,
                       std::uint32_t classes, std::uint32_t batch, std::uint64_t seed,
                       std::uint64_t first_batch, float mean, float stddev,
                       std::uint32_t max_depth) {
             guest::DatasetOptions options{
                 .format = static_cast<wire::DatasetFormat>(format),
                 .features = features,
                 .labels = labels,
                 .dims = dims,
                 .classes = classes,
                 .batch = batch,
                 .seed = seed,
                 .first_batch = first_batch,
                 .mean = mean,
                 .stddev = stddev,
                 .max_depth = max_depth,
             };
             return std::make_unique<PyDataset>(std::move(connection), options);
           }),
           py::arg("connection"), py::arg("format"), py::arg("features"), py::arg("labels"),
           py::arg("dims"), py::arg("classes"), py::arg("batch"), py::arg("seed"),
           py::arg("first_batch"), py::arg("mean"), py::arg("stddev"), py::arg("max_depth"))
      .def_property_readonly("examples", &PyDataset::examples)
      .def_property_readonly("batch", &PyDataset::batch)
      .def_property_readonly("dims", &PyDataset::dims)
      .def_property_readonly("steps_per_epoch", &PyDataset::steps_per_epoch)
      .def_property_readonly("position", &PyDataset::position)
      .def("next", &PyDataset::next)
      .def("next_into", &PyDataset::next_into, py::arg("features"), py::arg("labels"),
           "Queues the next batch's copy into two device tensors' buffer views; returns its rows")
      .def_property_readonly("feature_bytes",
                             [](const PyDataset& self) {
                               return std::uint64_t{self.batch()} * self.dims() * sizeof(float);
                             })
      .def("close", &PyDataset::close);
}

}  // namespace malv::python
