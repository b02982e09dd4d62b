#include "malv/policy_selection.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <sstream>

#include "guest/connection_core.h"
#include "proto/encoder.h"

namespace malv::guest {
namespace {

using wire::Opcode;

Error completion_error(const wire::Completion& c, std::string_view what) {
  return Error(
      static_cast<ErrorCode>(c.status),
      fmt::format("{}: host answered {}", what, error_code_name(static_cast<ErrorCode>(c.status))));
}

// One kPolicyList round trip into `capacity` arena bytes.
Result<wire::Completion> request_table(ConnectionCore& connection, std::uint64_t capacity,
                                       std::string& table) {
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(capacity));
  table.assign(capacity, '\0');
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = capacity;
  pending.read_into = reinterpret_cast<std::byte*>(table.data());
  return connection.call(
      proto::make_command(Opcode::kPolicyList, connection.next_tag(), {offset, capacity}), {},
      pending);
}

}  // namespace

Result<std::vector<PolicyEntry>> parse_policy_table(std::string_view table) {
  std::vector<PolicyEntry> entries;
  std::istringstream lines{std::string(table)};
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    PolicyEntry entry;
    std::string flags;
    if (!(fields >> entry.policy_class >> entry.name >> flags)) {
      return Error(ErrorCode::kDataLoss, fmt::format("malformed policy table line '{}'", line));
    }
    entry.baseline = flags.find('b') != std::string::npos;
    entry.allowed = flags.find('a') != std::string::npos;
    entry.selected = flags.find('s') != std::string::npos;
    entries.push_back(std::move(entry));
  }
  return entries;
}

Result<std::vector<PolicyEntry>> list_policies(Connection& owner) {
  ConnectionCore& connection = core_of(owner);
  std::string table;
  MALV_ASSIGN_OR_RETURN(wire::Completion c, request_table(connection, 4096, table));
  if (static_cast<ErrorCode>(c.status) == ErrorCode::kOutOfRange && c.result > table.size()) {
    // The table outgrew the first guess; the host said how much it needs.
    MALV_ASSIGN_OR_RETURN(c, request_table(connection, c.result, table));
  }
  if (c.status != 0) return completion_error(c, "listing the host's policies");
  table.resize(std::min<std::uint64_t>(c.result, table.size()));
  return parse_policy_table(table);
}

Status select_policy(Connection& owner, std::string_view selection) {
  ConnectionCore& connection = core_of(owner);
  const auto eq = selection.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == selection.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("policy selection '{}' is not class=policy", selection));
  }
  MALV_ASSIGN_OR_RETURN(std::uint64_t offset, connection.arena_allocate(selection.size()));
  std::memcpy(connection.arena().data() + offset, selection.data(), selection.size());
  PendingCommand pending;
  pending.arena_offset = offset;
  pending.arena_bytes = selection.size();
  MALV_ASSIGN_OR_RETURN(
      wire::Completion c,
      connection.call(proto::make_command(Opcode::kPolicySelect, connection.next_tag(),
                                          {offset, selection.size()}),
                      {offset, selection.size()}, pending));
  if (c.status == 0) return ok_status();
  const auto code = static_cast<ErrorCode>(c.status);
  std::string why;
  if (code == ErrorCode::kPermissionDenied || code == ErrorCode::kNotFound) {
    // Name what this VM may pick, so the error says how to fix it.
    const std::string_view cls = selection.substr(0, eq);
    if (auto entries = list_policies(owner); entries.ok()) {
      std::vector<std::string> allowed;
      for (const PolicyEntry& e : entries.value()) {
        if (e.policy_class == cls && e.allowed) allowed.push_back(e.name);
      }
      why = fmt::format(" (this VM may select: {})", fmt::join(allowed, ", "));
    }
  }
  return Error(code, fmt::format("selecting policy {}: host answered {}{}", selection,
                                 error_code_name(code), why));
}

}  // namespace malv::guest
