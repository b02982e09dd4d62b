#include "data/dataset.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "data/rng.h"

namespace malv::data {
namespace {

// A gzip (or plain) file opened for reading; every error names the file.
class GzReader {
 public:
  static Result<GzReader> open(const std::string& path) {
    errno = 0;
    gzFile file = gzopen(path.c_str(), "rb");
    if (file == nullptr) {
      int err = errno;
      if (err == 0) err = ENOMEM;
      return errno_error(fmt::format("open {}", path), err);
    }
    gzbuffer(file, 1 << 18);
    return GzReader(path, file);
  }
  GzReader(GzReader&& other) noexcept
      : path_(std::move(other.path_)), file_(std::exchange(other.file_, nullptr)) {}
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  GzReader& operator=(GzReader&&) = delete;
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }

  // Up to `bytes` bytes; fewer only at the end of the data.
  Result<std::size_t> read(void* out, std::size_t bytes) {
    std::size_t done = 0;
    auto* dst = static_cast<unsigned char*>(out);
    while (done < bytes) {
      const unsigned want =
          static_cast<unsigned>(std::min<std::size_t>(bytes - done, std::size_t{1} << 30));
      const int got = gzread(file_, dst + done, want);
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        return Error(ErrorCode::kDataLoss,
                     fmt::format("{}: corrupt or unreadable data ({})", path_, message));
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  // Exactly `bytes` bytes, or an error saying how many were there.
  Status read_exact(void* out, std::size_t bytes, std::string_view what) {
    MALV_ASSIGN_OR_RETURN(std::size_t got, read(out, bytes));
    if (got != bytes) {
      return Error(
          ErrorCode::kDataLoss,
          fmt::format("{}: truncated: expected {} bytes of {}, got {}", path_, bytes, what, got));
    }
    return ok_status();
  }

  // Fails if anything follows the announced data.
  Status expect_end() {
    unsigned char extra = 0;
    MALV_ASSIGN_OR_RETURN(std::size_t got, read(&extra, 1));
    if (got != 0) {
      return Error(ErrorCode::kDataLoss,
                   fmt::format("{}: trailing bytes after the announced data", path_));
    }
    return ok_status();
  }

  // Everything left in the file.
  Result<std::vector<std::uint8_t>> read_all() {
    std::vector<std::uint8_t> data;
    std::size_t used = 0;
    for (;;) {
      data.resize(std::max<std::size_t>(used * 2, 1 << 20));
      MALV_ASSIGN_OR_RETURN(std::size_t got, read(data.data() + used, data.size() - used));
      used += got;
      if (used < data.size()) break;
    }
    data.resize(used);
    return data;
  }

  const std::string& path() const { return path_; }

 private:
  GzReader(std::string path, gzFile file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  gzFile file_;
};

Result<std::uint32_t> read_be32(GzReader& in, std::string_view what) {
  unsigned char b[4];
  MALV_TRY(in.read_exact(b, sizeof(b), what));
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

Status expect_magic(GzReader& in, std::uint32_t want, std::string_view kind) {
  MALV_ASSIGN_OR_RETURN(std::uint32_t magic, read_be32(in, "the IDX magic number"));
  if (magic != want) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: not an IDX {} file: magic is {}, expected {}", in.path(), kind,
                             magic, want));
  }
  return ok_status();
}

std::string split_file(const std::string& dir, Split split, std::string_view kind) {
  return fmt::format("{}/{}-{}-ubyte.gz", dir, split == Split::kTrain ? "train" : "t10k", kind);
}

}  // namespace

Dataset Dataset::slice(std::size_t first, std::size_t n) const {
  Dataset out;
  first = std::min(first, count);
  n = std::min(n, count - first);
  out.count = n;
  out.dims = dims;
  out.classes = classes;
  out.features.assign(features.begin() + static_cast<std::ptrdiff_t>(first * dims),
                      features.begin() + static_cast<std::ptrdiff_t>((first + n) * dims));
  out.labels.assign(labels.begin() + static_cast<std::ptrdiff_t>(first),
                    labels.begin() + static_cast<std::ptrdiff_t>(first + n));
  return out;
}

std::vector<std::uint32_t> shuffled_indices(std::uint32_t count, std::uint64_t seed,
                                            std::uint64_t epoch) {
  std::vector<std::uint32_t> order(count);
  for (std::uint32_t i = 0; i < count; ++i) order[i] = i;
  Rng rng(derive_seed(seed, epoch));
  for (std::uint32_t i = count; i > 1; --i) {
    const auto j = static_cast<std::uint32_t>(rng.below(i));
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

Result<IdxImages> load_idx_images(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(GzReader in, GzReader::open(path));
  MALV_TRY(expect_magic(in, kIdxImagesMagic, "images"));
  IdxImages images;
  MALV_ASSIGN_OR_RETURN(images.count, read_be32(in, "the image count"));
  MALV_ASSIGN_OR_RETURN(images.rows, read_be32(in, "the row count"));
  MALV_ASSIGN_OR_RETURN(images.cols, read_be32(in, "the column count"));
  // Bound the allocation by what a sane IDX image file can announce.
  constexpr std::uint64_t kMaxBytes = 4ull << 30;
  const std::uint64_t bytes =
      std::uint64_t{images.count} * std::uint64_t{images.rows} * std::uint64_t{images.cols};
  if (images.count == 0 || images.rows == 0 || images.cols == 0 || images.rows > 65536 ||
      images.cols > 65536 || bytes > kMaxBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: implausible image dimensions {} x {} x {}", path, images.count,
                             images.rows, images.cols));
  }
  images.pixels.resize(bytes);
  MALV_TRY(in.read_exact(images.pixels.data(), bytes, "pixel data"));
  MALV_TRY(in.expect_end());
  return images;
}

Result<std::vector<std::uint8_t>> load_idx_labels(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(GzReader in, GzReader::open(path));
  MALV_TRY(expect_magic(in, kIdxLabelsMagic, "labels"));
  MALV_ASSIGN_OR_RETURN(std::uint32_t count, read_be32(in, "the label count"));
  if (count == 0 || count > (1u << 30)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: implausible label count {}", path, count));
  }
  std::vector<std::uint8_t> labels(count);
  MALV_TRY(in.read_exact(labels.data(), count, "label data"));
  MALV_TRY(in.expect_end());
  return labels;
}

Result<Dataset> make_dataset(std::span<const std::uint8_t> pixels,
                             std::span<const std::uint8_t> labels, std::size_t dims,
                             std::int32_t classes, Normalisation norm) {
  if (dims == 0 || pixels.size() != labels.size() * dims) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} labels but {} pixel bytes ({} per example expected)",
                             labels.size(), pixels.size(), dims));
  }
  if (!(norm.stddev > 0.0f)) {
    return Error(ErrorCode::kInvalidArgument, "normalisation stddev must be positive");
  }
  Dataset data;
  data.count = labels.size();
  data.dims = dims;
  data.classes = classes;
  data.labels.resize(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= classes) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("label {} of example {} is outside [0, {})", labels[i], i, classes));
    }
    data.labels[i] = labels[i];
  }
  // One table for the 256 byte values keeps the conversion exact and cheap.
  float table[256];
  for (int v = 0; v < 256; ++v) {
    table[v] = (static_cast<float>(v) / 255.0f - norm.mean) / norm.stddev;
  }
  data.features.resize(pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) data.features[i] = table[pixels[i]];
  return data;
}

