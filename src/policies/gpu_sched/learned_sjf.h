// learned-sjf: shortest predicted job first within one VM, with a model of
// each work item's run time that ships trained, runs through the host's
// inference service, keeps learning online and persists per host.
//
// The model: an MLP from the item's features (include/malv/sjf_features.h:
// log flops, log bytes, priority class, kernel id) to its log run time.
// create() opens it with model_open("learned-sjf", <shipped>): the host's
// persisted copy (<state_dir>/models/learned-sjf.safetensors) if there is
// one, else malv_learned_sjf.safetensors beside this module (trained by
// `malv sjf train` from traces `malv sjf record` wrote: docs/training.md),
// or the file the environment variable MALV_LEARNED_SJF_MODEL names. A
// persisted model of another shape (an older version's) gives way to the
// shipped one, with a warning. No model, or a shipped one that does not
// take MALV_SJF_FEATURE_COUNT inputs and give 1 output: create() fails and
// the VM keeps its policy.
//
// enqueue_inputs() (ABI 6): for each item the VM queues, the item's
// features and the model; the host runs them as the item is queued, batched
// with every other VM's items (one shared model per host), off the
// scheduler's lock.
//
// decide(): reads those predictions (observation.model_output); only items
// whose prediction was not ready run the model here, in one model_infer
// batch. An error or a NaN output fails the decision (the host's fifo
// decides it).
//
// feedback(): each outcome's features and measured run time join a buffer;
// every kTrainRows outcomes, one model_train call (kSteps steps, learning
// rate kLearningRate) on them. The model is saved (model_save) at most
// every kSaveIntervalNs, after a training, and at destroy() when it learned
// since its last save; a host without a state directory keeps it in memory.
// Every VM's instance shares the host's one model (model_open shares by
// name, ABI 6): what any VM's work teaches it (run times the host measured)
// serves every VM; a score still ranks only its own VM's items.
//
// score = max(0, predicted_ns - waited_ns): shorter predicted work first,
// and an item that has waited as long as its predicted run time scores 0
// and runs before any item with time left (ties: the oldest), so a long
// item is never starved by a stream of short ones. Scores are finite and
// within [0, 1e10] (predictions are clamped to [1 ns, 10 s]).
#pragma once

#include <malv/mlaas.h>

namespace malv_sched_basic {

extern const malv_policy kLearnedSjfPolicy;

}  // namespace malv_sched_basic
