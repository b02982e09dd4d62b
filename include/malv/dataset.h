// HostDataset: a dataset read, shuffled and staged on the device by the
// host's data pipeline (libmalv side of the offload service).
//
// The guest declares the dataset (a path under one of the host's data
// directories, its format, batch size, seed and normalisation) once; its
// training loop then only asks for the next batch, which the host copies
// from buffers it staged ahead of time into the guest's own device buffers,
// in stream order: no reading, decoding, shuffling or uploading in the
// guest.
//
//   MALV_ASSIGN_OR_RETURN(auto data, HostDataset::open(conn, {.batch = 128, .seed = 1}));
//   MALV_ASSIGN_OR_RETURN(Buffer x, conn.allocate(data.feature_bytes()));
//   MALV_ASSIGN_OR_RETURN(Buffer y, conn.allocate(data.label_bytes()));
//   for (...) {
//     MALV_ASSIGN_OR_RETURN(std::uint32_t rows, data.next(stream, x, y));
//     ... launch kernels on x, y (rows examples) on `stream` ...
//   }
//
// Batch b holds the examples of nn::Trainer's step b (epoch b /
// steps_per_epoch, shuffled_indices order, the last batch of an epoch
// short), so a run with the pipeline sees exactly the batches of a run that
// loads the data itself.
#pragma once

#include <cstdint>
#include <string>

#include "malv/connection.h"
#include "malv/objects.h"
#include "malv/protocol.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::guest {

struct DatasetOptions {
  wire::DatasetFormat format = wire::DatasetFormat::kFashionMnistTrain;
  std::string features = "fashion-mnist";  // relative to a host data directory
  std::string labels;                      // raw formats only
  std::uint32_t dims = 0;                  // raw formats only
  std::uint32_t classes = 0;               // raw formats only
  std::uint32_t batch = 128;
  std::uint64_t seed = 1;
  std::uint64_t first_batch = 0;  // resume position
  float mean = 0.0f;              // uint8 inputs: (byte / 255 - mean) / stddev
  float stddev = 1.0f;
  std::uint32_t max_depth = 0;  // batches staged ahead at most; 0: the host's default
};

class HostDataset {
 public:
  [[nodiscard]] static Result<HostDataset> open(Connection& connection,
                                                const DatasetOptions& options);

  // Enqueues on `stream` the copy of the next batch into `features` (at
  // least batch x dims float32) and `labels` (at least batch int32); returns
  // the batch's number of examples. Errors surface at the stream's sync.
  [[nodiscard]] Result<std::uint32_t> next(Stream& stream, const Buffer& features,
                                           const Buffer& labels);

  std::uint64_t examples() const { return examples_; }
  std::uint32_t batch() const { return batch_; }
  std::uint32_t dims() const { return dims_; }  // features per example
  std::uint64_t feature_bytes() const { return std::uint64_t{batch_} * dims_ * sizeof(float); }
  std::uint64_t label_bytes() const { return std::uint64_t{batch_} * sizeof(std::int32_t); }
  std::uint64_t steps_per_epoch() const { return (examples_ + batch_ - 1) / batch_; }
  std::uint64_t position() const { return position_; }  // index of the next batch

 private:
  HostDataset(ConnectionCore& connection, std::uint64_t handle, std::uint64_t examples,
              std::uint32_t batch, std::uint32_t dims, std::uint64_t position)
      : handle_(&connection, handle, wire::Opcode::kDatasetClose),
        examples_(examples),
        batch_(batch),
        dims_(dims),
        position_(position) {}

  ObjectHandle handle_;
  std::uint64_t examples_ = 0;
  std::uint32_t batch_ = 0;
  std::uint32_t dims_ = 0;
  std::uint64_t position_ = 0;
};

}  // namespace malv::guest
