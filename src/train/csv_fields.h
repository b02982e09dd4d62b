// The CSV line handling the training path's readers share (recorded
// features, train/feature_table.h; MLLB's kernel dumps, train/mllb_dump.h):
// comma-separated fields, spaces, tabs and a trailing CR trimmed. No quoting:
// neither format has any.
#pragma once

#include <string_view>
#include <vector>

namespace malv::train {

// `text` without leading spaces or tabs and trailing spaces, tabs or CR.
std::string_view trim_field(std::string_view text);
// The fields of one line, each trimmed; "" gives one empty field.
std::vector<std::string_view> split_csv_fields(std::string_view line);

}  // namespace malv::train
