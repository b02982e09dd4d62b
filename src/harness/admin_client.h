// AdminClient: talks to a running host's admin API (HTTP + JSON over its
// Unix socket) for `malv vm`, `malv policy` and `malv stats`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "malv/result.h"

namespace malv::harness {

// The admin socket to use when --admin is not given.
std::string default_admin_socket();

class AdminClient {
 public:
  explicit AdminClient(std::string socket_path) : path_(std::move(socket_path)) {}
  // method: GET, POST, PATCH, PUT, DELETE. The host's {"error","message"}
  // replies come back as an Error with the host's message.
  [[nodiscard]] Result<nlohmann::json> call(const std::string& method, const std::string& target,
                                            const nlohmann::json& body = nullptr) const;
  [[nodiscard]] Result<std::string> get_text(const std::string& target) const;

 private:
  std::string path_;
};

}  // namespace malv::harness
