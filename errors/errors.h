// Python's exception names for multiprocessing in C++.
//
// Every error the library raises is a multiprocessing::Exception carrying the
// Python class name
// (`python_name()`) and a message that says what went wrong and what to do.
// Catch the specific class
// (`catch (const multiprocessing::AuthenticationError& e)`) or the base.
// Exceptions crossing a process boundary (pool results, manager calls) travel
// as (name, message) and are rebuilt with `RaiseByName`, so a ValueError thrown
// in a worker is a ValueError in the parent.
#ifndef MULTIPROCESSING_ERRORS_ERRORS_H_
#define MULTIPROCESSING_ERRORS_ERRORS_H_

#include <stdexcept>
#include <string>
#include <string_view>

namespace multiprocessing {

// The base of every exception the library raises.
class Exception : public std::runtime_error {
 public:
  explicit Exception(const std::string& message)
      : std::runtime_error(message) {}
  // The Python class name, e.g. "ValueError".
  virtual const char* python_name() const noexcept { return "Exception"; }
};

#define MULTIPROCESSING_DEFINE_ERROR(Name, Base)                        \
  class Name : public Base {                                            \
   public:                                                              \
    explicit Name(const std::string& message) : Base(message) {}        \
    const char* python_name() const noexcept override { return #Name; } \
  }

// Python's built-in exceptions that the documentation names.
MULTIPROCESSING_DEFINE_ERROR(ValueError, Exception);
MULTIPROCESSING_DEFINE_ERROR(TypeError, Exception);
MULTIPROCESSING_DEFINE_ERROR(AssertionError, Exception);
MULTIPROCESSING_DEFINE_ERROR(RuntimeError, Exception);
MULTIPROCESSING_DEFINE_ERROR(NotImplementedError, RuntimeError);
MULTIPROCESSING_DEFINE_ERROR(LookupError, Exception);
MULTIPROCESSING_DEFINE_ERROR(KeyError, LookupError);
MULTIPROCESSING_DEFINE_ERROR(IndexError, LookupError);
MULTIPROCESSING_DEFINE_ERROR(AttributeError, Exception);
MULTIPROCESSING_DEFINE_ERROR(ArithmeticError, Exception);
MULTIPROCESSING_DEFINE_ERROR(OverflowError, ArithmeticError);
MULTIPROCESSING_DEFINE_ERROR(ZeroDivisionError, ArithmeticError);
MULTIPROCESSING_DEFINE_ERROR(EOFError, Exception);
MULTIPROCESSING_DEFINE_ERROR(MemoryError, Exception);
MULTIPROCESSING_DEFINE_ERROR(RecursionError, RuntimeError);
// threading.BrokenBarrierError
MULTIPROCESSING_DEFINE_ERROR(BrokenBarrierError, RuntimeError);
// pickle.PicklingError / pickle.UnpicklingError (both pickle.PickleError)
MULTIPROCESSING_DEFINE_ERROR(PickleError, Exception);
MULTIPROCESSING_DEFINE_ERROR(PicklingError, PickleError);
MULTIPROCESSING_DEFINE_ERROR(UnpicklingError, PickleError);

// multiprocessing's own exceptions.
MULTIPROCESSING_DEFINE_ERROR(ProcessError, Exception);
MULTIPROCESSING_DEFINE_ERROR(AuthenticationError, ProcessError);
MULTIPROCESSING_DEFINE_ERROR(TimeoutError, ProcessError);
// managers.RemoteError: a failure on the far side that has no closer local
// type.
MULTIPROCESSING_DEFINE_ERROR(RemoteError, Exception);

#undef MULTIPROCESSING_DEFINE_ERROR

// StopIteration: the end of an iterator (a manager's iterator proxies raise
// it when the referent's __next__ does). Usually without a message.
class StopIteration : public Exception {
 public:
  explicit StopIteration(const std::string& message = "")
      : Exception(message) {}
  const char* python_name() const noexcept override { return "StopIteration"; }
};

// OSError with its errno (`errno_value()`); the message names the call that
// failed and strerror.
class OSError : public Exception {
 public:
  OSError(int errno_value, const std::string& message)
      : Exception(message), errno_(errno_value) {}
  const char* python_name() const noexcept override { return "OSError"; }
  int errno_value() const noexcept { return errno_; }

 private:
  int errno_;
};

// Raised by Connection::recv_bytes_into when the buffer is too small;
// `message()` holds the whole message that was read, so nothing is lost.
class BufferTooShort : public ProcessError {
 public:
  BufferTooShort(const std::string& what, std::string message)
      : ProcessError(what), message_(std::move(message)) {}
  const char* python_name() const noexcept override { return "BufferTooShort"; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// Throws an OSError for `errno_value` with "`call`: strerror" as the message.
[[noreturn]] void RaiseOSError(std::string_view call, int errno_value);

// Rebuilds an exception that crossed a process boundary: the class named
// `python_name` when it is one of the above, else RemoteError with
// "python_name: message".
[[noreturn]] void RaiseByName(std::string_view python_name,
                              const std::string& message);

// The Python class name of any exception: python_name() for ours, a close
// Python equivalent for the standard C++ ones (std::out_of_range ->
// "IndexError", std::invalid_argument -> "ValueError", ...), else the demangled
// C++ type name.
std::string PythonNameOf(const std::exception& e);

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_ERRORS_ERRORS_H_
