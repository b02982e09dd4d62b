#include "harness/admin_client.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include "host/host_config.h"

namespace malv::harness {

std::string default_admin_socket() { return host::default_runtime_dir() + "/admin.sock"; }

namespace {

httplib::Client make_client(const std::string& path) {
  httplib::Client client(path);
  client.set_address_family(AF_UNIX);
  client.set_connection_timeout(2, 0);
  // A live host answers in milliseconds; 30 s covers one starved of CPU
  // (a sanitizer build beside other tests took over 10 s once).
  client.set_read_timeout(30, 0);
  return client;
}

ErrorCode code_for_status(int status) {
  switch (status) {
    case 404: return ErrorCode::kNotFound;
    case 409: return ErrorCode::kAlreadyExists;
    case 401: return ErrorCode::kUnauthenticated;
    case 403: return ErrorCode::kPermissionDenied;
    case 429: return ErrorCode::kResourceExhausted;
    case 500: return ErrorCode::kInternal;
    default: return ErrorCode::kInvalidArgument;
  }
}

}  // namespace

Result<nlohmann::json> AdminClient::call(const std::string& method, const std::string& target,
                                         const nlohmann::json& body) const {
  httplib::Client client = make_client(path_);
  const std::string payload = body.is_null() ? std::string() : body.dump();
  httplib::Result res(nullptr, httplib::Error::Unknown);
  if (method == "GET") {
    res = client.Get(target.c_str());
  } else if (method == "POST") {
    res = client.Post(target.c_str(), payload, "application/json");
  } else if (method == "PATCH") {
    res = client.Patch(target.c_str(), payload, "application/json");
  } else if (method == "PUT") {
    res = client.Put(target.c_str(), payload, "application/json");
  } else if (method == "DELETE") {
    res = client.Delete(target.c_str());
  } else {
    return Error(ErrorCode::kInvalidArgument, "unknown HTTP method " + method);
  }
  if (!res) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("no host answers on {} ({}); is `malv serve` running?", path_,
                             httplib::to_string(res.error())));
  }
  nlohmann::json reply = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status >= 300) {
    std::string message = reply.is_object() ? reply.value("message", res->body) : res->body;
    return Error(code_for_status(res->status), message);
  }
  if (reply.is_discarded()) return Error(ErrorCode::kDataLoss, "host sent invalid JSON");
  return reply;
}

Result<std::string> AdminClient::get_text(const std::string& target) const {
  httplib::Client client = make_client(path_);
  auto res = client.Get(target.c_str());
  if (!res) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("no host answers on {}; is `malv serve` running?", path_));
  }
  return res->body;
}

}  // namespace malv::harness
