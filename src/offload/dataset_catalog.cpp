#include "offload/dataset_catalog.h"

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>

namespace malv::offload {
namespace {

bool inside(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

std::string source_key(const DatasetSource& s) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", static_cast<int>(s.format), s.features, s.labels,
                     s.dims, s.classes, s.norm.mean, s.norm.stddev);
}

}  // namespace

Result<std::string> DatasetCatalog::resolve(std::string_view relative) const {
  if (relative.empty() || relative.front() == '/') {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("dataset path '{}' must be relative to a host data directory", relative));
  }
  for (const auto& part : std::filesystem::path(relative)) {
    if (part == "..") {
      return Error(ErrorCode::kPermissionDenied,
                   fmt::format("dataset path '{}' leaves the data directory", relative));
    }
  }
  for (const std::string& dir : options_.data_dirs) {
    char dir_real[PATH_MAX];
    char path_real[PATH_MAX];
    if (::realpath(dir.c_str(), dir_real) == nullptr) continue;
    const std::string candidate = fmt::format("{}/{}", dir, relative);
    if (::realpath(candidate.c_str(), path_real) == nullptr) continue;
    if (!inside(path_real, dir_real)) {
      return Error(ErrorCode::kPermissionDenied,
                   fmt::format("dataset path '{}' resolves outside {}", relative, dir));
    }
    return std::string(path_real);
  }
  return Error(ErrorCode::kNotFound,
               fmt::format("no dataset '{}' in the host's data directories ({})", relative,
                           options_.data_dirs.empty()
                               ? std::string("none configured")
                               : fmt::format("{}", fmt::join(options_.data_dirs, ", "))));
}

Result<data::Dataset> DatasetCatalog::decode(const DatasetSource& source) const {
  MALV_ASSIGN_OR_RETURN(std::string features, resolve(source.features));
  switch (source.format) {
    case DatasetFormat::kFashionMnistTrain:
      return data::load_fashion_mnist(features, data::Split::kTrain, source.norm);
    case DatasetFormat::kFashionMnistTest:
      return data::load_fashion_mnist(features, data::Split::kTest, source.norm);
    case DatasetFormat::kRawU8:
    case DatasetFormat::kRawF32: break;
  }
  if (source.dims == 0 || source.classes == 0 || source.classes > 256) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("raw dataset needs dims >= 1 and classes in [1, 256], got {} and {}",
                             source.dims, source.classes));
  }
  MALV_ASSIGN_OR_RETURN(std::string labels_path, resolve(source.labels));
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> labels, data::load_raw_u8(labels_path));
  if (source.format == DatasetFormat::kRawU8) {
    MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> pixels,
                          data::load_raw_u8(features, labels.size() * source.dims));
    return data::make_dataset(pixels, labels, source.dims,
                              static_cast<std::int32_t>(source.classes), source.norm);
  }
  MALV_ASSIGN_OR_RETURN(std::vector<float> values,
                        data::load_raw_f32(features, labels.size() * source.dims));
  data::Dataset out;
  out.count = labels.size();
  out.dims = source.dims;
  out.classes = static_cast<std::int32_t>(source.classes);
  out.features = std::move(values);
  out.labels.reserve(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= source.classes) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: label {} of example {} is not below {} classes", labels_path,
                               labels[i], i, source.classes));
    }
    out.labels.push_back(labels[i]);
  }
  return out;
}

Result<std::shared_ptr<const data::Dataset>> DatasetCatalog::load(const DatasetSource& source) {
  const std::string key = source_key(source);
  {
    std::lock_guard lock(mu_);
    if (auto it = loaded_.find(key); it != loaded_.end()) {
      if (auto shared = it->second.lock()) return shared;
    }
  }
  // Decode outside the lock: another VM's load of another dataset need not
  // wait. Two VMs loading the same one at once both decode; one copy wins.
  MALV_ASSIGN_OR_RETURN(data::Dataset decoded, decode(source));
  if (decoded.count == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("dataset '{}' is empty", source.features));
  }
  auto shared = std::make_shared<const data::Dataset>(std::move(decoded));
  std::lock_guard lock(mu_);
  auto& slot = loaded_[key];
  if (auto existing = slot.lock()) return existing;
  slot = shared;
  return std::shared_ptr<const data::Dataset>(shared);
}

}  // namespace malv::offload
