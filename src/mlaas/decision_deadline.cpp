// This thread's decision deadline (see decision_deadline.h).
#include "mlaas/decision_deadline.h"

namespace malv::mlaas {
namespace {

thread_local MonoTime t_deadline = MonoTime::max();

}  // namespace

MonoTime current_decision_deadline() { return t_deadline; }

DecisionDeadlineScope::DecisionDeadlineScope(MonoTime deadline) : previous_(t_deadline) {
  t_deadline = deadline;
}

DecisionDeadlineScope::~DecisionDeadlineScope() { t_deadline = previous_; }

}  // namespace malv::mlaas
