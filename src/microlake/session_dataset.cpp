// Session handlers of the offloaded data pipeline (kDatasetOpen, kDatasetNext,
// kDatasetClose): validate everything, then invoke, as in
// session_handlers.cpp. The pipeline itself is offload::DataPipeline.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "base/log.h"
#include "microlake/session.h"
#include "offload/data_pipeline.h"
#include "offload/dataset_catalog.h"

namespace malv::microlake {
namespace {

constexpr std::uint32_t kMaxBatch = 1u << 16;

Result<std::string> spec_string(const char* field, std::size_t size, std::string_view what) {
  const std::size_t length = strnlen(field, size);
  if (length == size) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("dataset {} is not NUL-terminated", what));
  }
  return std::string(field, length);
}

Result<offload::DatasetSource> decode_source(const wire::DatasetSpec& spec) {
  offload::DatasetSource source;
  switch (static_cast<wire::DatasetFormat>(spec.format)) {
    case wire::DatasetFormat::kFashionMnistTrain:
      source.format = offload::DatasetFormat::kFashionMnistTrain;
      break;
    case wire::DatasetFormat::kFashionMnistTest:
      source.format = offload::DatasetFormat::kFashionMnistTest;
      break;
    case wire::DatasetFormat::kRawU8: source.format = offload::DatasetFormat::kRawU8; break;
    case wire::DatasetFormat::kRawF32: source.format = offload::DatasetFormat::kRawF32; break;
    default:
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("unknown dataset format {}", spec.format));
  }
  if (spec.reserved != 0) return Error(ErrorCode::kInvalidArgument, "reserved field is not zero");
  if (spec.batch == 0 || spec.batch > kMaxBatch) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch {} is outside [1, {}]", spec.batch, kMaxBatch));
  }
  if (!(spec.stddev > 0.0f) || !std::isfinite(spec.stddev) || !std::isfinite(spec.mean)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("normalisation mean {} stddev {} (stddev must be positive)", spec.mean,
                             spec.stddev));
  }
  MALV_ASSIGN_OR_RETURN(source.features,
                        spec_string(spec.features, sizeof(spec.features), "features path"));
  MALV_ASSIGN_OR_RETURN(source.labels,
                        spec_string(spec.labels, sizeof(spec.labels), "labels path"));
  source.dims = spec.dims;
  source.classes = spec.classes;
  source.norm = {spec.mean, spec.stddev};
  return source;
}

}  // namespace

