// A test host whose sessions offer the data pipeline over a private data
// directory holding a small raw dataset: example i has every feature byte
// equal to i and label i % kClasses.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "host_fixture.h"
#include "offload/dataset_catalog.h"

namespace malv::testing {

class DatasetHost : public HostFixture {
 protected:
  static constexpr std::uint32_t kCount = 300;
  static constexpr std::uint32_t kClasses = 10;

  void SetUp() override {
    static std::atomic<int> counter{0};
    root_ = std::filesystem::temp_directory_path() /
            fmt::format("malv-dataset-host-{}-{}", ::getpid(), counter++);
    std::filesystem::create_directories(root_ / "set");
    std::vector<std::uint8_t> pixels(std::size_t{kCount} * dims());
    std::vector<std::uint8_t> labels(kCount);
    for (std::uint32_t i = 0; i < kCount; ++i) {
      std::fill_n(pixels.begin() + i * dims(), dims(), static_cast<std::uint8_t>(i % 256));
      labels[i] = static_cast<std::uint8_t>(i % kClasses);
    }
    write(root_ / "set" / "x.u8", pixels);
    write(root_ / "set" / "y.u8", labels);
    catalog_ = std::make_unique<offload::DatasetCatalog>(
        offload::CatalogOptions{.data_dirs = {root_.string()}, .max_depth = 4});
    HostFixture::SetUp();
  }
  void TearDown() override {
    HostFixture::TearDown();
    catalog_.reset();
    std::filesystem::remove_all(root_);
  }
  void customize(microlake::ServerOptions& options) override {
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      microlake::Admission admission;
      if (info.vm_name != "vm-without-services") admission.services.datasets = catalog_.get();
      return admission;
    };
  }
  virtual std::uint32_t dims() const { return 8; }

  static void write(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

  std::filesystem::path root_;
  std::unique_ptr<offload::DatasetCatalog> catalog_;
};

}  // namespace malv::testing
