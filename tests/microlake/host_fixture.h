// A real host for tests: CPU backend + Micro-LAKE server on a private Unix
// socket (and loopback TCP), in this process. Guests connect through the
// real client library, real sockets and real shared memory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "accel/backend.h"
#include "malv/connection.h"
#include "microlake/server.h"

namespace malv::testing {

class HostFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    socket_path_ = "/tmp/malv-test-" + std::to_string(::getpid()) + "-" +
                   std::to_string(counter.fetch_add(1)) + ".sock";
    backend_ = accel::make_cpu_backend({.memory_bytes = 256ull << 20, .workers = 2});
    microlake::ServerOptions options;
    options.unix_path = socket_path_;
    options.tcp_host = "127.0.0.1";
    options.default_arena_bytes = 4ull << 20;
    options.sq_entries = 256;
    options.cq_entries = 512;
    customize(options);
    auto server = microlake::Server::start(*backend_, options);
    ASSERT_TRUE(server.ok()) << server.error().to_string();
    server_ = std::move(server).value();
  }

  void TearDown() override {
    server_.reset();
    backend_.reset();
  }

  virtual void customize(microlake::ServerOptions&) {}

  std::unique_ptr<guest::Connection> connect(const std::string& vm = "vm-test") {
    auto conn = guest::Connection::connect_unix(socket_path_, {.vm_name = vm});
    EXPECT_TRUE(conn.ok()) << conn.error().to_string();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::unique_ptr<guest::Connection> connect_tcp(const std::string& vm = "vm-tcp") {
    auto conn = guest::Connection::connect_tcp("127.0.0.1", server_->tcp_port(), {.vm_name = vm});
    EXPECT_TRUE(conn.ok()) << conn.error().to_string();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  // Polls until the host has no sessions (they end asynchronously).
  bool wait_for_no_sessions(std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (server_->session_count() == 0) return true;
      usleep(2000);
    }
    return server_->session_count() == 0;
  }

  std::string socket_path_;
  std::unique_ptr<accel::Backend> backend_;
  std::unique_ptr<microlake::Server> server_;
};

}  // namespace malv::testing
