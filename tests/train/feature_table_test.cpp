// Reading recorded features from CSV: what is accepted, and that every
// refusal names the file, the line and the column at fault.
#include "train/feature_table.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace malv::train {
namespace {

std::string error_of(std::string_view text) {
  Result<FeatureTable> table = parse_feature_csv(text, "f.csv");
  EXPECT_FALSE(table.ok());
  return table.ok() ? std::string() : table.error().message();
}

TEST(FeatureTable, ReadsColumnsAndRowsWithTheirLineNumbers) {
  auto table = parse_feature_csv("a, b ,c\r\n1,2,3\r\n\n 4.5 ,-1e3, +7\n", "f.csv");
  ASSERT_TRUE(table.ok()) << table.error().to_string();
  EXPECT_EQ(table->columns, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(table->rows(), 2u);
  EXPECT_EQ(table->values, (std::vector<float>{1, 2, 3, 4.5f, -1000, 7}));
  EXPECT_EQ(table->lines, (std::vector<std::uint64_t>{2, 4}));
  EXPECT_EQ(table->where(1), "f.csv:4");
  EXPECT_EQ(*table->column("c"), 2u);
}

TEST(FeatureTable, AValueThatIsNotANumberNamesFileLineAndColumn) {
  EXPECT_EQ(error_of("x0,x1\n1,2\n3,abc\n"), "f.csv:3: column 2 ('x1'): 'abc' is not a number");
  EXPECT_EQ(error_of("x0,x1\n1,\n"), "f.csv:2: column 2 ('x1'): empty field (expected a number)");
  EXPECT_EQ(error_of("x0,x1\n1,2x\n"), "f.csv:2: column 2 ('x1'): '2x' is not a number");
}

TEST(FeatureTable, ARowWithTheWrongNumberOfFieldsNamesItsLine) {
  EXPECT_EQ(error_of("x0,x1\n1,2\n\n1,2,3\n"), "f.csv:4: 3 fields, the header names 2 columns");
}

TEST(FeatureTable, NanAndInfinitiesAreRefusedWithTheirLineNumber) {
  for (std::string_view bad : {"nan", "NaN", "inf", "-inf", "infinity"}) {
    const std::string message = error_of(std::string("a,b\n1,2\n3,") + std::string(bad) + "\n");
    EXPECT_NE(message.find("f.csv:3: column 2 ('b'):"), std::string::npos) << message;
    EXPECT_NE(message.find("not a finite number"), std::string::npos) << message;
  }
  EXPECT_NE(error_of("a\n1e39\n").find("outside the range of a float"), std::string::npos);
}

TEST(FeatureTable, AnEmptyFileOrAHeaderWithoutRowsIsRefused) {
  EXPECT_EQ(error_of(""), "f.csv: empty file (expected a header line of column names)");
  EXPECT_EQ(error_of("\n \n"), "f.csv: empty file (expected a header line of column names)");
  EXPECT_EQ(error_of("a,b\n"), "f.csv: no data rows after the header line");
}

TEST(FeatureTable, HeaderNamesMustBePresentAndUnique) {
  EXPECT_NE(error_of("a,,c\n1,2,3\n").find("f.csv:1: column 2 of the header has no name"),
            std::string::npos);
  EXPECT_EQ(error_of("a,b,a\n1,2,3\n"), "f.csv:1: column 'a' is named twice (columns 1 and 3)");
}

TEST(FeatureTable, AnUnknownColumnListsTheColumns) {
  auto table = parse_feature_csv("a,b\n1,2\n", "f.csv");
  ASSERT_TRUE(table.ok());
  auto missing = table->column("y");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message(), "f.csv has no column 'y'; its columns are: a, b");
}

TEST(FeatureTable, AMissingFileIsAnErrorNamingIt) {
  auto table = read_feature_csv("/nonexistent/features.csv");
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.error().to_string().find("/nonexistent/features.csv"), std::string::npos);
}

TEST(FeatureTable, AFileIsReadWhole) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("malv-feature-table-" + std::to_string(::getpid()) + ".csv");
  {
    std::ofstream out(path);
    out << "x,y\n1,2\n3,4";  // no newline at the end
  }
  auto table = read_feature_csv(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(table.ok()) << table.error().to_string();
  EXPECT_EQ(table->values, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(table->origin, path.string());
}

}  // namespace
}  // namespace malv::train
