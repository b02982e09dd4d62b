// FeatureTable: recorded features as a CSV file, the input of
// `malv mlaas train` (train/model_training.h).
//
// Format: a header line of column names separated by commas, then one line
// of numbers per example, as many as there are columns. Spaces around a
// field and a trailing '\r' are ignored, as are blank lines; every value
// must be a finite number that fits a float. Nothing else is accepted, and
// each error names the file, the line and (for a value) the column:
//
//   features.csv:7: column 3 ('queue_depth'): 'abc' is not a number
//
//   MALV_ASSIGN_OR_RETURN(FeatureTable table, read_feature_csv("features.csv"));
//   MALV_ASSIGN_OR_RETURN(std::size_t y, table.column("reuse_distance"));
//   float first = table.at(0, y);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::train {

struct FeatureTable {
  std::string origin;                // the file name, for messages
  std::vector<std::string> columns;  // in file order, unique, non-empty
  std::vector<float> values;         // rows() x columns.size(), row-major
  std::vector<std::uint64_t> lines;  // the file's line number of each row (1-based)

  std::size_t rows() const { return lines.size(); }
  float at(std::size_t row, std::size_t column) const {
    return values[row * columns.size() + column];
  }
  // The index of a named column, or kInvalidArgument listing the columns.
  [[nodiscard]] Result<std::size_t> column(std::string_view name) const;
  // "FILE:LINE" of a row, for messages about its values.
  std::string where(std::size_t row) const;
};

// Parses a whole CSV text; origin names it in errors. At least one data row.
[[nodiscard]] Result<FeatureTable> parse_feature_csv(std::string_view text,
                                                     std::string_view origin);
[[nodiscard]] Result<FeatureTable> read_feature_csv(const std::string& path);

}  // namespace malv::train
