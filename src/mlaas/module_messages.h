// ModuleMessageCapture: what a module logged (warnings and errors) while
// the host was calling it on this thread, so that a refused create() can say
// why in the reply rather than only in the host's log.
//
//   ModuleMessageCapture capture;
//   int status = policy->create(services, vm, &state);
//   if (status != MALV_MLAAS_OK) ... capture.last() ...
#pragma once

#include <string>

namespace malv::mlaas {

class ModuleMessageCapture {
 public:
  ModuleMessageCapture();
  ~ModuleMessageCapture();
  ModuleMessageCapture(const ModuleMessageCapture&) = delete;
  ModuleMessageCapture& operator=(const ModuleMessageCapture&) = delete;

  // The last warning or error logged on this thread since construction ("" if none).
  const std::string& last() const { return last_; }

 private:
  friend void note_module_message(int level, const char* message);
  ModuleMessageCapture* outer_;
  std::string last_;
};

// Called by the host services' log function for every message a module logs.
void note_module_message(int level, const char* message);

// "not_found (an unknown schema, model or file)" for MALV_MLAAS_ERR_NOT_FOUND, ...
std::string module_status_text(int status);

}  // namespace malv::mlaas
