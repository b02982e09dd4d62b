// DataPipeline: the host side of the offloaded input pipeline for one
// dataset opened by one VM.
//
// The guest's training loop only asks for "the next batch". The pipeline
// knows the dataset (decoded in host memory, shared via DatasetCatalog), the
// batch size and the seed, so it knows which examples batch b holds (epoch
// b / steps_per_epoch, in the order data::shuffled_indices gives for that
// epoch, the last batch of an epoch possibly short: exactly nn::Trainer's
// order). A producer thread gathers upcoming batches into host staging
// memory and uploads them into device slots on the pipeline's own queue,
// ahead of use, recording an event per slot. next() hands out the slot of
// the next batch; the caller (the session) makes the guest's stream wait
// for the slot's event and copies the slot into the guest's own buffers,
// then release()s the slot once those copies ran.
//
// How many batches are staged ahead is the VM's prefetch policy's decision
// (MLaaS class prefetch; baseline: a fixed depth), taken every
// kDecisionEvery batches from what the pipeline measured: consumption and
// production rates and the time the consumer waited. Before each decision the
// policy hears what its previous one gave (malv_prefetch_outcome: the depth
// that applied and the consumer's stall meanwhile). The observation's vm_id
// is the host's to fill (the pipeline knows the VM by name).
//
// Device memory for the slots comes from the VM's backend view, so it counts
// against the VM's quota. On an oversubscribed VM the slots are buffers of
// its memory manager: from staging until release() a slot is held resident
// (accel::Backend::hold_resident), so a batch about to be consumed is never
// spilled; the manager grants holds up to half the resident quota, so the
// prefetch depth that stays resident is bounded by the quota too. Threads: next()/release() from
// any thread; one producer thread per pipeline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "data/dataset.h"
#include "malv/result.h"
#include "offload/dataset_catalog.h"

namespace malv::offload {

struct PipelineOptions {
  std::string vm;                   // for the prefetch policy and logs
  std::uint64_t stream_id = 0;      // for the prefetch policy's observations
  std::uint32_t batch = 128;        // examples per batch
  std::uint64_t seed = 1;           // example order
  std::uint64_t first_batch = 0;    // resume position
  std::uint32_t max_depth = 8;      // batches staged ahead at most (>= 1)
  std::uint32_t initial_depth = 2;  // until the policy first decides
  PrefetchPolicy prefetch;          // null: keep initial_depth
  PrefetchFeedback feedback;        // null: the policy hears nothing back
  ProducerDelay producer_delay;     // null: none (dataset_catalog.h)
  // Told every time next() waited for a batch, with the wait (the host sums
  // it per VM for the feature data_stall_share). Null: nobody is told.
  std::function<void(std::int64_t waited_ns)> on_stall;
};

struct PipelineStats {
  std::uint64_t produced = 0;          // batches uploaded
  std::uint64_t consumed = 0;          // batches handed out by next()
  std::int64_t consumer_stall_ns = 0;  // time next() waited in all
  std::uint32_t depth = 0;             // current staging depth
  std::uint64_t policy_decisions = 0;
};

class DataPipeline {
 public:
  static constexpr std::uint64_t kDecisionEvery = 8;

  [[nodiscard]] static Result<std::shared_ptr<DataPipeline>> start(
      accel::Backend& backend, std::shared_ptr<const data::Dataset> dataset,
      PipelineOptions options);
  ~DataPipeline();
  DataPipeline(const DataPipeline&) = delete;
  DataPipeline& operator=(const DataPipeline&) = delete;

  struct Batch {
    std::uint64_t index = 0;    // batch number since the start of epoch 0
    std::uint32_t rows = 0;     // examples in it (the last of an epoch may be short)
    std::uint32_t slot = 0;     // release() this once done with the device memory
    accel::DevicePtr features;  // rows x dims float32
    accel::DevicePtr labels;    // rows int32
    accel::EventId ready;       // recorded after the upload on the pipeline's queue
  };
  // The next batch; waits while the producer has not staged one yet. Its
  // upload is queued, not done: device work that reads it waits for `ready`.
  [[nodiscard]] Result<Batch> next();
  // The slot of a batch from next() may be refilled. Only once `ready` has
  // fired (in practice: once the copies out of the slot, which waited for
  // it, ran): the producer rewrites the slot's host staging at once.
  void release(std::uint32_t slot);

  std::uint64_t examples() const { return dataset_->count; }
  std::uint32_t dims() const { return static_cast<std::uint32_t>(dataset_->dims); }
  std::uint32_t batch_size() const { return options_.batch; }
  std::uint64_t steps_per_epoch() const { return steps_per_epoch_; }
  PipelineStats stats() const;

 private:
  enum class SlotState { kFree, kStaged, kInUse };
  struct Slot {
    accel::DevicePtr features;
    accel::DevicePtr labels;
    accel::EventId ready;
    std::vector<float> host_features;  // staging; alive until the upload ran
    std::vector<std::int32_t> host_labels;
    SlotState state = SlotState::kFree;
    bool held = false;  // hold_resident() granted for both buffers
  };
  struct Staged {
    std::uint32_t slot;
    std::uint64_t index;
    std::uint32_t rows;
  };

  DataPipeline(accel::Backend& backend, std::shared_ptr<const data::Dataset> dataset,
               PipelineOptions options);
  [[nodiscard]] Status allocate_slots();
  void produce_loop();
  std::uint32_t gather(Slot& slot, std::uint64_t index);
  void maybe_ask_policy();  // mu_ held

  accel::Backend& backend_;
  const std::shared_ptr<const data::Dataset> dataset_;
  const PipelineOptions options_;
  std::uint64_t steps_per_epoch_ = 0;
  accel::QueueId queue_;
  bool have_queue_ = false;

  mutable std::mutex mu_;
  std::condition_variable producer_cv_;
  std::condition_variable consumer_cv_;
  std::vector<Slot> slots_;          // fixed once started
  std::deque<Staged> staged_;        // uploaded (or uploading), in batch order
  std::uint64_t next_to_stage_ = 0;  // batch index the producer stages next
  std::uint32_t depth_ = 1;
  bool consumer_waiting_ = false;
  bool stop_ = false;
  Status producer_error_;  // the first failure, reported by next()
  PipelineStats stats_;
  std::int64_t stall_since_decision_ns_ = 0;
  std::int64_t last_decision_ns_ = 0;
  std::uint64_t consumed_at_decision_ = 0;
  std::uint64_t produced_at_decision_ = 0;
  std::int64_t production_ns_ = 0;  // time spent gathering and issuing since the decision
  // The observation of the latest decision, reported back with what followed.
  malv_prefetch_observation last_observation_{};
  bool decided_ = false;
  // The producer thread's own: the permutation of the epoch it stages from.
  std::uint64_t order_epoch_ = ~0ull;
  std::vector<std::uint32_t> order_;
  std::thread producer_;
};

}  // namespace malv::offload
