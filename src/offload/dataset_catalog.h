// DatasetCatalog: which datasets the host's data pipeline may read, and the
// decoded datasets themselves, shared between the VMs that use them.
//
// A guest names a dataset by a path relative to one of the host's data
// directories (e.g. "fashion-mnist" under /usr/share/datasets). The catalog
// resolves it with realpath() and refuses anything that leaves the
// directory (absolute paths, "..", symlinks pointing out), so a VM can read
// only what the host operator exported. A dataset is decoded once and kept
// while any pipeline uses it: two VMs training on Fashion-MNIST share one
// copy in host memory.
//
//   DatasetCatalog catalog({.data_dirs = {"/usr/share/datasets"}});
//   MALV_ASSIGN_OR_RETURN(auto data, catalog.load(source));  // shared_ptr<const Dataset>
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"
#include "malv/mlaas.h"
#include "malv/result.h"

namespace malv::offload {

enum class DatasetFormat { kFashionMnistTrain, kFashionMnistTest, kRawU8, kRawF32 };

// A dataset as a guest declares it (decoded from wire::DatasetSpec).
struct DatasetSource {
  DatasetFormat format = DatasetFormat::kFashionMnistTrain;
  std::string features;  // relative path: a directory (Fashion-MNIST) or a file
  std::string labels;    // relative path (raw formats)
  std::uint32_t dims = 0;
  std::uint32_t classes = 0;
  data::Normalisation norm;
};

// Asks the VM's prefetch policy (MLaaS class prefetch) how deep to stage.
using PrefetchPolicy =
    std::function<std::uint32_t(std::string_view vm, const malv_prefetch_observation& observation)>;

// Tells the VM's prefetch policy what its previous decision gave: the depth
// that applied and the consumer's stall while it did.
using PrefetchFeedback =
    std::function<void(std::string_view vm, const malv_prefetch_outcome& outcome)>;

// Extra time (ns) the producer spends on batch `batch` of a VM's pipeline,
// on top of gathering and uploading it: a data step whose cost varies, as a
// dataset behind slower storage would give (benchmarks and `malv prefetch
// record` use it with a seeded schedule; a host does not).
using ProducerDelay = std::function<std::int64_t(std::string_view vm, std::uint64_t batch)>;

struct CatalogOptions {
  std::vector<std::string> data_dirs;  // where guests' relative paths are looked up
  std::uint32_t max_depth = 8;         // batches staged ahead at most, per pipeline
  PrefetchPolicy prefetch;             // null: the fixed baseline depth
  PrefetchFeedback prefetch_feedback;  // null: no feedback
  ProducerDelay producer_delay;        // null: none
};

class DatasetCatalog {
 public:
  explicit DatasetCatalog(CatalogOptions options) : options_(std::move(options)) {}

  // The absolute path of `relative` inside a data directory (the first one
  // that has it), or why not.
  [[nodiscard]] Result<std::string> resolve(std::string_view relative) const;

  // Reads, validates and decodes the dataset, or returns the copy already
  // in memory. Errors name the file and what is wrong with it.
  [[nodiscard]] Result<std::shared_ptr<const data::Dataset>> load(const DatasetSource& source);

  std::uint32_t max_depth() const { return options_.max_depth; }
  const PrefetchPolicy& prefetch_policy() const { return options_.prefetch; }
  const PrefetchFeedback& prefetch_feedback() const { return options_.prefetch_feedback; }
  const ProducerDelay& producer_delay() const { return options_.producer_delay; }
  const std::vector<std::string>& data_dirs() const { return options_.data_dirs; }

 private:
  [[nodiscard]] Result<data::Dataset> decode(const DatasetSource& source) const;

  const CatalogOptions options_;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<const data::Dataset>> loaded_;  // by source key, guarded
};

}  // namespace malv::offload
