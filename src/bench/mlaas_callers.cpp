// Concurrent callers of the inference service (see mlaas_callers.h).
//
// Blocking callers: each measurement starts N threads that wait for a common
// start, then call
// InferenceService::infer() for one row (each thread its own row) in a loop
// until stopped; calls that end after the stop are not counted. Batching
// across callers on and off alternate, `caller_rounds` times each; the
// throughput is the median round, the latency percentiles are over every
// call of every round. Asynchronous callers: see measure_async_round.
#include "bench/mlaas_callers.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include "base/clock.h"
#include "mlaas/async_inference.h"

namespace malv::bench {
namespace {

// Submitter threads of the asynchronous callers: the machine's 2 cores.
constexpr std::size_t kSubmitters = 2;
// The defaults (window 50 us, 512 rows) but no batching thread: the
// submitters run every batch themselves (run_pending), as the unbatched
// callers run every request on the same two threads. A third thread on two
// cores, woken for each batch and racing the submitters for it, cost half
// the throughput at 64 callers (docs/benchmarks.md).
const mlaas::AsyncInferenceOptions kAsyncOptions{.batching_thread = false};

struct Round {
  double per_s = 0;
  double rows_per_run = 0;
  double per_cpu_s = 0;  // answers per second of this process's CPU time (0: not measured)
  std::vector<double> latency_us;
};

Result<Round> measure_round(mlaas::InferenceService& inference, mlaas::ModelId model,
                            const ModelCase& shape, std::size_t callers, double ms) {
  std::atomic<int> phase{0};  // 0: wait, 1: run, 2: stop
  std::atomic<std::size_t> failures{0};
  std::vector<std::vector<double>> latency(callers);
  std::vector<std::thread> threads;
  threads.reserve(callers);
  for (std::size_t c = 0; c < callers; ++c) {
    threads.emplace_back([&, c] {
      std::vector<float> in(shape.in);
      for (std::size_t i = 0; i < in.size(); ++i) {
        in[i] = std::sin(static_cast<float>(c * shape.in + i) * 0.37f);
      }
      std::vector<float> out(shape.out);
      std::vector<double>& mine = latency[c];
      mine.reserve(4096);
      while (phase.load(std::memory_order_acquire) == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      while (true) {
        const MonoTime start = MonoClock::now();
        Status status = inference.infer(model, in.data(), 1, out.data());
        const MonoTime end = MonoClock::now();
        if (phase.load(std::memory_order_acquire) != 1) break;
        if (!status.ok()) {
          failures.fetch_add(1);
          continue;
        }
        mine.push_back(static_cast<double>((end - start).count()) / 1e3);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let every thread start
  const mlaas::InferenceCounters before = inference.stats();
  const MonoTime start = MonoClock::now();
  phase.store(1, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1e3)));
  phase.store(2, std::memory_order_release);
  const MonoTime stop = MonoClock::now();
  for (std::thread& t : threads) t.join();
  const mlaas::InferenceCounters after = inference.stats();
  if (failures.load() != 0) {
    return Error(ErrorCode::kInternal,
                 fmt::format("{} of {} callers' calls failed", failures.load(), shape.what));
  }
  Round round;
  for (auto& mine : latency) {
    round.latency_us.insert(round.latency_us.end(), mine.begin(), mine.end());
  }
  round.per_s = static_cast<double>(round.latency_us.size()) /
                (static_cast<double>((stop - start).count()) / 1e9);
  const std::uint64_t runs = after.runs() - before.runs();
  round.rows_per_run =
      runs == 0 ? 0.0 : static_cast<double>(after.run_rows - before.run_rows) / double(runs);
  return round;
}

CallerMode summarise(std::vector<Round>& rounds) {
  CallerMode mode;
  std::vector<double> rates, rows, latency, per_cpu;
  for (Round& r : rounds) {
    rates.push_back(r.per_s);
    per_cpu.push_back(r.per_cpu_s);
    rows.push_back(r.rows_per_run);
    latency.insert(latency.end(), r.latency_us.begin(), r.latency_us.end());
  }
  mode.per_s = harness::median(rates);
  mode.rows_per_run = harness::median(rows);
  mode.per_cpu_s = harness::median(per_cpu);
  mode.p50_us = harness::percentile(latency, 0.5);
  mode.p99_us = harness::percentile(latency, 0.99);
  return mode;
}

// CPU time of every thread of this process (user + system), in seconds.
double process_cpu_s() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

// The asynchronous callers: `callers` logical callers, each with one
// request in flight at a time (submit; when its answer is ready, read it and
// submit the next), driven by min(callers, kSubmitters) submitter threads,
// caller c on thread c % kSubmitters. Batched: through `queue`; a submitter
// none of whose callers has an answer ready runs the pending batches itself
// (AsyncInference::run_pending), and sleeps on its oldest request's ticket if
// there were none. Unbatched (queue null): each request runs alone, inline on
// the submitter thread, as soon as it is submitted (the cheapest unbatched
// path). Latency is submit to answer read.
Result<Round> measure_async_round(mlaas::InferenceService& inference, mlaas::AsyncInference* queue,
                                  mlaas::ModelId model, const ModelCase& shape, std::size_t callers,
                                  double ms) {
  const std::size_t submitters = std::min(callers, kSubmitters);
  std::atomic<int> phase{0};  // 0: wait, 1: run, 2: stop
  std::atomic<std::size_t> failures{0};
  std::vector<std::vector<double>> latency(submitters);
  std::vector<float> sink(submitters, 0.0f);  // answers are read, not optimised away
  std::vector<std::thread> threads;
  threads.reserve(submitters);
  for (std::size_t s = 0; s < submitters; ++s) {
    threads.emplace_back([&, s] {
      std::vector<std::size_t> mine;
      for (std::size_t c = s; c < callers; c += submitters) mine.push_back(c);
      std::vector<std::vector<float>> in(mine.size(), std::vector<float>(shape.in));
      for (std::size_t i = 0; i < mine.size(); ++i) {
        for (std::size_t d = 0; d < shape.in; ++d) {
          in[i][d] = std::sin(static_cast<float>(mine[i] * shape.in + d) * 0.37f);
        }
      }
      std::vector<float> out(shape.out);
      std::vector<double>& lat = latency[s];
      lat.reserve(1 << 16);
      float acc = 0;
      while (phase.load(std::memory_order_acquire) == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (queue == nullptr) {
        while (phase.load(std::memory_order_acquire) == 1) {
          for (std::size_t i = 0; i < mine.size(); ++i) {
            const MonoTime start = MonoClock::now();
            Status status = inference.infer(model, in[i].data(), 1, out.data());
            const MonoTime end = MonoClock::now();
            if (!status.ok()) {
              failures.fetch_add(1);
              continue;
            }
            acc += out[0];
            if (phase.load(std::memory_order_relaxed) == 1) {
              lat.push_back(static_cast<double>((end - start).count()) / 1e3);
            }
          }
        }
        sink[s] = acc;
        return;
      }
      std::vector<mlaas::InferenceTicket> tickets(mine.size());
      auto submit = [&](std::size_t i) {
        Result<mlaas::InferenceTicket> t = queue->submit(model, in[i].data(), 1);
        if (!t.ok()) {
          failures.fetch_add(1);
          return false;
        }
        tickets[i] = std::move(t).value();
        return true;
      };
      for (std::size_t i = 0; i < mine.size(); ++i) {
        if (!submit(i)) return;
      }
      while (phase.load(std::memory_order_acquire) == 1) {
        bool progressed = false;
        for (std::size_t i = 0; i < mine.size(); ++i) {
          if (!tickets[i].ready()) continue;
          const MonoTime end = MonoClock::now();
          if (!tickets[i].status().ok()) {
            failures.fetch_add(1);
            return;
          }
          acc += tickets[i].output()[0];
          if (phase.load(std::memory_order_relaxed) == 1) {
            lat.push_back(static_cast<double>((end - tickets[i].submitted()).count()) / 1e3);
          }
          if (!submit(i)) return;
          progressed = true;
        }
        if (progressed) continue;
        if (queue->run_pending() != 0) continue;
        auto oldest = std::min_element(tickets.begin(), tickets.end(), [](auto& a, auto& b) {
          return a.submitted() < b.submitted();
        });
        oldest->wait();
      }
      // Every answer in before the next round (the queue idle again).
      for (mlaas::InferenceTicket& t : tickets) {
        while (!t.ready()) {
          if (queue->run_pending() == 0) t.wait();
        }
      }
      sink[s] = acc;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let every thread start
  const mlaas::AsyncInferenceCounters before =
      queue != nullptr ? queue->stats() : mlaas::AsyncInferenceCounters{};
  const double cpu_before = process_cpu_s();
  const MonoTime start = MonoClock::now();
  phase.store(1, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1e3)));
  phase.store(2, std::memory_order_release);
  const MonoTime stop = MonoClock::now();
  const double cpu_used = process_cpu_s() - cpu_before;
  for (std::thread& t : threads) t.join();
  if (failures.load() != 0) {
    return Error(ErrorCode::kInternal,
                 fmt::format("{} asynchronous requests of {} failed", failures.load(), shape.what));
  }
  Round round;
  for (auto& lat : latency) round.latency_us.insert(round.latency_us.end(), lat.begin(), lat.end());
  round.per_s = static_cast<double>(round.latency_us.size()) /
                (static_cast<double>((stop - start).count()) / 1e9);
  round.per_cpu_s = cpu_used > 0 ? static_cast<double>(round.latency_us.size()) / cpu_used : 0.0;
  if (queue != nullptr) {
    const mlaas::AsyncInferenceCounters after = queue->stats();
    const std::uint64_t batches = after.batches - before.batches;
    round.rows_per_run = batches == 0 ? 0.0
                                      : static_cast<double>(after.batch_rows - before.batch_rows) /
                                            static_cast<double>(batches);
  } else {
    round.rows_per_run = 1;
  }
  return round;
}

}  // namespace

Result<std::vector<CallerShapeFigures>> run_concurrent_callers(accel::Backend& backend,
                                                               const MlaasOptions& flags) {
  mlaas::InferenceOptions options;
  options.calibrate = false;  // calibrate() below, once the model is in
  options.batch_window =
      std::chrono::nanoseconds(static_cast<std::int64_t>(flags.batch_window_us * 1e3));
  options.max_concurrent_runs = flags.max_concurrent_runs;
  mlaas::InferenceService inference(&backend, options);
  std::mt19937 rng(17);
  std::vector<CallerShapeFigures> shapes;
  for (const ModelCase& shape : kModelCases) {
    MALV_ASSIGN_OR_RETURN(mlaas::Mlp mlp, random_mlp(shape, rng));
    MALV_ASSIGN_OR_RETURN(mlaas::ModelId model, inference.add(std::move(mlp)));
    CallerShapeFigures figures{.shape = &shape};
    MALV_ASSIGN_OR_RETURN(figures.calibrated, inference.calibrate(model));
    for (std::size_t callers : kCallerCounts) {
      fmt::print(stderr, "bench mlaas: {} concurrent callers of {} ...\n", callers, shape.what);
      std::vector<Round> batched, unbatched;
      for (int r = 0; r < flags.caller_rounds; ++r) {
        for (bool on : {false, true}) {
          inference.set_batching(on ? mlaas::CallerBatching::kOn : mlaas::CallerBatching::kOff);
          MALV_ASSIGN_OR_RETURN(Round round,
                                measure_round(inference, model, shape, callers, flags.caller_ms));
          (on ? batched : unbatched).push_back(std::move(round));
        }
      }
      figures.points.push_back(
          {.callers = callers, .batched = summarise(batched), .unbatched = summarise(unbatched)});
    }
    // Asynchronous callers: the service's own batching off (one caller of it
    // at a time per submitter or batch), batches formed by the queue.
    inference.set_batching(mlaas::CallerBatching::kOff);
    for (std::size_t callers : kCallerCounts) {
      fmt::print(stderr, "bench mlaas: {} asynchronous callers of {} ...\n", callers, shape.what);
      MALV_ASSIGN_OR_RETURN(std::unique_ptr<mlaas::AsyncInference> queue,
                            mlaas::AsyncInference::create(inference, kAsyncOptions));
      std::vector<Round> batched, unbatched;
      for (int r = 0; r < flags.caller_rounds; ++r) {
        for (bool on : {false, true}) {
          MALV_ASSIGN_OR_RETURN(
              Round round, measure_async_round(inference, on ? queue.get() : nullptr, model, shape,
                                               callers, flags.caller_ms));
          (on ? batched : unbatched).push_back(std::move(round));
        }
      }
      figures.async_points.push_back(
          {.callers = callers, .batched = summarise(batched), .unbatched = summarise(unbatched)});
    }
    inference.release(model);
    shapes.push_back(std::move(figures));
  }
  return shapes;
}

void add_caller_figures(const std::vector<CallerShapeFigures>& shapes,
                        std::vector<harness::Figure>& figures, nlohmann::json& extra) {
  nlohmann::json calibrated = nlohmann::json::object();
  for (const CallerShapeFigures& s : shapes) {
    const std::string key = s.shape->key;
    for (const CallerPoint& p : s.points) {
      const std::string at = fmt::format("{}_blocking_callers{}", key, p.callers);
      const std::string who =
          fmt::format("{} blocking threads calling {}, 1 row a call", p.callers, s.shape->what);
      figures.push_back(
          {at + "_batched_per_s", p.batched.per_s, "inf/s", who + ", batched across callers"});
      figures.push_back(
          {at + "_unbatched_per_s", p.unbatched.per_s, "inf/s", who + ", each call on its own"});
      figures.push_back({at + "_batched_p99_us", p.batched.p99_us, "us", "per call"});
      figures.push_back({at + "_unbatched_p99_us", p.unbatched.p99_us, "us", "per call"});
      figures.push_back({at + "_batched_p50_us", p.batched.p50_us, "us", ""});
      figures.push_back({at + "_unbatched_p50_us", p.unbatched.p50_us, "us", ""});
      figures.push_back({at + "_rows_per_run", p.batched.rows_per_run, "rows",
                         "rows per model run, batched (median round)"});
      figures.push_back({fmt::format("{}_blocking_batched_over_unbatched_{}", key, p.callers),
                         p.batched.per_s / p.unbatched.per_s, "x", "throughput ratio"});
    }
    for (const CallerPoint& p : s.async_points) {
      const std::string at = fmt::format("{}_async_callers{}", key, p.callers);
      const std::string who =
          fmt::format("{} asynchronous callers of {}, 1 row a request", p.callers, s.shape->what);
      figures.push_back({at + "_batched_per_s", p.batched.per_s, "inf/s",
                         who + ", batched across callers (AsyncInference)"});
      figures.push_back({at + "_unbatched_per_s", p.unbatched.per_s, "inf/s",
                         who + ", each run alone inline on its submitter"});
      figures.push_back({at + "_batched_p99_us", p.batched.p99_us, "us", "submit to answer"});
      figures.push_back({at + "_unbatched_p99_us", p.unbatched.p99_us, "us", "submit to answer"});
      figures.push_back({at + "_batched_p50_us", p.batched.p50_us, "us", ""});
      figures.push_back({at + "_unbatched_p50_us", p.unbatched.p50_us, "us", ""});
      figures.push_back({at + "_rows_per_run", p.batched.rows_per_run, "rows",
                         "rows per batch, batched (median round)"});
      figures.push_back({at + "_batched_per_cpu_s", p.batched.per_cpu_s, "inf/cpu-s",
                         "answers per second of the process's CPU time (load-independent)"});
      figures.push_back({at + "_unbatched_per_cpu_s", p.unbatched.per_cpu_s, "inf/cpu-s", ""});
      figures.push_back({fmt::format("{}_async_batched_over_unbatched_{}", key, p.callers),
                         p.batched.per_s / p.unbatched.per_s, "x", "throughput ratio"});
    }
    const std::size_t crossover = s.calibrated.batch;
    const bool never = crossover == mlaas::kNeverAccelerate;
    figures.push_back({key + "_calibrated_crossover_batch",
                       never ? 0.0 : static_cast<double>(crossover), "",
                       never ? "the service's calibration: the accelerator never won (0)"
                             : "the service's calibration: accelerator from this batch on"});
    calibrated[key] = never ? nlohmann::json("none") : nlohmann::json(crossover);
  }
  // The figure: the LinnOS shape, the one whose rows cost enough to
  // batch (kModelCases[0]), with asynchronous callers (the design's callers
  // do not block); the blocking threads' ratio beside it.
  if (!shapes.empty()) {
    const CallerShapeFigures& linnos = shapes.front();
    for (const CallerPoint& p : linnos.async_points) {
      figures.push_back({fmt::format("inference_batched_over_unbatched_{}", p.callers),
                         p.batched.per_s / p.unbatched.per_s, "x",
                         fmt::format("{} throughput, {} asynchronous callers, batched over "
                                     "unbatched{}",
                                     linnos.shape->what, p.callers,
                                     p.callers == 64 ? " (goal >= 4 on the CPU backend)" : "")});
    }
    for (const CallerPoint& p : linnos.points) {
      figures.push_back({fmt::format("inference_blocking_batched_over_unbatched_{}", p.callers),
                         p.batched.per_s / p.unbatched.per_s, "x",
                         fmt::format("{} throughput, {} blocking caller threads, batched over "
                                     "unbatched",
                                     linnos.shape->what, p.callers)});
    }
  }
  extra["calibrated_crossover"] = calibrated;
}

}  // namespace malv::bench
