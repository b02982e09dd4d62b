// AsyncInference: asynchronous callers of the inference service. Many
// concurrent callers each get exactly their own rows back (checked by content
// against a single-caller run), batches really form, deadlines end in
// kDeadlineExceeded and never in a late answer, back-pressure refuses without
// losing anything, shutdown aborts what has not run, bad input is refused.
#include "mlaas/async_inference.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "mlaas/inference_service.h"

namespace malv::mlaas {
namespace {

using namespace std::chrono_literals;

Mlp random_mlp(std::size_t in, std::size_t hidden, std::size_t out, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  auto layer = [&](std::size_t i, std::size_t o, Activation act) {
    DenseLayer l{i, o, {}, {}, act};
    l.weight.resize(i * o);
    for (float& w : l.weight) w = dist(rng);
    l.bias.resize(o);
    for (float& b : l.bias) b = dist(rng);
    return l;
  };
  std::vector<DenseLayer> layers;
  layers.push_back(layer(in, hidden, Activation::kRelu));
  layers.push_back(layer(hidden, out, Activation::kIdentity));
  return Mlp::create(std::move(layers)).value();
}

// Caller c's rows of request k: unlike any other caller's or request's.
std::vector<float> caller_rows(std::size_t caller, std::size_t call, std::size_t rows,
                               std::size_t dim) {
  std::vector<float> in(rows * dim);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t d = 0; d < dim; ++d) {
      in[r * dim + d] =
          std::sin(static_cast<float>(caller * 7919 + call * 31 + r * 7 + d) * 0.61f) +
          static_cast<float>(caller) * 0.01f;
    }
  }
  return in;
}

std::size_t rows_of(std::size_t caller, std::size_t call) { return 1 + (caller + call) % 3; }

bool same_rows(std::span<const float> got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-4f)) return false;
  }
  return true;
}

constexpr std::size_t kIn = 6, kOut = 3;

struct Fixture {
  Mlp mlp = random_mlp(kIn, 24, kOut, 21);
  InferenceService service{nullptr, {.calibrate = false}};
  ModelId model = service.add(mlp).value();

  std::vector<float> want(std::size_t caller, std::size_t call) const {
    const std::size_t rows = rows_of(caller, call);
    std::vector<float> in = caller_rows(caller, call, rows, kIn), out(rows * kOut);
    mlp.infer_cpu(in.data(), rows, out.data());
    return out;
  }
  Result<InferenceTicket> submit(AsyncInference& queue, std::size_t caller, std::size_t call,
                                 MonoTime deadline = MonoTime::max()) {
    const std::size_t rows = rows_of(caller, call);
    std::vector<float> in = caller_rows(caller, call, rows, kIn);
    return queue.submit(model, in.data(), rows, deadline);
  }
};

TEST(AsyncInference, ManyConcurrentCallersEachGetExactlyTheirOwnRows) {
  // 4 submitter threads, 16 logical callers each, every caller with one
  // request in flight: submit, and when its answer is ready check it and
  // submit the next.
  constexpr std::size_t kThreads = 4, kPerThread = 16, kCalls = 40;
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.window = 200us}).value();
  std::atomic<std::size_t> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<InferenceTicket> tickets(kPerThread);
      std::vector<std::size_t> call(kPerThread, 0);
      for (std::size_t i = 0; i < kPerThread; ++i) {
        Result<InferenceTicket> r = f.submit(*queue, t * kPerThread + i, 0);
        if (!r.ok()) {
          ++failed;
          return;
        }
        tickets[i] = std::move(r).value();
      }
      std::size_t open = kPerThread;
      while (open != 0) {
        bool progressed = false;
        for (std::size_t i = 0; i < kPerThread; ++i) {
          if (!tickets[i].valid() || !tickets[i].ready()) continue;
          progressed = true;
          const std::size_t caller = t * kPerThread + i;
          if (!tickets[i].status().ok()) {
            ++failed;
          } else if (!same_rows(tickets[i].output(), f.want(caller, call[i]))) {
            ++wrong;
          }
          if (++call[i] == kCalls) {
            tickets[i] = {};
            --open;
            continue;
          }
          Result<InferenceTicket> r = f.submit(*queue, caller, call[i]);
          if (!r.ok()) {
            ++failed;
            tickets[i] = {};
            --open;
            continue;
          }
          tickets[i] = std::move(r).value();
        }
        if (!progressed) {
          for (const InferenceTicket& ticket : tickets) {
            if (ticket.valid() && !ticket.ready()) {
              ticket.wait();
              break;
            }
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0u);
  EXPECT_EQ(wrong.load(), 0u) << "a caller got rows that were not its own";
  const AsyncInferenceCounters stats = queue->stats();
  EXPECT_EQ(stats.submitted, kThreads * kPerThread * kCalls);
  EXPECT_EQ(stats.answered, stats.submitted);
  EXPECT_LE(stats.batches, stats.submitted);
}

TEST(AsyncInference, PendingRequestsOfManyCallersRunAsOneBatch) {
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.batching_thread = false}).value();
  constexpr std::size_t kCallers = 64;
  std::vector<InferenceTicket> tickets;
  std::size_t rows = 0;
  for (std::size_t c = 0; c < kCallers; ++c) {
    tickets.push_back(f.submit(*queue, c, 0).value());
    rows += rows_of(c, 0);
  }
  for (const InferenceTicket& t : tickets) EXPECT_FALSE(t.ready());
  EXPECT_EQ(queue->run_pending(), kCallers);
  for (std::size_t c = 0; c < kCallers; ++c) {
    ASSERT_TRUE(tickets[c].ready());
    ASSERT_TRUE(tickets[c].status().ok());
    EXPECT_EQ(tickets[c].rows(), rows_of(c, 0));
    EXPECT_TRUE(same_rows(tickets[c].output(), f.want(c, 0))) << "caller " << c;
  }
  const AsyncInferenceCounters stats = queue->stats();
  EXPECT_EQ(stats.batches, 1u);
  EXPECT_EQ(stats.batch_rows, rows);
  EXPECT_EQ(stats.largest_batch, rows);
  EXPECT_EQ(f.service.stats().runs(), 1u) << "one service call for every caller";
}

