// This thread's decision deadline (see decision_deadline.h).
#include "mlaas/decision_deadline.h"

namespace malv::mlaas {
namespace {

thread_local MonoTime t_deadline = MonoTime::max();
thread_local bool t_missed = false;

}  // namespace

MonoTime current_decision_deadline() { return t_deadline; }

void note_decision_deadline_missed() {
  if (t_deadline != MonoTime::max()) t_missed = true;
}

DecisionDeadlineScope::DecisionDeadlineScope(MonoTime deadline)
    : previous_(t_deadline), previous_missed_(t_missed) {
  t_deadline = deadline;
  t_missed = false;
}

DecisionDeadlineScope::~DecisionDeadlineScope() {
  t_deadline = previous_;
  t_missed = previous_missed_;
}

bool DecisionDeadlineScope::missed() const { return t_missed; }

}  // namespace malv::mlaas
