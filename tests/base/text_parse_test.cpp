#include "base/text_parse.h"

#include <gtest/gtest.h>

namespace malv {
namespace {

TEST(TextParse, WholeNumbersAreDecimalWithinTheirRange) {
  EXPECT_EQ(parse_whole_number("42", 0, 100).value(), 42u);
  EXPECT_FALSE(parse_whole_number("042", 0, 100).ok());
  EXPECT_FALSE(parse_whole_number("101", 0, 100).ok());
  EXPECT_FALSE(parse_whole_number("-1", 0, 100).ok());
  EXPECT_FALSE(parse_whole_number("", 0, 100).ok());
}

TEST(TextParse, HostPortKeepsTheHostAndChecksThePort) {
  const Result<HostPort> v6 = parse_host_port("[::1]:7000", false);
  ASSERT_TRUE(v6.ok()) << v6.error().to_string();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 7000);
  EXPECT_FALSE(parse_host_port("localhost:0", false).ok());
  EXPECT_TRUE(parse_host_port("localhost:0", true).ok());
  EXPECT_FALSE(parse_host_port("localhost", true).ok());
}

TEST(TextParse, VsockAddressIsCidColonPort) {
  const Result<VsockAddress> host = parse_vsock_address("2:5000");
  ASSERT_TRUE(host.ok()) << host.error().to_string();
  EXPECT_EQ(host->cid, 2u);
  EXPECT_EQ(host->port, 5000u);
  const Result<VsockAddress> vm = parse_vsock_address("4294967294:1");
  ASSERT_TRUE(vm.ok()) << vm.error().to_string();
  EXPECT_EQ(vm->cid, 4294967294u);
  for (const char* bad :
       {"5000", "1:5000", "0:5000", "4294967295:1", "2:0", "2:", ":5", "x:5", "2:5:6"}) {
    const Result<VsockAddress> parsed = parse_vsock_address(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.error().message().find(bad), std::string::npos)
        << "the error names the text: " << parsed.error().message();
  }
}

}  // namespace
}  // namespace malv
