// PyTorch operators on the host: what the `malv` torch device sends
// (docs/torch.md). A guest names an `aten::` operator once per connection
// and then queues calls of it on a stream with their arguments as tagged
// values (malv/aten_record.h): tensors are a buffer handle and a view
// (byte offset, dtype, sizes, strides), never a pointer. The host checks
// each call whole against the operator's schema and every view against the
// VM's own buffers, and runs it, in stream order, with its libtorch over
// the VM's memory.
//
//   auto add = guest::aten_intern(*conn, "aten::add.Tensor").value();
//   guest::aten_enqueue(*conn, stream, add, {a, b, alpha, out});   // returns at once
//   auto item = guest::aten_call(*conn, stream, dense, {t});         // waits, returns values
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

#include "malv/aten_record.h"
#include "malv/connection.h"
#include "malv/result.h"
#include "malv/stream.h"

namespace malv::guest {

// The operator's id on this connection; kPermissionDenied when the host's
// allow-list refuses it, kNotFound when the host's libtorch lacks it,
// kUnimplemented when the host has no executor (or not for this VM), each
// with the host's reason.
[[nodiscard]] Result<std::uint32_t> aten_intern(Connection& connection,
                                                std::string_view schema_name);

// Queues a call on the stream and returns: a refusal or PyTorch's error
// surfaces at the stream's next synchronize (by code; aten_call() gives
// the message). Calls queued together travel as one kAtenBatch: sent at
// once while the host has fewer than two in flight, else gathered until
// one completes (or the batch is full, or any other command of the
// connection is submitted, which keeps stream order); a call that fails on
// the host ends its batch, and the calls after it in that batch do not run.
[[nodiscard]] Status aten_enqueue(Connection& connection, Stream& stream, std::uint32_t op,
                                  std::span<const wire::AtenValue> args);

// Calls aten_enqueue holds back: gathered for the next batch while the
// host runs those in flight. Nothing sends them by itself: a program
// that queues and then does other work (or sleeps) should call
// aten_flush_if_idle() now and then, or from a thread of its own that
// takes turns with it on the connection (the torch device runs one).
[[nodiscard]] std::uint32_t aten_held(Connection& connection);
// Batches sent so far on the connection (each one command, carrying the
// calls gathered since the last).
[[nodiscard]] std::uint64_t aten_batches_sent(Connection& connection);
// Reads the completions that arrived and, when the host has no batch in
// flight, sends the held calls; returns how many are still held.
[[nodiscard]] Result<std::uint32_t> aten_flush_if_idle(Connection& connection);

// Runs a call after everything queued on the stream and waits: its
// non-tensor returns (an int, a float, a bool, a Scalar), or the error
// with the host's message (PyTorch's own, for an operator that failed).
[[nodiscard]] Result<std::vector<wire::AtenValue>> aten_call(Connection& connection, Stream& stream,
                                                             std::uint32_t op,
                                                             std::span<const wire::AtenValue> args);

}  // namespace malv::guest
