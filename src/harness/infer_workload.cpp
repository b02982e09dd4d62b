// `malv guest infer`: a guest's inference service, on a host's vGPU or natively.
//
// Loads a model checkpoint written by `malv guest train --checkpoint` and
// serves requests from a built-in open-loop request generator: requests
// arrive at --rate per second (Poisson arrivals, or a fixed interval), each
// one a --batch of Fashion-MNIST test images. Serving a request uploads its
// inputs, runs the forward pass and reads the predicted classes back; the
// predictions are scored against the labels.
//
// Latency is measured from a request's scheduled arrival to its answer, as a
// client would see it: when the service falls behind, the time a request
// waited for its turn counts too (no coordinated omission). Percentiles
// (p50/p90/p99/max) and the achieved rate are printed every --report-every
// seconds for that window, and for the whole run at the end; --json prints
// the same as one JSON object per line (with the window's raw latencies),
// for `malv demo` and scripts. SIGINT or SIGTERM ends the run early, with
// the final report.
#include "harness/infer_workload.h"

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/clock.h"
#include "harness/guest_target.h"
#include "harness/report.h"
#include "nn/checkpoint.h"
#include "nn/dataset.h"
#include "nn/mlp.h"

namespace malv::harness {
namespace {

using nlohmann::json;

constexpr int kWarmupRequests = 5;

std::atomic<bool> g_stop_requested{false};

void request_stop(int) { g_stop_requested.store(true); }

// The latencies of a window (or the whole run) and what became of them.
struct LatencyWindow {
  std::vector<double> latencies_ms;
  std::uint64_t examples = 0;
  std::uint64_t correct = 0;
};

struct LatencySummary {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

LatencySummary summarise(std::vector<double> samples) {
  LatencySummary s;
  if (samples.empty()) return s;
  s.p50 = percentile(samples, 0.50);
  s.p90 = percentile(samples, 0.90);
  s.p99 = percentile(samples, 0.99);
  s.max = samples.back();  // percentile() sorted them
  return s;
}

// Arrival times of the request generator, relative to its start.
class ArrivalClock {
 public:
  ArrivalClock(double rate, bool poisson, std::uint64_t seed)
      : rate_(rate), poisson_(poisson), rng_(seed), gap_(rate) {}
  // The arrival time of the next request, in seconds since the start.
  double next() {
    t_ += poisson_ ? gap_(rng_) : 1.0 / rate_;
    return t_;
  }

 private:
  double rate_;
  bool poisson_;
  std::mt19937_64 rng_;
  std::exponential_distribution<double> gap_;
  double t_ = 0.0;
};

void print_report(const InferOptions& flags, const char* event, double elapsed_s, double span_s,
                  std::uint64_t total_requests, const LatencyWindow& window) {
  const LatencySummary lat = summarise(window.latencies_ms);
  const auto n = window.latencies_ms.size();
  const double achieved = span_s > 0 ? static_cast<double>(n) / span_s : 0.0;
  const double accuracy = window.examples == 0 ? 0.0
                                               : static_cast<double>(window.correct) /
                                                     static_cast<double>(window.examples);
  if (flags.json) {
    json line{{"event", event},       {"elapsed_s", elapsed_s}, {"requests", total_requests},
              {"window_requests", n}, {"rate", achieved},       {"target_rate", flags.rate},
              {"batch", flags.batch}, {"p50_ms", lat.p50},      {"p90_ms", lat.p90},
              {"p99_ms", lat.p99},    {"max_ms", lat.max},      {"accuracy", accuracy}};
    if (std::string_view(event) == "progress") line["latencies_ms"] = window.latencies_ms;
    fmt::print("{}\n", line.dump());
  } else {
    fmt::print(
        "{}{:7.1f} s  {:6} requests  {:7.1f}/s  p50 {:7.2f} ms  p90 {:7.2f} ms  "
        "p99 {:7.2f} ms  max {:7.2f} ms  accuracy {:.4f}\n",
        std::string_view(event) == "done" ? "total" : "     ", elapsed_s, total_requests, achieved,
        lat.p50, lat.p90, lat.p99, lat.max, accuracy);
  }
  std::fflush(stdout);
}

}  // namespace

Status infer(const InferOptions& flags) {
  // Connect first: a missing host is reported before data loading.
  MALV_ASSIGN_OR_RETURN(GuestTarget target, open_target(flags.target));
  std::FILE* const text = flags.json ? stderr : stdout;

  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, nn::read_file(flags.checkpoint));
  auto decoded = nn::decode_checkpoint(bytes);
  if (!decoded.ok()) return std::move(decoded).error().with_context("reading " + flags.checkpoint);
  MALV_ASSIGN_OR_RETURN(std::string model, decoded->require("model"));
  MALV_ASSIGN_OR_RETURN(nn::MlpSpec spec, nn::MlpSpec::parse(model));
  // Inference needs no optimizer state: SGD keeps none on the device.
  MALV_ASSIGN_OR_RETURN(
      auto mlp,
      nn::Mlp::create(
          *target.device, spec,
          {.max_batch = flags.batch, .seed = 1, .optimizer = {.kind = nn::OptimizerKind::kSgd}}));
  MALV_TRY_CONTEXT(mlp->load_parameters(bytes), "loading parameters from " + flags.checkpoint);