TEST(AsyncInference, ABatchNeverPassesMaxBatchRows) {
  Fixture f;
  auto queue =
      AsyncInference::create(f.service, {.max_batch_rows = 8, .batching_thread = false}).value();
  std::vector<InferenceTicket> tickets;
  for (std::size_t c = 0; c < 20; ++c) tickets.push_back(f.submit(*queue, c, 0).value());
  EXPECT_EQ(queue->run_pending(), 20u);
  for (std::size_t c = 0; c < 20; ++c) {
    EXPECT_TRUE(same_rows(tickets[c].output(), f.want(c, 0))) << "caller " << c;
  }
  EXPECT_LE(queue->stats().largest_batch, 8u);
  std::vector<float> in(9 * kIn);
  Result<InferenceTicket> too_big = queue->submit(f.model, in.data(), 9);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kInvalidArgument);
}

TEST(AsyncInference, ALoneCallerIsAnsweredWithoutWaitingForTheWindow) {
  Fixture f;
  // An hour's window: a request that waited for it would not be answered
  // within the 10 s this test gives it.
  auto queue = AsyncInference::create(f.service, {.window = 1h}).value();
  InferenceTicket t = f.submit(*queue, 0, 0).value();
  for (int i = 0; i < 10000 && !t.ready(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(t.ready()) << "a lone caller waited for the window";
  ASSERT_TRUE(t.status().ok());
  EXPECT_TRUE(same_rows(t.output(), f.want(0, 0)));
}

TEST(AsyncInference, ARequestPastItsDeadlineGetsDeadlineExceededNeverAnAnswer) {
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.batching_thread = false}).value();
  InferenceTicket late = f.submit(*queue, 0, 0, MonoClock::now() + 1ms).value();
  InferenceTicket on_time = f.submit(*queue, 1, 0).value();
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(queue->run_pending(), 2u);
  ASSERT_TRUE(late.ready());
  ASSERT_FALSE(late.status().ok());
  EXPECT_EQ(late.status().error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(late.output().empty());
  ASSERT_TRUE(on_time.status().ok()) << "its batch-mate's deadline does not touch it";
  EXPECT_TRUE(same_rows(on_time.output(), f.want(1, 0)));
  EXPECT_EQ(queue->stats().deadline_exceeded, 1u);
}

TEST(AsyncInference, AnAnswerReadyAfterTheDeadlineIsDropped) {
  // A run that takes far longer than the deadline (a wide model, many rows):
  // whether the batch starts before the deadline or not, the request ends in
  // kDeadlineExceeded, never with its rows.
  const Mlp wide = random_mlp(256, 2048, 256, 5);
  InferenceService service(nullptr, {.calibrate = false});
  const ModelId model = service.add(wide).value();
  auto queue = AsyncInference::create(service, {}).value();
  std::vector<float> in(512 * 256, 0.25f);
  InferenceTicket t = queue->submit(model, in.data(), 512, MonoClock::now() + 20us).value();
  t.wait();
  ASSERT_FALSE(t.status().ok());
  EXPECT_EQ(t.status().error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(t.output().empty());
}

TEST(AsyncInference, TooManyPendingRequestsAreRefusedAndNothingIsLost) {
  Fixture f;
  auto queue =
      AsyncInference::create(f.service, {.max_pending_requests = 4, .batching_thread = false})
          .value();
  std::vector<InferenceTicket> tickets;
  for (std::size_t c = 0; c < 4; ++c) tickets.push_back(f.submit(*queue, c, 0).value());
  Result<InferenceTicket> refused = f.submit(*queue, 4, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(refused.error().message().find("max_pending_requests 4"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(queue->stats().rejected, 1u);
  EXPECT_EQ(queue->run_pending(), 4u);
  for (std::size_t c = 0; c < 4; ++c) {
    ASSERT_TRUE(tickets[c].status().ok());
    EXPECT_TRUE(same_rows(tickets[c].output(), f.want(c, 0)));
  }
  // Room again once they ran.
  InferenceTicket again = f.submit(*queue, 4, 0).value();
  EXPECT_EQ(queue->run_pending(), 1u);
  EXPECT_TRUE(same_rows(again.output(), f.want(4, 0)));
}

TEST(AsyncInference, ShutdownAbortsPendingRequestsAndRefusesNewOnes) {
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.batching_thread = false}).value();
  std::vector<InferenceTicket> tickets;
  for (std::size_t c = 0; c < 3; ++c) tickets.push_back(f.submit(*queue, c, 0).value());
  queue->shutdown();
  for (const InferenceTicket& t : tickets) {
    ASSERT_TRUE(t.ready());
    ASSERT_FALSE(t.status().ok());
    EXPECT_EQ(t.status().error().code(), ErrorCode::kAborted);
    EXPECT_TRUE(t.output().empty());
  }
  EXPECT_EQ(queue->stats().aborted, 3u);
  Result<InferenceTicket> after = f.submit(*queue, 3, 0);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::kAborted);
  queue->shutdown();  // again: nothing to do
  EXPECT_EQ(queue->run_pending(), 0u);
}

TEST(AsyncInference, TicketsOutliveTheQueueThatAnsweredThem) {
  Fixture f;
  InferenceTicket t;
  {
    auto queue = AsyncInference::create(f.service, {}).value();
    t = f.submit(*queue, 7, 0).value();
    t.wait();
  }
  ASSERT_TRUE(t.status().ok());
  EXPECT_TRUE(same_rows(t.output(), f.want(7, 0)));
}

TEST(AsyncInference, BadInputIsRefusedAndTheQueueGoesOn) {
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.batching_thread = false}).value();
  std::vector<float> in(kIn);
  Result<InferenceTicket> unknown = queue->submit(ModelId(999), in.data(), 1);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(unknown.error().message().find("999"), std::string::npos);
  Result<InferenceTicket> none = queue->submit(f.model, in.data(), 0);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::kInvalidArgument);
  Result<InferenceTicket> null = queue->submit(f.model, nullptr, 1);
  ASSERT_FALSE(null.ok());
  EXPECT_EQ(null.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(InferenceTicket().status().ok());

  InferenceTicket good = f.submit(*queue, 0, 0).value();
  EXPECT_FALSE(good.status().ok()) << "not answered yet";
  EXPECT_EQ(queue->run_pending(), 1u);
  EXPECT_TRUE(same_rows(good.output(), f.want(0, 0)));

  for (auto options :
       {AsyncInferenceOptions{.max_batch_rows = 0},
        AsyncInferenceOptions{.max_pending_requests = 0}, AsyncInferenceOptions{.window = -1us}}) {
    Result<std::unique_ptr<AsyncInference>> bad = AsyncInference::create(f.service, options);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(AsyncInference, ARequestForAReleasedModelGetsTheServicesError) {
  Fixture f;
  auto queue = AsyncInference::create(f.service, {.batching_thread = false}).value();
  InferenceTicket first = f.submit(*queue, 0, 0).value();  // the model is known to the queue
  f.service.release(f.model);
  EXPECT_EQ(queue->run_pending(), 1u);
  ASSERT_TRUE(first.ready());
  ASSERT_FALSE(first.status().ok());
  EXPECT_EQ(first.status().error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(queue->stats().failed, 1u);
}

}  // namespace
}  // namespace malv::mlaas
