#include "train/prefetch_data.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "malv/prefetch_features.h"
#include "mlaas/baselines.h"

namespace malv::train {
namespace {

constexpr std::array<const char*, 9> kColumns = {"run",
                                                 "stream_id",
                                                 "current_depth",
                                                 "max_depth",
                                                 "consumption_per_s",
                                                 "production_per_s",
                                                 "consumer_stall_ns",
                                                 "depth_used",
                                                 "stall_next_ns"};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// malv_prefetch_basic's adaptive rule (src/policies/prefetch/prefetch_basic.c),
// replayed on recorded observations; `calm` is its state.
std::uint32_t adaptive_depth(const malv_prefetch_observation& o, std::uint32_t& calm) {
  std::uint64_t depth = std::max<std::uint32_t>(1, o.current_depth);
  if (o.consumer_stall_ns > 0) {
    depth += std::max<std::uint64_t>(1, depth / 2);
    calm = 0;
  } else if (++calm >= 3) {
    if (depth > 1) --depth;
    calm = 0;
  }
  if (o.production_per_s > 0.0 && o.consumption_per_s > o.production_per_s) {
    const auto cover = static_cast<std::uint64_t>(o.consumption_per_s / o.production_per_s) + 2;
    depth = std::max(depth, cover);
  }
  return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(depth, 1, o.max_depth));
}

}  // namespace

Status write_prefetch_record(const std::vector<PrefetchRecordRow>& rows, const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "w"));
  if (file == nullptr) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{}: cannot be written", path));
  }
  std::string text = fmt::format("{}\n", fmt::join(kColumns, ","));
  for (const PrefetchRecordRow& r : rows) {
    const malv_prefetch_observation& o = r.outcome.stream;
    text += fmt::format("{},{},{},{},{:.6g},{:.6g},{},{},{}\n", r.run, o.stream_id, o.current_depth,
                        o.max_depth, o.consumption_per_s, o.production_per_s, o.consumer_stall_ns,
                        r.outcome.depth_used, r.outcome.consumer_stall_ns);
  }
  if (std::fwrite(text.data(), 1, text.size(), file.get()) != text.size() ||
      std::fflush(file.get()) != 0) {
    return Error(ErrorCode::kInternal, fmt::format("{}: write failed", path));
  }
  return ok_status();
}

Result<std::vector<PrefetchRecordRow>> read_prefetch_record(const std::vector<std::string>& paths) {
  std::vector<PrefetchRecordRow> rows;
  std::uint64_t run_base = 0;
  for (const std::string& path : paths) {
    MALV_ASSIGN_OR_RETURN(FeatureTable table, read_feature_csv(path));
    std::array<std::size_t, kColumns.size()> at{};
    for (std::size_t c = 0; c < kColumns.size(); ++c) {
      MALV_ASSIGN_OR_RETURN(at[c], table.column(kColumns[c]));
    }
    std::map<std::uint64_t, std::uint64_t> runs;  // the file's run -> ours
    for (std::size_t r = 0; r < table.rows(); ++r) {
      auto value = [&](std::size_t c) { return table.at(r, at[c]); };
      auto whole = [&](std::size_t c, double max) -> Result<std::uint64_t> {
        const double v = value(c);
        if (v < 0 || v > max || v != std::floor(v)) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}: column {} must be a whole number in [0, {}], not {}",
                                   table.where(r), kColumns[c], max, v));
        }
        return static_cast<std::uint64_t>(v);
      };
      auto rate = [&](std::size_t c) -> Result<double> {
        if (value(c) < 0) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("{}: {} must not be negative", table.where(r), kColumns[c]));
        }
        return value(c);
      };
      PrefetchRecordRow row;
      MALV_ASSIGN_OR_RETURN(std::uint64_t run, whole(0, 1e15));
      auto [it, fresh] = runs.emplace(run, run_base + runs.size());
      row.run = it->second;
      malv_prefetch_observation& o = row.outcome.stream;
      MALV_ASSIGN_OR_RETURN(o.stream_id, whole(1, 1e15));
      MALV_ASSIGN_OR_RETURN(std::uint64_t depth, whole(2, 1 << 20));
      MALV_ASSIGN_OR_RETURN(std::uint64_t max_depth, whole(3, 1 << 20));
      MALV_ASSIGN_OR_RETURN(o.consumption_per_s, rate(4));
      MALV_ASSIGN_OR_RETURN(o.production_per_s, rate(5));
      MALV_ASSIGN_OR_RETURN(std::uint64_t stall, whole(6, 1e15));
      MALV_ASSIGN_OR_RETURN(std::uint64_t used, whole(7, 1 << 20));
      MALV_ASSIGN_OR_RETURN(std::uint64_t next, whole(8, 1e15));
      if (max_depth == 0 || used == 0 || used > max_depth) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("{}: depth_used {} must be in [1, max_depth {}]", table.where(r),
                                 used, max_depth));
      }
      o.current_depth = static_cast<std::uint32_t>(depth);
      o.max_depth = static_cast<std::uint32_t>(max_depth);
      o.consumer_stall_ns = static_cast<std::int64_t>(stall);
      row.outcome.depth_used = static_cast<std::uint32_t>(used);
      row.outcome.consumer_stall_ns = static_cast<std::int64_t>(next);
      rows.push_back(row);
    }
    run_base += runs.size();
  }
  if (rows.empty()) return Error(ErrorCode::kInvalidArgument, "the records hold no periods");
  return rows;
}