  MALV_ASSIGN_OR_RETURN(nn::Dataset test_set,
                        nn::load_fashion_mnist(flags.data_dir, nn::Split::kTest));
  if (test_set.dims != static_cast<std::size_t>(spec.inputs())) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("the model takes {} inputs, the data has {}", spec.inputs(), test_set.dims));
  }
  const auto batch = static_cast<std::size_t>(flags.batch);
  std::mt19937_64 pick(flags.seed);
  std::uniform_int_distribution<std::size_t> first_example(0, test_set.count - batch);
  LatencyWindow window;
  LatencyWindow total;
  // One request: `batch` consecutive test examples from a random start.
  auto serve_one = [&]() -> Status {
    const std::size_t first = first_example(pick);
    MALV_ASSIGN_OR_RETURN(
        std::vector<std::int32_t> predicted,
        mlp->predict(
            std::span(test_set.features).subspan(first * test_set.dims, batch * test_set.dims)));
    std::uint64_t right = 0;
    for (std::size_t i = 0; i < batch; ++i) right += predicted[i] == test_set.labels[first + i];
    window.examples += batch;
    window.correct += right;
    return ok_status();
  };
  for (int i = 0; i < kWarmupRequests; ++i) MALV_TRY(serve_one());
  window = {};

  fmt::print(text, "serving {} from {} on {}: {} arrivals at {}/s, {} examples per request, {}\n",
             spec.to_string(), flags.checkpoint, target.device->describe(), flags.arrivals,
             flags.rate, batch,
             flags.requests > 0 ? fmt::format("{} requests", flags.requests)
                                : fmt::format("for {} s", flags.duration_s));
  std::fflush(text);
  if (flags.json) {
    fmt::print("{}\n", json{{"event", "start"},
                            {"model", spec.to_string()},
                            {"device", target.device->describe()},
                            {"target_rate", flags.rate},
                            {"batch", flags.batch}}
                           .dump());
    std::fflush(stdout);
  }

  ::signal(SIGINT, request_stop);
  ::signal(SIGTERM, request_stop);
  ArrivalClock arrivals(flags.rate, flags.arrivals == "poisson", flags.seed);
  const MonoTime start = MonoClock::now();
  auto at = [&](double s) {
    return start + std::chrono::duration_cast<Nanos>(std::chrono::duration<double>(s));
  };
  auto since_start = [&] {
    return std::chrono::duration<double>(MonoClock::now() - start).count();
  };
  double next_report = flags.report_every_s;
  double window_start = 0.0;
  std::uint64_t served = 0;
  double arrival = arrivals.next();
  for (;;) {
    if (g_stop_requested.load()) break;
    if (flags.requests > 0 ? served >= flags.requests : arrival >= flags.duration_s) break;
    // Sleep in short slices so a stop request is seen promptly.
    while (!g_stop_requested.load() && MonoClock::now() < at(arrival)) {
      std::this_thread::sleep_until(
          std::min(at(arrival), MonoClock::now() + std::chrono::milliseconds(50)));
    }
    if (g_stop_requested.load()) break;
    MALV_TRY(serve_one());
    // Microsecond resolution is plenty and keeps --json lines short.
    const double latency_ms = std::round((since_start() - arrival) * 1e6) / 1e3;
    window.latencies_ms.push_back(latency_ms);
    total.latencies_ms.push_back(latency_ms);
    ++served;
    arrival = arrivals.next();
    if (const double now = since_start(); now >= next_report) {
      print_report(flags, "progress", now, now - window_start, served, window);
      total.examples += window.examples;
      total.correct += window.correct;
      window = {};
      window_start = now;
      next_report = now + flags.report_every_s;
    }
  }
  total.examples += window.examples;
  total.correct += window.correct;
  const double elapsed = since_start();
  print_report(flags, "done", elapsed, elapsed, served, total);
  return ok_status();
}

}  // namespace malv::harness
