// DecisionDeadline: when the policy decision this thread is making must be
// answered, so that the host services a module calls during decide() (the
// inference service above all) never keep it past its class's budget.
//
//   // PolicyRunner, around a module's decide():
//   DecisionDeadlineScope scope(MonoClock::now() + options.budget_for(cls));
//   policy.decide(...);
//
//   // HostServices::model_infer, called by the module from inside decide():
//   inference.infer(model, in, rows, out, current_decision_deadline());
//
// The module ABI has no deadline argument: the host knows each class's
// budget and when it called decide(), so the deadline travels on the thread
// instead. Outside a decision (a module's create(), a host thread) there is
// none: current_decision_deadline() is MonoTime::max().
#pragma once

#include "base/clock.h"

namespace malv::mlaas {

// MonoTime::max() when this thread is not inside a guarded decision.
MonoTime current_decision_deadline();
// A host service (HostServices::model_infer) gave up on the decision's
// deadline: the runner then counts a failed decide() as late, not as the
// module's error (the ABI has no status for it). No effect outside a scope.
void note_decision_deadline_missed();

// Sets this thread's decision deadline for its lifetime; scopes nest (the
// inner one wins while it lives, the outer one is restored after).
class DecisionDeadlineScope {
 public:
  explicit DecisionDeadlineScope(MonoTime deadline);
  ~DecisionDeadlineScope();
  // Whether a host service missed this scope's deadline so far.
  bool missed() const;
  DecisionDeadlineScope(const DecisionDeadlineScope&) = delete;
  DecisionDeadlineScope& operator=(const DecisionDeadlineScope&) = delete;

 private:
  MonoTime previous_;
  bool previous_missed_;
};

}  // namespace malv::mlaas
