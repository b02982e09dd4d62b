#include "malv/error.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace malv {
namespace {

TEST(Error, ContextIsChainedInnermostFirst) {
  Error e = Error(ErrorCode::kOutOfRange, "offset 12 past end 8")
                .with_context("write to buffer 3")
                .with_context("session vm-a");
  EXPECT_EQ(e.to_string(),
            "out_of_range: offset 12 past end 8 (in: write to buffer 3) (in: session vm-a)");
}

TEST(Error, CodeNamesAreStableAndDistinct) {
  EXPECT_EQ(error_code_name(ErrorCode::kStaleHandle), "stale_handle");
  EXPECT_EQ(error_code_name(ErrorCode::kResourceExhausted), "resource_exhausted");
  EXPECT_NE(error_code_name(ErrorCode::kInternal), error_code_name(ErrorCode::kIo));
}

TEST(Error, RetryableCodesAreTheTransientOnes) {
  EXPECT_TRUE(is_retryable(ErrorCode::kUnavailable));
  EXPECT_TRUE(is_retryable(ErrorCode::kResourceExhausted));
  EXPECT_FALSE(is_retryable(ErrorCode::kInvalidArgument));
  EXPECT_FALSE(is_retryable(ErrorCode::kStaleHandle));
}

TEST(Error, ErrnoIsMappedToWhatTheCallerShouldDo) {
  EXPECT_EQ(errno_error("open", ENOENT).code(), ErrorCode::kNotFound);
  EXPECT_EQ(errno_error("send", EPIPE).code(), ErrorCode::kDisconnected);
  EXPECT_EQ(errno_error("mmap", ENOMEM).code(), ErrorCode::kResourceExhausted);
  Error e = errno_error("open", ENOENT);
  EXPECT_NE(e.message().find("open: "), std::string::npos);
}

}  // namespace
}  // namespace malv
