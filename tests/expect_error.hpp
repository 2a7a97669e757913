#pragma once
// The check every refusal test makes: the call throws a cnn::Error whose message is one line
// and names what it should.

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "cnn/error.hpp"

namespace cnn::testing {

/// Runs f, expects a cnn::Error whose single-line message contains every fragment.
inline void expect_error(const std::function<void()>& f,
                         const std::vector<std::string>& fragments) {
  try {
    f();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "message \"" << message << "\" lacks \"" << fragment << "\"";
    }
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected cnn::Error, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected cnn::Error naming " << fragments.front() << ", nothing was thrown";
}

/// expect_error with one fragment.
inline void expect_refused(const std::function<void()>& call, const std::string& fragment) {
  expect_error(call, {fragment});
}

}  // namespace cnn::testing
