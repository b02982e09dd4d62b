// Reading MLLB's dumps of can_migrate_task() decisions (see mllb_dump.h).
#include "train/mllb_dump.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>

#include "base/atomic_file.h"
#include "train/csv_fields.h"

namespace malv::train {
namespace {

constexpr std::size_t column_index(std::string_view name) {
  for (std::size_t i = 0; i < kMllbDumpColumns.size(); ++i) {
    if (kMllbDumpColumns[i] == name) return i;
  }
  return kMllbDumpColumns.size();
}

// Compile-time column indices: a typo is a build error, not a wrong column.
template <std::size_t N>
struct Name {
  char text[N]{};
  consteval Name(const char (&s)[N]) { std::copy_n(s, N, text); }  // NOLINT: implicit
};
template <Name name>
constexpr std::size_t col() {
  constexpr std::size_t index = column_index(std::string_view(name.text, sizeof(name.text) - 1));
  static_assert(index < kMllbDumpColumns.size(), "not a column of an MLLB dump");
  return index;
}

// A decimal integer (optional sign) that fits 64 bits; the error says what
// the field is instead.
Result<std::int64_t> parse_integer(std::string_view field) {
  if (field.empty()) return Error(ErrorCode::kInvalidArgument, "empty field (expected an integer)");
  std::string_view digits = field;
  if (digits.starts_with('+')) digits.remove_prefix(1);
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("'{}' is outside the range of a 64-bit integer", field));
  }
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' is not an integer", field));
  }
  return value;
}

std::uint32_t clamp_u32(std::int64_t value) {
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(value, 0, std::numeric_limits<std::uint32_t>::max()));
}

// The checks of a row's values that the mapping relies on; the message names
// the column at fault.
Result<void> check_row(const MllbRawRow& raw) {
  auto flag = [&](std::size_t column) -> Result<void> {
    const std::int64_t v = raw.values[column];
    if (v != 0 && v != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("column '{}': {} is not 0 or 1", kMllbDumpColumns[column], v));
    }
    return ok_status();
  };
  for (std::size_t column :
       {col<"can_migrate">(), col<"p_running">(), col<"same_node">(), col<"prefer_src">(),
        col<"prefer_dst">(), col<"cpu_idle">(), col<"cpu_not_idle">(), col<"cpu_newly_idle">()}) {
    MALV_TRY(flag(column));
  }
  const std::int64_t hot = raw.values[col<"cpu_idle">()] + raw.values[col<"cpu_not_idle">()] +
                           raw.values[col<"cpu_newly_idle">()];
  if (hot != 1) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("cpu_idle, cpu_not_idle, cpu_newly_idle are {}, {}, {}: exactly one "
                             "must be 1 (the kind of balance pass)",
                             raw.values[col<"cpu_idle">()], raw.values[col<"cpu_not_idle">()],
                             raw.values[col<"cpu_newly_idle">()]));
  }
  for (std::size_t column : {col<"pid">(), col<"src_cpu">(), col<"dst_cpu">(), col<"nr_fails">(),
                             col<"cache_nice_tries">(), col<"total_faults">()}) {
    const std::int64_t v = raw.values[column];
    const std::int64_t most = column == col<"pid">() || column == col<"total_faults">()
                                  ? std::numeric_limits<std::int64_t>::max()
                                  : std::numeric_limits<std::uint32_t>::max();
    if (v < 0 || v > most) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("column '{}': {} is not a count from 0 to {}",
                               kMllbDumpColumns[column], v, most));
    }
  }
  return ok_status();
}

malv_cpu_migration to_migration(const MllbRawRow& raw) {
  malv_cpu_migration m{};
  auto v = [&](std::size_t column) { return raw.values[column]; };
  m.thread_id = static_cast<std::uint64_t>(v(col<"pid">()));
  m.src_cpu = static_cast<std::uint32_t>(v(col<"src_cpu">()));
  m.dst_cpu = static_cast<std::uint32_t>(v(col<"dst_cpu">()));
  m.src_len = clamp_u32(v(col<"src_len">()));
  m.dst_len = clamp_u32(v(col<"dst_len">()));
  m.idle_type = v(col<"cpu_idle">())       ? MALV_CPU_IDLE
                : v(col<"cpu_not_idle">()) ? MALV_CPU_NOT_IDLE
                                           : MALV_CPU_NEWLY_IDLE;
  m.running = static_cast<std::uint32_t>(v(col<"p_running">()));
  m.same_node = static_cast<std::uint32_t>(v(col<"same_node">()));
  m.prefer_src = static_cast<std::uint32_t>(v(col<"prefer_src">()));
  m.prefer_dst = static_cast<std::uint32_t>(v(col<"prefer_dst">()));
  m.nr_fails = static_cast<std::uint32_t>(v(col<"nr_fails">()));
  m.cache_nice_tries = static_cast<std::uint32_t>(v(col<"cache_nice_tries">()));
  m.imbalance = v(col<"imbalance">());
  m.delta_faults = v(col<"delta_faults">());
  m.total_faults = v(col<"total_faults">());
  m.since_ran_ns = -1;  // set by set_since_ran() once the whole file is read
  return m;
}

// ts + delta without overflow (both are int64; the sum of a huge ts and a
// huge negative delta is small, but a crafted row could overflow).
std::int64_t clock_sum(const MllbRawRow& raw) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(raw.values[col<"ts">()], raw.values[col<"delta">()], &sum)) {
    return raw.values[col<"delta">()] < 0 ? std::numeric_limits<std::int64_t>::min()
                                          : std::numeric_limits<std::int64_t>::max();
  }
  return sum;
}

