// The training path of MLaaS models: regression learns what it should to a
// small held-out error, beats the mean baseline on a nonlinear target,
// classification beats the majority class, the saved file is what the
// report measured, and bad options get errors naming what is wrong.
#include "train/model_training.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "mlaas/safetensors.h"
#include "nn/dataset.h"

namespace malv::train {
namespace {

// A table of `rows` rows of x0, x1 (x0 in [0, 100), x1 in [-5, 5): units
// far apart, which standardisation must take care of) and y = f(x0, x1).
template <typename F>
FeatureTable make_table(std::size_t rows, F f, std::uint64_t seed = 3) {
  FeatureTable table;
  table.origin = "test.csv";
  table.columns = {"x0", "x1", "y"};
  nn::Rng rng(seed);
  for (std::size_t r = 0; r < rows; ++r) {
    const float x0 = rng.uniform(0.0f, 100.0f);
    const float x1 = rng.uniform(-5.0f, 5.0f);
    table.values.insert(table.values.end(), {x0, x1, f(x0, x1)});
    table.lines.push_back(r + 2);
  }
  return table;
}

TrainingOptions options_for(std::string model) {
  TrainingOptions options;
  options.targets = {"y"};
  options.model = std::move(model);
  options.epochs = 30;
  options.batch = 32;
  options.lr = 5e-3f;
  return options;
}

TEST(ModelTraining, RegressionLearnsALinearTargetToASmallHeldOutError) {
  const FeatureTable table =
      make_table(1200, [](float x0, float x1) { return 3.0f * x0 - 2.0f * x1 + 1.0f; });
  std::vector<EpochReport> seen;
  auto trained = train_mlaas_model(table, options_for("2-16-1"),
                                   [&](const EpochReport& e) { seen.push_back(e); });
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  const TrainingReport& r = trained->report;
  EXPECT_EQ(r.features, (std::vector<std::string>{"x0", "x1"}));
  EXPECT_EQ(r.train_rows, 960u);
  EXPECT_EQ(r.holdout_rows, 240u);
  EXPECT_EQ(r.steps, 30u * 30u);
  ASSERT_EQ(seen.size(), 30u);
  EXPECT_EQ(seen.back().epoch, 30u);
  ASSERT_TRUE(seen.back().holdout.has_value());
  ASSERT_TRUE(r.holdout.has_value());
  // y spans about 300 (variance about 7500): the model must explain all but
  // a thousandth of it (R^2 > 0.999; it gets about 0.9996).
  EXPECT_GT(r.baseline.loss, 5000.0);
  EXPECT_LT(r.holdout->loss, 1e-3 * r.baseline.loss) << "baseline " << r.baseline.loss;
  // The epoch figures (the nn model's) agree with the exported model's.
  EXPECT_NEAR(seen.back().holdout->loss, r.holdout->loss, 1e-3 * r.baseline.loss);
}

TEST(ModelTraining, ANonlinearTargetBeatsTheMeanBaselineByAWideMargin) {
  const FeatureTable table = make_table(1200, [](float, float x1) { return std::fabs(x1); });
  TrainingOptions options = options_for("2-32-32-1");
  options.split = HoldoutSplit::kShuffled;
  auto trained = train_mlaas_model(table, options);
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  const TrainingReport& r = trained->report;
  ASSERT_TRUE(r.holdout.has_value());
  EXPECT_LT(r.holdout->loss, 0.05 * r.baseline.loss)
      << "held-out " << r.holdout->loss << " baseline " << r.baseline.loss;
}

TEST(ModelTraining, AClassifierBeatsTheMajorityClass) {
  // Class 1 inside a band of x1, 0 elsewhere: about 40% ones.
  const FeatureTable table =
      make_table(1200, [](float, float x1) { return std::fabs(x1) < 2.0f ? 1.0f : 0.0f; });
  TrainingOptions options = options_for("2-16-2");
  options.loss = nn::Loss::kSoftmaxXent;
  auto trained = train_mlaas_model(table, options);
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  const TrainingReport& r = trained->report;
  ASSERT_TRUE(r.holdout && r.holdout->accuracy && r.baseline.accuracy);
  EXPECT_LT(*r.baseline.accuracy, 0.7);
  EXPECT_GT(*r.holdout->accuracy, 0.95);
  EXPECT_LT(r.holdout->loss, r.baseline.loss);
  EXPECT_EQ(trained->model.shape_key(), "2-16relu-2softmax");
}

TEST(ModelTraining, TheSavedFileIsTheModelTheReportMeasured) {
  const FeatureTable table = make_table(300, [](float x0, float x1) { return x0 + x1; });
  TrainingOptions options = options_for("mlp:2-8-1");
  options.epochs = 3;
  auto trained = train_mlaas_model(table, options);
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  const auto path = std::filesystem::temp_directory_path() /
                    ("malv-train-" + std::to_string(::getpid()) + ".safetensors");
  ASSERT_TRUE(save_trained_model(*trained, path.string()).ok());
  auto loaded = mlaas::Mlp::load(path.string());
  auto file = mlaas::read_safetensors(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata["format"], "malv-mlp");
  EXPECT_EQ(file->metadata["features"], "x0,x1");
  EXPECT_EQ(file->metadata["targets"], "y");
  EXPECT_EQ(file->metadata["loss"], "mse");
  EXPECT_EQ(file->metadata["inputs"], "raw");

  // Held-out: the last 60 rows, raw features in.
  double sum = 0;
  for (std::size_t r = 240; r < 300; ++r) {
    const float x[2] = {table.at(r, 0), table.at(r, 1)};
    float y = 0;
    loaded->infer_cpu(x, 1, &y);
    sum += std::pow(static_cast<double>(y) - table.at(r, 2), 2.0);
  }
  ASSERT_TRUE(trained->report.holdout.has_value());
  EXPECT_NEAR(sum / 60.0, trained->report.holdout->loss, 1e-6 * (1.0 + sum / 60.0));
}

TEST(ModelTraining, TheSameSeedGivesTheSameModel) {
  const FeatureTable table = make_table(200, [](float x0, float x1) { return x0 * x1; });
  TrainingOptions options = options_for("2-8-1");
  options.epochs = 2;
  auto a = train_mlaas_model(table, options);
  auto b = train_mlaas_model(table, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->model.layers()[0].weight, b->model.layers()[0].weight);
  EXPECT_EQ(a->model.layers()[1].bias, b->model.layers()[1].bias);
}

TEST(ModelTraining, FeaturesCanBePickedAndNothingNeedBeHeldOut) {
  FeatureTable table = make_table(100, [](float x0, float) { return 2 * x0; });
  TrainingOptions options = options_for("1-4-1");
  options.features = {"x0"};
  options.holdout = 0;
  options.epochs = 1;
  auto trained = train_mlaas_model(table, options);
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  EXPECT_EQ(trained->report.features, (std::vector<std::string>{"x0"}));
  EXPECT_EQ(trained->report.train_rows, 100u);
  EXPECT_FALSE(trained->report.holdout.has_value());
  EXPECT_FALSE(trained->report.epochs.back().holdout.has_value());
}

std::string error_of(const FeatureTable& table, const TrainingOptions& options) {
  auto trained = train_mlaas_model(table, options);
  EXPECT_FALSE(trained.ok());
  return trained.ok() ? std::string() : trained.error().message();
}

TEST(ModelTraining, AnUnknownTargetOrFeatureListsTheColumns) {
  const FeatureTable table = make_table(10, [](float, float) { return 0.0f; });
  TrainingOptions options = options_for("2-4-1");
  options.targets = {"z"};
  EXPECT_EQ(error_of(table, options), "test.csv has no column 'z'; its columns are: x0, x1, y");
  options.targets = {"y"};
  options.features = {"x0", "x9"};
  EXPECT_EQ(error_of(table, options), "test.csv has no column 'x9'; its columns are: x0, x1, y");
  options.features = {"x0", "y"};
  EXPECT_EQ(error_of(table, options), "column 'y' is both a feature and a target");
}

TEST(ModelTraining, AModelWhoseWidthsDoNotFitTheDataIsRefusedNamingThem) {
  const FeatureTable table = make_table(10, [](float, float) { return 0.0f; });
  EXPECT_EQ(error_of(table, options_for("8-32-1")),
            "model 8-32-1 takes 8 inputs, but there are 2 features (x0, x1)");
  EXPECT_EQ(error_of(table, options_for("2-32-3")),
            "model 2-32-3 has 3 outputs, but there are 1 target columns (y)");
  EXPECT_NE(error_of(table, options_for("2-x-1")).find("'x' is not a layer width"),
            std::string::npos);
}

TEST(ModelTraining, AClassLabelThatIsNotAClassNamesItsLine) {
  FeatureTable table = make_table(10, [](float, float) { return 1.0f; });
  table.values[5 * 3 + 2] = 2.5f;  // row 5, file line 7
  TrainingOptions options = options_for("2-4-3");
  options.loss = nn::Loss::kSoftmaxXent;
  EXPECT_EQ(error_of(table, options),
            "test.csv:7: column 'y': 2.5 is not a class (a whole number from 0 to 2 for a model "
            "of 3 outputs)");
}

TEST(ModelTraining, AHoldoutThatLeavesNothingToTrainOnIsRefused) {
  const FeatureTable table = make_table(2, [](float, float) { return 0.0f; });
  TrainingOptions options = options_for("2-4-1");
  options.holdout = 0.9;
  EXPECT_EQ(error_of(table, options),
            "test.csv has 2 rows: holding out 2 of them leaves none to train on");
  options.holdout = 1.5;
  EXPECT_NE(error_of(table, options).find("holdout must be a fraction"), std::string::npos);
}

}  // namespace
}  // namespace malv::train
