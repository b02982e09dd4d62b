// The learned load balancer (MLLB): reading dumps of can_migrate_task()
// decisions (refusals name the file and the line), the mapping of a row to
// a malv_cpu_migration, the features of malv/mllb_features.h, the figures
// of `malv mllb eval` on hand-made data and a hand-made model, LAKE's
// reference on the real dump, the shipped model on the real dump, and a
// training run. The real dump is ../shared/data/mllb (MALV_MLLB_DATA_DIR);
// tests that need it skip when it is absent.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "malv/mllb_features.h"
#include "mlaas/safetensors.h"
#include "train/mllb_dump.h"
#include "train/mllb_model.h"

namespace malv::train {
namespace {

const std::string kDataDir = MALV_MLLB_DATA_DIR;
const std::string kShippedModel = MALV_MLLB_SHIPPED_MODEL;

std::string raw_data() { return kDataDir + "/raw_tag1.csv"; }
std::string reference_weights() { return kDataDir + "/mllb_reference_weights.json"; }
bool have_data() {
  std::error_code ec;
  return std::filesystem::exists(raw_data(), ec) &&
         std::filesystem::exists(reference_weights(), ec);
}

// Appends a comma-separated field.
void append_field(std::string& text, std::string_view field) {
  if (!text.empty()) text += ',';
  text += field;
}

std::string header() {
  std::string text;
  for (std::string_view c : kMllbDumpColumns) append_field(text, c);
  return text;
}

// One row in kMllbDumpColumns order: a plausible non-running candidate
// that ran, overridden by `set`.
std::string row(const std::map<std::string, std::int64_t>& set = {}) {
  std::map<std::string, std::int64_t> v = {
      {"ts", 5'000'000'000}, {"curr_pid", 7},          {"pid", 100},
      {"src_cpu", 1},        {"dst_cpu", 2},           {"imbalance", 3},
      {"src_len", 4},        {"src_preferred_len", 1}, {"delta", -3'000'000'000},
      {"cpu_newly_idle", 1}, {"cache_nice_tries", 1},  {"same_node", 1}};
  for (const auto& [name, value] : set) v[name] = value;
  std::string text;
  for (std::string_view c : kMllbDumpColumns) {
    const auto found = v.find(std::string(c));
    append_field(text, std::to_string(found == v.end() ? 0 : found->second));
  }
  return text;
}

std::string error_of(std::string_view text) {
  Result<MllbDump> dump = parse_mllb_dump(text, "d.csv");
  EXPECT_FALSE(dump.ok());
  return dump.ok() ? std::string() : dump.error().message();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(MllbDump, AnEmptyFileOrAHeaderWithoutRowsIsRefused) {
  EXPECT_TRUE(contains(error_of(""), "d.csv: empty file"));
  EXPECT_TRUE(contains(error_of("\n\r\n"), "d.csv: empty file"));
  EXPECT_EQ(error_of(header() + "\n"), "d.csv: no data rows after the header line");
}

TEST(MllbDump, AMissingColumnIsNamed) {
  std::string text = header();
  text.replace(text.find(",can_migrate"), std::string(",can_migrate").size(), "");
  const std::string message = error_of(text + "\n1,2\n");
  EXPECT_TRUE(contains(message, "d.csv:1: the header has no column 'can_migrate'")) << message;
}

TEST(MllbDump, ARowWithTheWrongNumberOfFieldsNamesItsLine) {
  const std::string short_row = row().substr(0, row().rfind(','));
  EXPECT_EQ(error_of(header() + "\n" + row() + "\n\n" + short_row + "\n"),
            "d.csv:4: 29 fields, the header names 30 columns");
  EXPECT_EQ(error_of(header() + "\n" + row() + ",5\n"),
            "d.csv:2: 31 fields, the header names 30 columns");
}

TEST(MllbDump, AFieldThatIsNotAnIntegerNamesLineAndColumn) {
  std::string bad = row();
  // delta is column 10: replace the tenth field.
  std::vector<std::string> fields;
  for (std::size_t start = 0;;) {
    const std::size_t comma = bad.find(',', start);
    fields.push_back(bad.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  auto with_delta = [&](std::string value) {
    std::vector<std::string> f = fields;
    f[9] = std::move(value);
    std::string text;
    for (const std::string& s : f) append_field(text, s);
    return header() + "\n" + row() + "\n" + text + "\n";
  };
  EXPECT_EQ(error_of(with_delta("1.5")), "d.csv:3: column 10 ('delta'): '1.5' is not an integer");
  EXPECT_EQ(error_of(with_delta("abc")), "d.csv:3: column 10 ('delta'): 'abc' is not an integer");
  EXPECT_EQ(error_of(with_delta("")),
            "d.csv:3: column 10 ('delta'): empty field (expected an integer)");
  EXPECT_TRUE(contains(error_of(with_delta("99999999999999999999")),
                       "d.csv:3: column 10 ('delta'): '99999999999999999999' is outside"));
}

TEST(MllbDump, ValuesTheMappingNeedsAreChecked) {
  EXPECT_EQ(error_of(header() + "\n" + row({{"can_migrate", 2}}) + "\n"),
            "d.csv:2: column 'can_migrate': 2 is not 0 or 1");
  EXPECT_TRUE(contains(error_of(header() + "\n" + row({{"cpu_idle", 1}}) + "\n"),
                       "d.csv:2: cpu_idle, cpu_not_idle, cpu_newly_idle are 1, 0, 1"));
  EXPECT_EQ(error_of(header() + "\n" + row({{"nr_fails", -1}}) + "\n"),
            "d.csv:2: column 'nr_fails': -1 is not a count from 0 to 4294967295");
  EXPECT_TRUE(contains(error_of(header() + "\na,b\n"), "d.csv:2: 2 fields"));
  // Unreliable columns are taken as they come.
  EXPECT_TRUE(
      parse_mllb_dump(header() + "\n" + row({{"src_len", -5}, {"throttled", 7}}) + "\n", "d.csv")
          .ok());
}

TEST(MllbDump, AMissingFileIsAnErrorNamingIt) {
  auto dump = read_mllb_dump("/nonexistent/raw.csv");
  ASSERT_FALSE(dump.ok());
  EXPECT_TRUE(contains(dump.error().to_string(), "/nonexistent/raw.csv"));
}

TEST(MllbDump, RowsMapToMigrationsWithTimeSinceRanFromTheFilesOwnClockOffset) {
  // ts + delta: 2.0 s (the smallest: the offset), 2.0003 s, 2.4 s; delta 41
  // (exec_start 0: never ran).
  const std::string text =
      header() + "\r\n" +
      row({{"ts", 9'000'000'000}, {"delta", -7'000'000'000}, {"p_running", 1}}) + "\r\n" +
      row({{"ts", 9'100'000'000},
           {"delta", -7'099'700'000},
           {"pid", 4242},
           {"src_cpu", 17},
           {"dst_cpu", 40},
           {"src_len", 933},
           {"dst_len", 6},
           {"cpu_newly_idle", 0},
           {"cpu_idle", 1},
           {"same_node", 0},
           {"prefer_src", 1},
           {"delta_faults", -20},
           {"total_faults", 26},
           {"nr_fails", 3},
           {"cache_nice_tries", 2},
           {"imbalance", 496},
           {"can_migrate", 1}}) +
      "\n\n" +
      row({{"ts", 9'200'000'000},
           {"delta", -6'800'000'000},
           {"cpu_newly_idle", 0},
           {"cpu_not_idle", 1}}) +
      "\n" + row({{"delta", 41}, {"can_migrate", 1}}) + "\n";
  auto dump = parse_mllb_dump(text, "d.csv");
  ASSERT_TRUE(dump.ok()) << dump.error().to_string();
  ASSERT_EQ(dump->samples.size(), 4u);
  EXPECT_EQ(dump->clock_offset_ns, 2'000'000'000);
  EXPECT_EQ(dump->where(2), "d.csv:5");

  const malv_cpu_migration& running = dump->samples[0].migration;
  EXPECT_EQ(running.running, 1u);
  EXPECT_EQ(running.since_ran_ns, 0);
  EXPECT_EQ(running.idle_type, static_cast<std::uint32_t>(MALV_CPU_NEWLY_IDLE));
  EXPECT_EQ(dump->samples[0].label, 0);

  const malv_cpu_migration& m = dump->samples[1].migration;
  EXPECT_EQ(m.thread_id, 4242u);
  EXPECT_EQ(m.src_cpu, 17u);
  EXPECT_EQ(m.dst_cpu, 40u);
  EXPECT_EQ(m.src_len, 933u);
  EXPECT_EQ(m.dst_len, 6u);
  EXPECT_EQ(m.idle_type, static_cast<std::uint32_t>(MALV_CPU_IDLE));
  EXPECT_EQ(m.running, 0u);
  EXPECT_EQ(m.same_node, 0u);
  EXPECT_EQ(m.prefer_src, 1u);
  EXPECT_EQ(m.prefer_dst, 0u);
  EXPECT_EQ(m.nr_fails, 3u);
  EXPECT_EQ(m.cache_nice_tries, 2u);
  EXPECT_EQ(m.since_ran_ns, 300'000);
  EXPECT_EQ(m.imbalance, 496);
  EXPECT_EQ(m.delta_faults, -20);
  EXPECT_EQ(m.total_faults, 26);
  EXPECT_EQ(dump->samples[1].label, 1);
  EXPECT_EQ(dump->samples[1].line, 3u);

  EXPECT_EQ(dump->samples[2].migration.idle_type, static_cast<std::uint32_t>(MALV_CPU_NOT_IDLE));
  EXPECT_EQ(dump->samples[2].migration.since_ran_ns, 400'000'000);
  EXPECT_EQ(dump->samples[3].migration.since_ran_ns, -1);
}

TEST(MllbDump, ColumnsMayComeInAnyOrderAndExtraOnesAreIgnored) {
  std::vector<std::string_view> names(kMllbDumpColumns.rbegin(), kMllbDumpColumns.rend());
  std::string head = "note";
  for (std::string_view n : names) append_field(head, n);
  const std::string forward = row({{"pid", 55}, {"can_migrate", 1}, {"delta", 12}});
  std::vector<std::string> fields;
  for (std::size_t start = 0;;) {
    const std::size_t comma = forward.find(',', start);
    fields.push_back(forward.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::string reversed = "999";
  for (auto f = fields.rbegin(); f != fields.rend(); ++f) append_field(reversed, *f);
  auto dump = parse_mllb_dump(head + "\n" + reversed + "\n", "d.csv");
  ASSERT_TRUE(dump.ok()) << dump.error().to_string();
  EXPECT_EQ(dump->samples[0].migration.thread_id, 55u);
  EXPECT_EQ(dump->samples[0].label, 1);
  // No row with delta < 0: the clock is taken to work and delta is the time.
  EXPECT_FALSE(dump->clock_offset_ns.has_value());
  EXPECT_EQ(dump->samples[0].migration.since_ran_ns, 12);
}

TEST(MllbDump, ReferenceInputsAreLakesPreprocessing) {
  auto dump = parse_mllb_dump(header() + "\n" +
                                  row({{"src_len", 197},
                                       {"src_preferred_len", 114},
                                       {"delta", -14'601'533'765'988'051},
                                       {"ts", 14'601'555'256'062'534},
                                       {"prefer_src", 1},
                                       {"same_node", 0},
                                       {"delta_faults", -1},
                                       {"total_faults", 5},
                                       {"cache_nice_tries", 2},
                                       {"dst_len", 3},
                                       {"src_load", 2500}}) +
                                  "\n",
                              "d.csv");
  ASSERT_TRUE(dump.ok()) << dump.error().to_string();
  const auto in = mllb_reference_inputs(dump->samples[0].raw);
  const std::array<float, kMllbReferenceInputs> expected = {1,   1,    0, 0, 1,     0, 1, 0,
                                                            195, 2.5f, 0, 3, -0.2f, 0, 0};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_FLOAT_EQ(in[i], expected[i]) << "input " << i;
  }
}

TEST(MllbFeatures, AKnownCandidateGivesTheDocumentedFeatures) {
  malv_cpu_migration m{};
  m.running = 0;
  m.since_ran_ns = 99'000;  // 99 us: cache hot, log10(1 + 99) = 2
  m.idle_type = MALV_CPU_NOT_IDLE;
  m.same_node = 0;
  m.prefer_src = 1;
  m.prefer_dst = 0;
  m.delta_faults = -30;
  m.total_faults = 20;  // share clamped to -1
  m.nr_fails = 2;
  m.cache_nice_tries = 1;
  m.src_len = 1000;  // not used
  m.thread_id = 77;  // not used
  float out[MALV_MLLB_FEATURE_COUNT];
  malv_mllb_features(&m, out);
  const float expected[MALV_MLLB_FEATURE_COUNT] = {0, 0, 1, 2, 0, 1, 0, 0, 1, 0, 1, 0, 1, -1, 1};
  for (int i = 0; i < MALV_MLLB_FEATURE_COUNT; ++i) {
    EXPECT_FLOAT_EQ(out[i], expected[i]) << kMllbFeatureNames[static_cast<std::size_t>(i)];
  }

  malv_cpu_migration fresh{};
  fresh.running = 1;
  fresh.since_ran_ns = -1;
  fresh.idle_type = MALV_CPU_IDLE;
  fresh.same_node = 0;
  fresh.prefer_dst = 1;
  fresh.delta_faults = 5;
  fresh.total_faults = 10;
  malv_mllb_features(&fresh, out);
  // Running: nothing but `running` describes it.
  for (int i = 0; i < MALV_MLLB_FEATURE_COUNT; ++i) {
    EXPECT_EQ(out[i], i == 0 ? 1.0f : 0.0f) << kMllbFeatureNames[static_cast<std::size_t>(i)];
  }
  fresh.running = 0;
  malv_mllb_features(&fresh, out);
  const float fresh_expected[MALV_MLLB_FEATURE_COUNT] = {0, 1, 0, 0, 1, 0,    0, 0,
                                                         0, 1, 0, 1, 1, 0.5f, 0};
  for (int i = 0; i < MALV_MLLB_FEATURE_COUNT; ++i) {
    EXPECT_FLOAT_EQ(out[i], fresh_expected[i]) << kMllbFeatureNames[static_cast<std::size_t>(i)];
  }
  // Past the migration cost: no longer hot.
  m.since_ran_ns = MALV_MLLB_MIGRATION_COST_NS;
  malv_mllb_features(&m, out);
  EXPECT_EQ(out[2], 0.0f);
}

TEST(MllbFeatures, TheDecisionIsYesAboveOneHalf) {
  EXPECT_EQ(malv_mllb_migrate(0.51f), 1);
  EXPECT_EQ(malv_mllb_migrate(0.5f), 0);
  EXPECT_EQ(malv_mllb_migrate(-3.0f), 0);
  EXPECT_EQ(malv_mllb_migrate(std::nanf("")), 0);
}

// A model that answers yes exactly for threads that never ran.
mlaas::Mlp never_ran_model() {
  mlaas::DenseLayer layer{.in = MALV_MLLB_FEATURE_COUNT,
                          .out = 1,
                          .weight = std::vector<float>(MALV_MLLB_FEATURE_COUNT, 0.0f),
                          .bias = {0.0f},
                          .activation = mlaas::Activation::kIdentity};
  layer.weight[1] = 1.0f;  // never_ran
  return mlaas::Mlp::create({layer}).value();
}

// Eight rows: one running (labelled 0, ran: the model says no), and seven
// not running: never ran and labelled 1 (2: true positives), never ran and
// labelled 0 (1: false positive), ran and labelled 1 (1: false negative),
// ran and labelled 0 (3: true negatives).
std::string tiny_dump() {
  return header() + "\n" + row({{"p_running", 1}}) + "\n" +
         row({{"delta", 41}, {"can_migrate", 1}}) + "\n" +
         row({{"delta", 41}, {"can_migrate", 1}}) + "\n" + row({{"delta", 41}}) + "\n" +
         row({{"can_migrate", 1}}) + "\n" + row() + "\n" + row() + "\n" + row() + "\n";
}

// LAKE's layout with every weight 0 and b2 = 1: always yes.
std::string always_yes_reference() {
  std::string w1;
  for (int i = 0; i < 15; ++i) append_field(w1, "[0,0,0,0,0,0,0,0,0,0]");
  return fmt::format(R"({{"w1": [{}], "b1": [0,0,0,0,0,0,0,0,0,0], "w2": [0,0,0,0,0,0,0,0,0,0],
                         "b2": 1.0}})",
                     w1);
}

TEST(MllbEval, FiguresOnAHandMadeDumpAndModelAreExact) {
  auto dump = parse_mllb_dump(tiny_dump(), "tiny.csv");
  ASSERT_TRUE(dump.ok()) << dump.error().to_string();
  auto reference = parse_mllb_reference(always_yes_reference(), "ref.json");
  ASSERT_TRUE(reference.ok()) << reference.error().to_string();
  const mlaas::Mlp model = never_ran_model();

  auto all = score_mllb_model(model, *dump, select_mllb_rows(*dump, MllbRows::kAll), &*reference);
  ASSERT_TRUE(all.ok()) << all.error().to_string();
  EXPECT_EQ(all->rows, 8u);
  EXPECT_EQ(all->positives, 3u);
  EXPECT_EQ(all->predicted_positives, 3u);
  EXPECT_EQ(all->true_positives, 2u);
  EXPECT_DOUBLE_EQ(all->accuracy, 6.0 / 8);
  EXPECT_DOUBLE_EQ(all->precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(all->recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(all->majority_accuracy, 5.0 / 8);
  EXPECT_DOUBLE_EQ(all->balanced_accuracy, (2.0 / 3 + 4.0 / 5) / 2);
  EXPECT_DOUBLE_EQ(*all->reference_accuracy, 3.0 / 8);

  auto idle =
      score_mllb_model(model, *dump, select_mllb_rows(*dump, MllbRows::kNotRunning), &*reference);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->rows, 7u);
  EXPECT_DOUBLE_EQ(idle->accuracy, 5.0 / 7);
  EXPECT_DOUBLE_EQ(idle->precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(idle->recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(idle->majority_accuracy, 4.0 / 7);
  EXPECT_DOUBLE_EQ(*idle->reference_accuracy, 3.0 / 7);
}

TEST(MllbEval, ASavedModelIsLoadedAndScoredTheSame) {
  const auto path = std::filesystem::temp_directory_path() /
                    fmt::format("malv-mllb-test-{}.safetensors", ::getpid());
  ASSERT_TRUE(never_ran_model().save(path.string()).ok());
  auto loaded = load_mllb_model(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  auto dump = parse_mllb_dump(tiny_dump(), "tiny.csv");
  ASSERT_TRUE(dump.ok());
  auto s = score_mllb_model(*loaded, *dump, select_mllb_rows(*dump, MllbRows::kAll));
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->accuracy, 6.0 / 8);
  EXPECT_FALSE(s->reference_accuracy.has_value());
  std::filesystem::remove(path);
}

TEST(MllbEval, AModelOfOtherWidthsOrFeaturesIsRefused) {
  const auto path = std::filesystem::temp_directory_path() /
                    fmt::format("malv-mllb-bad-{}.safetensors", ::getpid());
  mlaas::DenseLayer wide{.in = 14, .out = 1, .weight = std::vector<float>(14), .bias = {0}};
  ASSERT_TRUE(mlaas::Mlp::create({wide})->save(path.string()).ok());
  auto loaded = load_mllb_model(path.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(contains(loaded.error().message(), "takes 14 inputs and gives 1 outputs"));

  mlaas::SafetensorsFile file = never_ran_model().to_safetensors();
  file.metadata["features"] = "a,b,c";
  ASSERT_TRUE(mlaas::write_safetensors(path.string(), file).ok());
  loaded = load_mllb_model(path.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(contains(loaded.error().message(), "the model's features are a,b,c"));
  std::filesystem::remove(path);
}

TEST(MllbEval, AReferenceWithMissingWeightsIsRefused) {
  auto r = parse_mllb_reference(R"({"w1": [1, 2], "b1": [], "w2": [], "b2": 0})", "r.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "r.json: \"w1\" must hold 150 numbers");
  EXPECT_FALSE(parse_mllb_reference("not json", "r.json").ok());
}

TEST(MllbRealDump, LakesReferenceScores84Point7OnTheNotRunningRows) {
  if (!have_data()) GTEST_SKIP() << "no " << raw_data();
  auto dump = read_mllb_dump(raw_data());
  ASSERT_TRUE(dump.ok()) << dump.error().to_string();
  auto reference = load_mllb_reference(reference_weights());
  ASSERT_TRUE(reference.ok()) << reference.error().to_string();
  EXPECT_EQ(dump->samples.size(), 1091u);
  const std::vector<std::size_t> rows = select_mllb_rows(*dump, MllbRows::kNotRunning);
  ASSERT_EQ(rows.size(), 672u);
  auto s = score_mllb_model(never_ran_model(), *dump, rows, &*reference);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(*s->reference_accuracy, 0.847, 0.001);
  EXPECT_NEAR(s->majority_accuracy, 0.845, 0.001);
  EXPECT_EQ(s->positives, 104u);
  // The README's reading of delta: 171 not-running rows never ran, 101 of
  // them migratable.
  std::size_t never = 0;
  std::size_t never_yes = 0;
  for (std::size_t r : rows) {
    if (dump->samples[r].migration.since_ran_ns < 0) {
      ++never;
      never_yes += static_cast<std::size_t>(dump->samples[r].label);
    }
  }
  EXPECT_EQ(never, 171u);
  EXPECT_EQ(never_yes, 101u);
  EXPECT_NEAR(static_cast<double>(*dump->clock_offset_ns) / 1e9, 21.49, 0.01);
}

TEST(MllbRealDump, TheShippedModelScoresAtLeastTheMajority) {
  if (!have_data()) GTEST_SKIP() << "no " << raw_data();
  std::error_code ec;
  ASSERT_TRUE(std::filesystem::exists(kShippedModel, ec)) << kShippedModel;
  auto model = load_mllb_model(kShippedModel);
  ASSERT_TRUE(model.ok()) << model.error().to_string();
  auto dump = read_mllb_dump(raw_data());
  ASSERT_TRUE(dump.ok());
  for (MllbRows rows : {MllbRows::kAll, MllbRows::kNotRunning}) {
    auto s = score_mllb_model(*model, *dump, select_mllb_rows(*dump, rows));
    ASSERT_TRUE(s.ok());
    EXPECT_GE(s->accuracy, s->majority_accuracy) << mllb_rows_name(rows);
    EXPECT_GT(s->recall, 0.5) << mllb_rows_name(rows);
  }
}

TEST(MllbRealDump, TrainingBeatsTheMajorityAndTheReferenceOnHeldOutRows) {
  if (!have_data()) GTEST_SKIP() << "no " << raw_data();
  auto dump = read_mllb_dump(raw_data());
  ASSERT_TRUE(dump.ok());
  auto reference = load_mllb_reference(reference_weights());
  ASSERT_TRUE(reference.ok());
  MllbTrainingOptions options;
  options.epochs = 20;
  auto t = train_mllb_model(*dump, options, &*reference);
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  // Stratified: a fifth of each label held out.
  EXPECT_EQ(t->holdout_rows.size(), 218u);
  ASSERT_TRUE(t->holdout_all.has_value());
  EXPECT_EQ(t->holdout_all->positives, 21u);
  EXPECT_GT(t->holdout_all->accuracy, t->holdout_all->majority_accuracy);
  EXPECT_GT(t->holdout_all->accuracy, *t->holdout_all->reference_accuracy);
  ASSERT_TRUE(t->holdout_not_running.has_value());
  EXPECT_GT(t->holdout_not_running->accuracy, t->holdout_not_running->majority_accuracy);
  EXPECT_EQ(t->trained.report.features.size(), static_cast<std::size_t>(MALV_MLLB_FEATURE_COUNT));

  // The same seed gives the same model.
  auto again = train_mllb_model(*dump, options, &*reference);
  ASSERT_TRUE(again.ok());
  for (std::size_t l = 0; l < t->trained.model.layers().size(); ++l) {
    EXPECT_EQ(t->trained.model.layers()[l].weight, again->trained.model.layers()[l].weight);
  }
}

}  // namespace
}  // namespace malv::train