namespace {

// Replays each run's history; fn(row index, history after the row's push).
template <typename Fn>
void replay(const std::vector<PrefetchRecordRow>& rows, Fn&& fn) {
  std::map<std::pair<std::uint64_t, std::uint64_t>, malv_prefetch_history> histories;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const malv_prefetch_observation& o = rows[r].outcome.stream;
    malv_prefetch_history& h = histories[{rows[r].run, o.stream_id}];
    malv_prefetch_history_push(&h, &o);
    fn(r, h);
  }
}

double next_stall_steps(const PrefetchRecordRow& row) {
  return malv_prefetch_stall_steps(row.outcome.consumer_stall_ns,
                                   row.outcome.stream.consumption_per_s);
}

}  // namespace

FeatureTable prefetch_training_table(const std::vector<PrefetchRecordRow>& rows,
                                     const std::string& origin) {
  FeatureTable table;
  table.origin = origin;
  for (int f = 0; f < MALV_PREFETCH_FEATURE_COUNT; ++f)
    table.columns.push_back(fmt::format("f{}", f));
  table.columns.emplace_back(kPrefetchTargetName);
  const std::size_t width = table.columns.size();
  table.values.resize(rows.size() * width);
  table.lines.resize(rows.size());
  replay(rows, [&](std::size_t r, const malv_prefetch_history& h) {
    float* out = table.values.data() + r * width;
    malv_prefetch_features(&h, &rows[r].outcome.stream, rows[r].outcome.depth_used, out);
    out[MALV_PREFETCH_FEATURE_COUNT] = malv_prefetch_stall_target(next_stall_steps(rows[r]));
    table.lines[r] = r + 2;  // as in the record
  });
  return table;
}

PrefetchComparison compare_prefetch_policies(const mlaas::Mlp& model,
                                             const std::vector<PrefetchRecordRow>& rows,
                                             std::size_t first) {
  PrefetchComparison c;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint32_t> calm;
  std::vector<float> in, out;
  auto count = [](PolicyEstimate& e, bool match, const PrefetchRecordRow& row, double stall) {
    if (!match) return;
    ++e.matched;
    e.stall_steps += stall * static_cast<double>(row.outcome.stream.max_depth);
  };
  replay(rows, [&](std::size_t r, const malv_prefetch_history& h) {
    const PrefetchRecordRow& row = rows[r];
    const malv_prefetch_observation& o = row.outcome.stream;
    const std::uint32_t adaptive = adaptive_depth(o, calm[{row.run, o.stream_id}]);
    if (r < first) return;
    const std::uint32_t candidates = std::min<std::uint32_t>(o.max_depth, 32);
    in.resize(std::size_t{candidates} * MALV_PREFETCH_FEATURE_COUNT);
    out.resize(candidates);
    for (std::uint32_t d = 1; d <= candidates; ++d) {
      malv_prefetch_features(&h, &o, d, in.data() + (d - 1) * MALV_PREFETCH_FEATURE_COUNT);
    }
    model.infer_cpu(in.data(), candidates, out.data());
    const std::uint32_t learned = malv_prefetch_pick(out.data(), candidates);
    const double stall = next_stall_steps(row);
    const std::uint32_t used = row.outcome.depth_used;
    ++c.periods;
    c.recorded += stall;
    count(c.learned, learned == used, row, stall);
    count(c.adaptive, adaptive == used, row, stall);
    count(c.fixed, std::min(mlaas::kBaselinePrefetchDepth, o.max_depth) == used, row, stall);
  });
  if (c.periods > 0) {
    const auto n = static_cast<double>(c.periods);
    c.recorded /= n;
    c.learned.stall_steps /= n;
    c.adaptive.stall_steps /= n;
    c.fixed.stall_steps /= n;
  }
  return c;
}

}  // namespace malv::train
