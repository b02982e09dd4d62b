#include "mlaas/module_messages.h"

#include <fmt/format.h>

#include "malv/mlaas.h"

namespace malv::mlaas {
namespace {

thread_local ModuleMessageCapture* t_capture = nullptr;

}  // namespace

ModuleMessageCapture::ModuleMessageCapture() : outer_(t_capture) { t_capture = this; }

ModuleMessageCapture::~ModuleMessageCapture() { t_capture = outer_; }

void note_module_message(int level, const char* message) {
  if (t_capture == nullptr || message == nullptr || level < MALV_LOG_WARN) return;
  t_capture->last_ = message;
}

std::string module_status_text(int status) {
  switch (status) {
    case MALV_MLAAS_ERR_INVALID: return "invalid (a bad argument)";
    case MALV_MLAAS_ERR_NO_MEMORY: return "no_memory (an allocation failed)";
    case MALV_MLAAS_ERR_NOT_FOUND: return "not_found (an unknown schema, model or file)";
    case MALV_MLAAS_ERR_INTERNAL: return "internal";
    case MALV_MLAAS_ERR_NO_STATE: return "no_state (the host keeps no state directory)";
    case MALV_MLAAS_ERR_IO: return "io (reading or writing a file failed)";
    case MALV_MLAAS_ERR_DIVERGED: return "diverged (training made a weight non-finite)";
    default: return fmt::format("status {}", status);
  }
}

}  // namespace malv::mlaas
