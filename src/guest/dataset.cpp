#include "malv/dataset.h"

#include <fmt/format.h>

#include <cstring>

#include "guest/connection_core.h"
#include "proto/encoder.h"

namespace malv::guest {

using wire::Opcode;

Result<HostDataset> HostDataset::open(Connection& owner, const DatasetOptions& options) {
  ConnectionCore& connection = core_of(owner);
  wire::DatasetSpec spec{};
  if (options.features.size() >= sizeof(spec.features) ||
      options.labels.size() >= sizeof(spec.labels)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("dataset paths are limited to {} bytes", sizeof(spec.features) - 1));
  }
  spec.format = static_cast<std::uint32_t>(options.format);
  spec.dims = options.dims;
  spec.classes = options.classes;
  spec.batch = options.batch;
  spec.seed = options.seed;
  spec.first_batch = options.first_batch;
  spec.mean = options.mean;
  spec.stddev = options.stddev;
  spec.max_depth = options.max_depth;
  std::memcpy(spec.features, options.features.data(), options.features.size());
  std::memcpy(spec.labels, options.labels.data(), options.labels.size());

  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(sizeof(spec)));
  std::memcpy(connection.arena().data() + offset, &spec, sizeof(spec));
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = sizeof(spec);
  MALV_ASSIGN_OR_RETURN(
      wire::Completion c,
      connection.call(
          proto::make_command(Opcode::kDatasetOpen, connection.next_tag(), {offset, sizeof(spec)}),
          {offset, sizeof(spec)}, pending));
  if (c.status != 0) {
    const auto code = static_cast<ErrorCode>(c.status);
    return Error(code, fmt::format("opening dataset '{}' on the host: {}{}", options.features,
                                   error_code_name(code),
                                   code == ErrorCode::kNotFound
                                       ? " (not in the host's data directories; see malv serve "
                                         "--data-dir)"
                                       : ""));
  }
  return HostDataset(connection, c.result, c.result2, options.batch, c.aux, options.first_batch);
}

Result<std::uint32_t> HostDataset::next(Stream& stream, const Buffer& features,
                                        const Buffer& labels) {
  ConnectionCore& conn = *handle_.core();
  wire::Command cmd =
      proto::make_command(Opcode::kDatasetNext, conn.next_tag(),
                          {stream.handle(), handle_.raw(), features.handle(), labels.handle()});
  cmd.flags = wire::kFlagSkipSuccess;
  MALV_TRY(conn.submit(std::span(&cmd, 1), {}, nullptr));
  const std::uint64_t first = (position_ % steps_per_epoch()) * batch_;
  ++position_;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(batch_, examples_ - first));
}

}  // namespace malv::guest
