// learned-sjf: shortest predicted job first, with an MLP that learns each
// work item's run time online from the scheduler's feedback.
//
// Features of an item: log1p(est_flops), log1p(est_bytes) (scaled), its
// priority class and a one-hot of kernel_id mod 16. A 19-16-1 MLP (relu)
// predicts ln(run_ns); feedback() takes one SGD step per outcome on the
// squared error. Before any feedback the prediction is the same for every
// item (1e5 ns), so the policy starts as FIFO-by-aging.
//
// score = predicted_ns - waited_ns. Predictions are clamped to
// [1 ns, 10 s], so an item's score falls without bound while it waits and a
// new item's score is never below 0: an item that waited longer than the
// largest prediction beats every newcomer. It cannot starve.
#pragma once

#include <malv/mlaas.h>

namespace malv_sched_basic {

extern const malv_policy kLearnedSjfPolicy;

}  // namespace malv_sched_basic
