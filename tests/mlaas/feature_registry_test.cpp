// FeatureRegistry, directly and through the C host-services table.
#include "mlaas/feature_registry.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "mlaas/host_services.h"

namespace malv::mlaas {
namespace {

TEST(FeatureRegistry, AWindowKeepsTheLastNVectorsOldestFirst) {
  FeatureRegistry features;
  FeatureSchemaId id = features.declare("cmd", {"flops", "bytes"}, 3).value();
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(features.push(id, 7, std::array{float(i), float(10 * i)}).ok());
  }
  std::vector<float> rows(10 * 2);
  EXPECT_EQ(features.read(id, 7, rows).value(), 3u);
  EXPECT_EQ(std::vector<float>(rows.begin(), rows.begin() + 6),
            (std::vector<float>{3, 30, 4, 40, 5, 50}));
  // Room for two rows: the newest two.
  std::vector<float> two(2 * 2);
  EXPECT_EQ(features.read(id, 7, two).value(), 2u);
  EXPECT_EQ(two, (std::vector<float>{4, 40, 5, 50}));
  // Windows are per VM.
  EXPECT_EQ(features.read(id, 8, rows).value(), 0u);
  features.remove_vm(7);
  EXPECT_EQ(features.read(id, 7, rows).value(), 0u);
}

TEST(FeatureRegistry, RedeclaringTheSameSchemaGivesTheSameIdAndOtherFeaturesAreRefused) {
  FeatureRegistry features;
  FeatureSchemaId id = features.declare("cmd", {"a", "b"}, 4).value();
  EXPECT_EQ(features.declare("cmd", {"a", "b"}, 2).value(), id);
  EXPECT_EQ(features.declare("cmd", {"a", "c"}, 4).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(features.find("cmd").value().features.size(), 2u);
  EXPECT_EQ(features.find("other").error().code(), ErrorCode::kNotFound);
}

TEST(FeatureRegistry, AVectorOfTheWrongLengthOrUnknownSchemaIsRefused) {
  FeatureRegistry features;
  FeatureSchemaId id = features.declare("cmd", {"a", "b"}, 4).value();
  EXPECT_EQ(features.push(id, 1, std::array{1.0f}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(features.push(FeatureSchemaId{9}, 1, std::array{1.0f, 2.0f}).error().code(),
            ErrorCode::kNotFound);
  EXPECT_FALSE(features.declare("empty", {}, 4).ok());
  EXPECT_FALSE(features.declare("nowindow", {"a"}, 0).ok());
}

TEST(HostServicesFeatures, AModuleDeclaresPushesAndReadsThroughTheCTable) {
  FeatureRegistry features;
  HostServices services(features, nullptr);
  const malv_host_services* t = services.table();
  EXPECT_EQ(t->abi_version, MALV_MLAAS_ABI_VERSION);
  const char* names[] = {"x", "y"};
  malv_feature_schema schema = 0;
  ASSERT_EQ(t->feature_declare(t, "mod.cmd", names, 2, 8, &schema), MALV_MLAAS_OK);
  float v[2] = {1.5f, 2.5f};
  ASSERT_EQ(t->feature_push(t, schema, 3, v, 2), MALV_MLAAS_OK);
  EXPECT_EQ(t->feature_push(t, schema, 3, v, 1), MALV_MLAAS_ERR_INVALID);
  float out[16] = {};
  std::size_t rows = 0;
  ASSERT_EQ(t->feature_read(t, schema, 3, out, 8, &rows), MALV_MLAAS_OK);
  EXPECT_EQ(rows, 1u);
  EXPECT_EQ(out[1], 2.5f);
  malv_feature_schema found = 0;
  std::size_t count = 0;
  EXPECT_EQ(t->feature_find(t, "mod.cmd", &found, &count), MALV_MLAAS_OK);
  EXPECT_EQ(found, schema);
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(t->feature_read(t, 99, 3, out, 8, &rows), MALV_MLAAS_ERR_NOT_FOUND);
  // No inference service: model calls fail cleanly.
  malv_model model = 0;
  EXPECT_EQ(t->model_load(t, "/x.safetensors", &model), MALV_MLAAS_ERR_NOT_FOUND);
  EXPECT_GT(t->now_ns(t), 0);
}

}  // namespace
}  // namespace malv::mlaas
