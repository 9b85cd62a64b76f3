#include "errors/errors.h"

#include <cerrno>
#include <system_error>

#include "gtest/gtest.h"

namespace multiprocessing {
namespace {

TEST(ErrorsTest, PythonNamesAndHierarchy) {
  try {
    throw AuthenticationError("digest received was wrong");
  } catch (const ProcessError& e) {
    EXPECT_STREQ(e.python_name(), "AuthenticationError");
    EXPECT_STREQ(e.what(), "digest received was wrong");
  }
  EXPECT_STREQ(KeyError("k").python_name(), "KeyError");
  EXPECT_THROW(throw IndexError("i"), LookupError);
}

TEST(ErrorsTest, RaiseByNameRebuildsKnownTypes) {
  EXPECT_THROW(RaiseByName("ValueError", "bad"), ValueError);
  EXPECT_THROW(RaiseByName("ZeroDivisionError", "x"), ZeroDivisionError);
  try {
    RaiseByName("MyError", "custom");
    FAIL() << "RaiseByName returned";
  } catch (const RemoteError& e) {
    EXPECT_STREQ(e.what(), "MyError: custom");
  }
}

TEST(ErrorsTest, OSErrorCarriesErrno) {
  try {
    RaiseOSError("open", ENOENT);
    FAIL() << "RaiseOSError returned";
  } catch (const OSError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
    EXPECT_STREQ(e.what(), "open: No such file or directory");
  }
}

struct Custom : std::exception {};

TEST(ErrorsTest, PythonNameOfStandardExceptions) {
  EXPECT_EQ(PythonNameOf(std::out_of_range("x")), "IndexError");
  EXPECT_EQ(PythonNameOf(std::invalid_argument("x")), "ValueError");
  EXPECT_EQ(PythonNameOf(std::runtime_error("x")), "RuntimeError");
  EXPECT_EQ(PythonNameOf(
                std::system_error(std::make_error_code(std::errc::io_error))),
            "OSError");
  EXPECT_EQ(PythonNameOf(TypeError("x")), "TypeError");
  EXPECT_EQ(PythonNameOf(Custom()),
            "multiprocessing::(anonymous namespace)::Custom");
}

}  // namespace
}  // namespace multiprocessing
