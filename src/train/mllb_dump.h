// MllbDump: a dump of Linux's can_migrate_task() decisions, as MLLB's eBPF
// tracer writes it (../shared/data/mllb/README.md), read into the MLaaS
// ABI's migration candidates (malv_cpu_migration) and the kernel's answers.
// The input of `malv mllb train` and `malv mllb eval` (train/mllb_model.h).
//
// Format: a header line naming at least the 30 columns of kMllbDumpColumns,
// in any order (other columns are ignored), then one line per decision with
// one integer per column. Spaces around a field, a trailing '\r' and blank
// lines are ignored. Anything else is refused with the file and the line:
//
//   raw.csv:12: column 10 ('delta'): '1.5' is not an integer
//   raw.csv:7: 29 fields, the header names 30 columns
//   raw.csv:1: the header has no column 'can_migrate' (an MLLB dump has ts, curr_pid, ...)
//
// Values that decide the mapping must make sense: the label, p_running,
// same_node, prefer_* are 0 or 1, exactly one of the idle one-hot is 1, CPU
// numbers and fault counts are not negative. Columns the README marks
// unreliable (src_len, dst_len, loads, buddy_hot, throttled, ...) are taken
// as they come: they are garbage in the known dumps and checking them would
// refuse good ones.
//
// The mapping of a row to a malv_cpu_migration:
//   thread_id = pid; src_cpu, dst_cpu, imbalance, nr_fails, cache_nice_tries,
//   same_node, prefer_src, prefer_dst, delta_faults, total_faults as given;
//   src_len, dst_len as given, clamped to [0, 2^32) (unreliable: the features
//   do not use them); idle_type from the one-hot; running = p_running;
//   since_ran_ns from delta, which needs care. delta was meant to be
//   rq_clock_task(src_rq) - exec_start, but the tracer read the clock at a
//   wrong offset (a small number), so delta is about -exec_start:
//    - delta < 0: the task has run; exec_start is on the run queue's clock,
//      which differs from ts's (ktime) by an offset of the boot (about 21.49 s
//      in raw_tag1.csv), so ts + delta = (time since it last started
//      running) + offset. The offset is estimated from the file itself: the
//      smallest ts + delta of any row, i.e. the row whose task started
//      running most recently (a running task, microseconds ago) counts as 0.
//      since_ran_ns = ts + delta - offset.
//    - delta >= 0 (small: 9 to 41 in raw_tag1.csv): exec_start is 0, the
//      task has never run; since_ran_ns = -1.
//   A dump where no row has delta < 0 is taken to have a working clock:
//   since_ran_ns = delta. Nothing of this depends on one boot's offset.
//   The label is can_migrate.
//
//   MALV_ASSIGN_OR_RETURN(MllbDump dump, read_mllb_dump("raw_tag1.csv"));
//   for (const MllbSample& s : dump.samples) use(s.migration, s.label);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "malv/mlaas.h"
#include "malv/result.h"

namespace malv::train {

// The columns of a raw dump, in the order of raw_tag1.csv.
inline constexpr std::array<std::string_view, 30> kMllbDumpColumns = {"ts",
                                                                      "curr_pid",
                                                                      "pid",
                                                                      "src_cpu",
                                                                      "dst_cpu",
                                                                      "imbalance",
                                                                      "src_len",
                                                                      "src_numa_len",
                                                                      "src_preferred_len",
                                                                      "delta",
                                                                      "cpu_idle",
                                                                      "cpu_not_idle",
                                                                      "cpu_newly_idle",
                                                                      "same_node",
                                                                      "prefer_src",
                                                                      "prefer_dst",
                                                                      "delta_faults",
                                                                      "total_faults",
                                                                      "dst_len",
                                                                      "src_load",
                                                                      "dst_load",
                                                                      "nr_fails",
                                                                      "cache_nice_tries",
                                                                      "buddy_hot",
                                                                      "throttled",
                                                                      "p_running",
                                                                      "test_aggressive",
                                                                      "can_migrate",
                                                                      "pc_0",
                                                                      "pc_1"};

// One row's values, by kMllbDumpColumns index.
struct MllbRawRow {
  std::array<std::int64_t, kMllbDumpColumns.size()> values{};
  // The value of a named column; the name must be one of kMllbDumpColumns.
  std::int64_t operator[](std::string_view column) const;
};

struct MllbSample {
  std::uint64_t line = 0;  // the file's line number (1-based)
  MllbRawRow raw;
  malv_cpu_migration migration{};
  int label = 0;  // can_migrate: 1 the kernel allowed the move
};

struct MllbDump {
  std::string origin;  // the file name, for messages
  std::vector<MllbSample> samples;
  // The estimated offset between ts's clock and the run queue's (ns), or
  // none when no row has delta < 0 (delta is then taken as it is).
  std::optional<std::int64_t> clock_offset_ns;
  // "FILE:LINE" of a sample.
  std::string where(std::size_t sample) const;
};

// Parses a whole dump; origin names it in errors. At least one data row.
[[nodiscard]] Result<MllbDump> parse_mllb_dump(std::string_view text, std::string_view origin);
[[nodiscard]] Result<MllbDump> read_mllb_dump(const std::string& path);

// LAKE's 15 reference inputs (README, "Preprocessed columns"), computed from
// a raw row exactly as LAKE's training/prep.py does, in the reference
// model's input order.
inline constexpr std::size_t kMllbReferenceInputs = 15;
std::array<float, kMllbReferenceInputs> mllb_reference_inputs(const MllbRawRow& raw);

}  // namespace malv::train
