// Reading recorded features from CSV (see feature_table.h).
#include "train/feature_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "base/atomic_file.h"
#include "train/csv_fields.h"

namespace malv::train {
namespace {

// One value: a finite decimal number (an optional leading '+' allowed) that
// fits a float. The error says what the field is instead.
Result<float> parse_value(std::string_view field) {
  std::string_view digits = field;
  if (digits.starts_with('+')) digits.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (field.empty()) return Error(ErrorCode::kInvalidArgument, "empty field (expected a number)");
  if (ec == std::errc::result_out_of_range) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is outside the range of a float", field));
  }
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a number", field));
  }
  if (!std::isfinite(value)) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("'{}' is not a finite number (NaN and infinities are refused)", field));
  }
  if (std::fabs(value) > std::numeric_limits<float>::max()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is outside the range of a float", field));
  }
  return static_cast<float>(value);
}

}  // namespace

Result<std::size_t> FeatureTable::column(std::string_view name) const {
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return i;
  }
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{} has no column '{}'; its columns are: {}", origin, name,
                           fmt::join(columns, ", ")));
}

std::string FeatureTable::where(std::size_t row) const {
  return fmt::format("{}:{}", origin, lines[row]);
}

Result<FeatureTable> parse_feature_csv(std::string_view text, std::string_view origin) {
  FeatureTable table;
  table.origin = std::string(origin);
  auto fail = [&](std::uint64_t line, std::string what) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}:{}: {}", origin, line, what));
  };
  std::uint64_t line_number = 0;
  bool header = true;
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++line_number;
    if (trim_field(line).empty()) continue;
    const std::vector<std::string_view> fields = split_csv_fields(line);
    if (header) {
      header = false;
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (fields[i].empty()) {
          return fail(line_number,
                      fmt::format("column {} of the header has no name (the first line must "
                                  "name every column)",
                                  i + 1));
        }
        for (std::size_t j = 0; j < i; ++j) {
          if (fields[j] == fields[i]) {
            return fail(line_number, fmt::format("column '{}' is named twice (columns {} and {})",
                                                 fields[i], j + 1, i + 1));
          }
        }
        table.columns.emplace_back(fields[i]);
      }
      continue;
    }
    if (fields.size() != table.columns.size()) {
      return fail(line_number, fmt::format("{} fields, the header names {} columns", fields.size(),
                                           table.columns.size()));
    }
    for (std::size_t i = 0; i < fields.size(); ++i) {
      Result<float> value = parse_value(fields[i]);
      if (!value.ok()) {
        return fail(line_number, fmt::format("column {} ('{}'): {}", i + 1, table.columns[i],
                                             value.error().message()));
      }
      table.values.push_back(*value);
    }
    table.lines.push_back(line_number);
  }
  if (header) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: empty file (expected a header line of column names)", origin));
  }
  if (table.rows() == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: no data rows after the header line", origin));
  }
  if (table.rows() > std::numeric_limits<std::uint32_t>::max()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: {} rows; at most {} are supported", origin, table.rows(),
                             std::numeric_limits<std::uint32_t>::max()));
  }
  return table;
}

Result<FeatureTable> read_feature_csv(const std::string& path) {
  Result<std::vector<std::byte>> bytes = read_file(path);
  if (!bytes.ok()) return std::move(bytes).error().with_context("reading features " + path);
  return parse_feature_csv(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path);
}

}  // namespace malv::train