Status Session::run(const wire::Command& cmd, const proto::DatasetOpenRequest& req) {
  MALV_TRY(check_arena(req.spec));
  if (req.spec.bytes != sizeof(wire::DatasetSpec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("dataset spec of {} bytes, expected {}", req.spec.bytes,
                             sizeof(wire::DatasetSpec)));
  }
  if (services_.datasets == nullptr) {
    return Error(ErrorCode::kUnimplemented, "this host offers no data pipeline");
  }
  if (datasets_.size() >= limits_.max_datasets) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("session holds {} datasets, the limit", datasets_.size()));
  }
  wire::DatasetSpec spec;
  std::memcpy(&spec, arena_.data() + req.spec.offset, sizeof(spec));
  MALV_ASSIGN_OR_RETURN(offload::DatasetSource source, decode_source(spec));
  offload::DatasetCatalog& catalog = *services_.datasets;
  // Decoding a dataset the host has not loaded yet takes this session's
  // dispatcher a moment (about a second for Fashion-MNIST); other VMs'
  // sessions run on their own threads.
  MALV_ASSIGN_OR_RETURN(auto data, catalog.load(source));
  offload::PipelineOptions options;
  options.vm = vm_name_;
  options.stream_id = datasets_.size();
  options.batch = spec.batch;
  options.seed = spec.seed;
  options.first_batch = spec.first_batch;
  options.max_depth =
      spec.max_depth == 0 ? catalog.max_depth() : std::min(spec.max_depth, catalog.max_depth());
  options.prefetch = catalog.prefetch_policy();
  options.feedback = catalog.prefetch_feedback();
  options.producer_delay = catalog.producer_delay();
  options.on_stall = services_.data_stall;
  const std::uint64_t examples = data->count;
  const auto dims = static_cast<std::uint32_t>(data->dims);
  MALV_ASSIGN_OR_RETURN(auto pipeline,
                        offload::DataPipeline::start(backend_, std::move(data), options));
  MALV_ASSIGN_OR_RETURN(
      RawHandle handle,
      datasets_.insert(std::make_unique<DatasetObject>(DatasetObject{std::move(pipeline)}),
                       kRightUse | kRightDestroy));
  log::info("microlake", "VM {} opened dataset '{}' ({} examples, batch {}, from batch {})",
            vm_name_, source.features, examples, spec.batch, spec.first_batch);
  complete(cmd, ErrorCode::kOk, {.result = handle, .result2 = examples, .aux = dims});
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::DatasetNextRequest& req) {
  MALV_ASSIGN_OR_RETURN(StreamObject * stream, streams_.lookup(req.stream, kRightUse));
  MALV_ASSIGN_OR_RETURN(DatasetObject * dataset, datasets_.lookup(req.dataset, kRightUse));
  std::shared_ptr<offload::DataPipeline> pipeline = dataset->pipeline;
  const std::uint64_t batch = pipeline->batch_size();
  const std::uint64_t feature_bytes = batch * pipeline->dims() * sizeof(float);
  const std::uint64_t label_bytes = batch * sizeof(std::int32_t);
  MALV_ASSIGN_OR_RETURN(BufferObject * features,
                        buffer_range(req.features, kRightWrite, 0, feature_bytes));
  MALV_ASSIGN_OR_RETURN(BufferObject * labels,
                        buffer_range(req.labels, kRightWrite, 0, label_bytes));
  MALV_ASSIGN_OR_RETURN(offload::DataPipeline::Batch next, pipeline->next());

  // Three ops in the stream: wait for the slot's upload, copy features and
  // labels into the guest's buffers. The command completes with the last;
  // the first two report a failure through `failed`.
  auto failed = std::make_shared<ErrorCode>(ErrorCode::kOk);
  auto note = [failed](ErrorCode status) {
    if (status != ErrorCode::kOk && *failed == ErrorCode::kOk) *failed = status;
  };
  PendingOp wait;
  wait.internal = true;
  wait.on_done = note;
  enqueue(*stream, accel::WaitEvent{next.ready}, std::move(wait));
  PendingOp copy_features;
  copy_features.internal = true;
  copy_features.on_done = note;
  enqueue(
      *stream,
      accel::CopyD2D{next.features, features->ptr, next.rows * pipeline->dims() * sizeof(float)},
      std::move(copy_features));
  PendingOp copy_labels;
  copy_labels.tag = cmd.tag;
  copy_labels.opcode = cmd.opcode;
  copy_labels.flags = cmd.flags;
  copy_labels.on_done = [this, stream, failed, pipeline, next, tag = cmd.tag, opcode = cmd.opcode,
                         flags = cmd.flags](ErrorCode status) {
    pipeline->release(next.slot);
    if (*failed != ErrorCode::kOk) {
      status = *failed;
      std::lock_guard lock(stream->mutex);
      if (stream->first_error == ErrorCode::kOk) {
        stream->first_error = status;
        stream->first_error_tag = tag;
      }
    }
    complete_tag(tag, opcode, flags, status, {.result = next.index, .result2 = stream->handle});
  };
  enqueue(*stream, accel::CopyD2D{next.labels, labels->ptr, next.rows * sizeof(std::int32_t)},
          std::move(copy_labels));
  return ok_status();
}

Status Session::run(const wire::Command& cmd, const proto::DatasetCloseRequest& req) {
  MALV_TRY(datasets_.remove(req.dataset, kRightDestroy));
  complete(cmd, ErrorCode::kOk);
  return ok_status();
}

}  // namespace malv::microlake