void set_since_ran(MllbDump& dump) {
  std::optional<std::int64_t> offset;
  for (const MllbSample& s : dump.samples) {
    if (s.raw.values[col<"delta">()] < 0) {
      const std::int64_t sum = clock_sum(s.raw);
      offset = offset ? std::min(*offset, sum) : sum;
    }
  }
  dump.clock_offset_ns = offset;
  for (MllbSample& s : dump.samples) {
    const std::int64_t delta = s.raw.values[col<"delta">()];
    if (!offset) {
      s.migration.since_ran_ns = delta;  // a working clock: delta is what it says
    } else if (delta >= 0) {
      s.migration.since_ran_ns = -1;  // exec_start read as 0: never ran
    } else {
      std::int64_t since = 0;
      if (__builtin_sub_overflow(clock_sum(s.raw), *offset, &since)) {
        since = std::numeric_limits<std::int64_t>::max();
      }
      s.migration.since_ran_ns = since;
    }
  }
}

}  // namespace

std::int64_t MllbRawRow::operator[](std::string_view column) const {
  const std::size_t index = column_index(column);
  if (index >= values.size()) std::abort();  // a caller's typo, not an input error
  return values[index];
}

std::string MllbDump::where(std::size_t sample) const {
  return fmt::format("{}:{}", origin, samples[sample].line);
}

Result<MllbDump> parse_mllb_dump(std::string_view text, std::string_view origin) {
  MllbDump dump;
  dump.origin = std::string(origin);
  auto fail = [&](std::uint64_t line, std::string what) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}:{}: {}", origin, line, what));
  };
  // position[c]: the field index of kMllbDumpColumns[c] in the file.
  std::array<std::size_t, kMllbDumpColumns.size()> position{};
  std::size_t field_count = 0;
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
      field_count = fields.size();
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (fields[i].empty()) {
          return fail(line_number, fmt::format("column {} of the header has no name", i + 1));
        }
        for (std::size_t j = 0; j < i; ++j) {
          if (fields[j] == fields[i]) {
            return fail(line_number, fmt::format("column '{}' is named twice (columns {} and {})",
                                                 fields[i], j + 1, i + 1));
          }
        }
      }
      for (std::size_t c = 0; c < kMllbDumpColumns.size(); ++c) {
        const auto found = std::find(fields.begin(), fields.end(), kMllbDumpColumns[c]);
        if (found == fields.end()) {
          return fail(line_number,
                      fmt::format("the header has no column '{}' (an MLLB dump has {})",
                                  kMllbDumpColumns[c], fmt::join(kMllbDumpColumns, ", ")));
        }
        position[c] = static_cast<std::size_t>(found - fields.begin());
      }
      continue;
    }
    if (fields.size() != field_count) {
      return fail(line_number, fmt::format("{} fields, the header names {} columns", fields.size(),
                                           field_count));
    }
    MllbSample sample;
    sample.line = line_number;
    for (std::size_t c = 0; c < kMllbDumpColumns.size(); ++c) {
      Result<std::int64_t> value = parse_integer(fields[position[c]]);
      if (!value.ok()) {
        return fail(line_number, fmt::format("column {} ('{}'): {}", position[c] + 1,
                                             kMllbDumpColumns[c], value.error().message()));
      }
      sample.raw.values[c] = *value;
    }
    if (Result<void> checked = check_row(sample.raw); !checked.ok()) {
      return fail(line_number, checked.error().message());
    }
    sample.migration = to_migration(sample.raw);
    sample.label = static_cast<int>(sample.raw.values[col<"can_migrate">()]);
    dump.samples.push_back(sample);
  }
  if (header) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: empty file (expected a header line naming the columns {})",
                             origin, fmt::join(kMllbDumpColumns, ", ")));
  }
  if (dump.samples.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: no data rows after the header line", origin));
  }
  set_since_ran(dump);
  return dump;
}

Result<MllbDump> read_mllb_dump(const std::string& path) {
  Result<std::vector<std::byte>> bytes = read_file(path);
  if (!bytes.ok()) return std::move(bytes).error().with_context("reading MLLB dump " + path);
  return parse_mllb_dump(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path);
}

std::array<float, kMllbReferenceInputs> mllb_reference_inputs(const MllbRawRow& raw) {
  auto v = [&](std::size_t column) { return raw.values[column]; };
  auto flag = [](bool b) { return b ? 1.0f : 0.0f; };
  const std::int64_t total_faults = v(col<"total_faults">());
  const double divisor = total_faults == 0 ? 1.0 : static_cast<double>(total_faults);
  return {
      flag(v(col<"src_len">()) > v(col<"src_preferred_len">())),  // src_non_pref_nr
      flag(v(col<"delta">()) < 500000),                           // delta_hot
      static_cast<float>(v(col<"cpu_idle">())),
      static_cast<float>(v(col<"cpu_not_idle">())),
      static_cast<float>(v(col<"cpu_newly_idle">())),
      static_cast<float>(v(col<"same_node">())),
      static_cast<float>(v(col<"prefer_src">())),
      static_cast<float>(v(col<"prefer_dst">())),
      static_cast<float>(v(col<"src_len">()) - 2),
      static_cast<float>(static_cast<double>(v(col<"src_load">())) / 1000.0),
      static_cast<float>(static_cast<double>(v(col<"dst_load">())) / 1000.0),
      static_cast<float>(v(col<"dst_len">())),
      static_cast<float>(static_cast<double>(v(col<"delta_faults">())) / divisor),
      flag(v(col<"nr_fails">()) > v(col<"cache_nice_tries">())),  // extra_fails
      static_cast<float>(v(col<"buddy_hot">())),
  };
}

}  // namespace malv::train