Result<Dataset> load_fashion_mnist(const std::string& dir, Split split, Normalisation norm) {
  const std::string images_path = split_file(dir, split, "images-idx3");
  const std::string labels_path = split_file(dir, split, "labels-idx1");
  MALV_ASSIGN_OR_RETURN(IdxImages images, load_idx_images(images_path));
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> labels, load_idx_labels(labels_path));
  if (images.rows != 28 || images.cols != 28) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: Fashion-MNIST images are 28 x 28, this file has {} x {}",
                             images_path, images.rows, images.cols));
  }
  if (images.count != labels.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} holds {} images but {} holds {} labels", images_path, images.count,
                             labels_path, labels.size()));
  }
  auto data = make_dataset(images.pixels, labels, 28 * 28, 10, norm);
  if (!data.ok()) return std::move(data).error().with_context("loading " + labels_path);
  return data;
}

Result<std::vector<float>> load_raw_f32(const std::string& path, std::size_t expected_count) {
  MALV_ASSIGN_OR_RETURN(GzReader in, GzReader::open(path));
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> bytes, in.read_all());
  if (bytes.size() % sizeof(float) != 0) {
    return Error(
        ErrorCode::kDataLoss,
        fmt::format("{}: {} bytes is not a whole number of float32 values", path, bytes.size()));
  }
  std::vector<float> values(bytes.size() / sizeof(float));
  if (expected_count != 0 && values.size() != expected_count) {
    return Error(ErrorCode::kDataLoss, fmt::format("{}: expected {} float32 values, found {}", path,
                                                   expected_count, values.size()));
  }
  if (!bytes.empty()) std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

Result<std::vector<std::uint8_t>> load_raw_u8(const std::string& path, std::size_t expected_count) {
  MALV_ASSIGN_OR_RETURN(GzReader in, GzReader::open(path));
  MALV_ASSIGN_OR_RETURN(std::vector<std::uint8_t> bytes, in.read_all());
  if (expected_count != 0 && bytes.size() != expected_count) {
    return Error(ErrorCode::kDataLoss, fmt::format("{}: expected {} bytes, found {}", path,
                                                   expected_count, bytes.size()));
  }
  return bytes;
}

}  // namespace malv::data
