#include "sharedctypes/sharedctypes.h"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace multiprocessing::sharedctypes::internal {

namespace {

std::string Demangle(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name != nullptr ? name : type.name();
  std::free(name);
  return out;
}

std::string Hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#zx", reinterpret_cast<size_t>(p));
  return buf;
}

// Python's repr of a float, from the pickle library's repr().
std::string FloatRepr(double v) { return reduction::repr(v); }

std::string BytesRepr(const std::string& bytes) {
  bool has_single = bytes.find('\'') != std::string::npos;
  bool has_double = bytes.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (unsigned char c : bytes) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string CTypeName(const std::type_info& type, size_t size, bool is_integral,
                      bool is_signed, bool is_floating) {
  if (type == typeid(char)) return "c_char";
  if (type == typeid(bool)) return "c_bool";
  if (type == typeid(wchar_t)) return "c_wchar";
  if (is_floating) {
    return size == sizeof(float)    ? "c_float"
           : size == sizeof(double) ? "c_double"
                                    : "c_longdouble";
  }
  if (is_integral) {
    // ctypes' names by size, c_long standing for 8 bytes as on Linux.
    switch (size) {
      case 1:
        return is_signed ? "c_byte" : "c_ubyte";
      case 2:
        return is_signed ? "c_short" : "c_ushort";
      case 4:
        return is_signed ? "c_int" : "c_uint";
      case 8:
        return is_signed ? "c_long" : "c_ulong";
      default:
        break;
    }
  }
  return Demangle(type);
}

std::string SimpleRepr(const std::string& ctype, const void* data,
                       const std::type_info& type, size_t size,
                       bool is_integral, bool is_signed, bool is_floating) {
  std::string inner;
  if (type == typeid(char)) {
    inner = BytesRepr(std::string(1, *static_cast<const char*>(data)));
  } else if (type == typeid(bool)) {
    inner = *static_cast<const bool*>(data) ? "True" : "False";
  } else if (is_floating) {
    double v =
        size == sizeof(float) ? *static_cast<const float*>(data)
        : size == sizeof(double)
            ? *static_cast<const double*>(data)
            : static_cast<double>(*static_cast<const long double*>(data));
    inner = FloatRepr(v);
  } else if (is_integral) {
    long long s = 0;
    unsigned long long u = 0;
    switch (size) {
      case 1:
        s = *static_cast<const signed char*>(data);
        u = *static_cast<const unsigned char*>(data);
        break;
      case 2:
        s = *static_cast<const short*>(data);
        u = *static_cast<const unsigned short*>(data);
        break;
      case 4:
        s = *static_cast<const int*>(data);
        u = *static_cast<const unsigned*>(data);
        break;
      default:
        s = *static_cast<const long long*>(data);
        u = *static_cast<const unsigned long long*>(data);
        break;
    }
    inner = is_signed ? std::to_string(s) : std::to_string(u);
  } else {
    return ObjectRepr(ctype, data);
  }
  return ctype + "(" + inner + ")";
}

std::string ObjectRepr(const std::string& type_name, const void* address) {
  return "<" + type_name + " object at " + Hex(address) + ">";
}

std::string ArrayRepr(const std::string& element, size_t length,
                      const void* address) {
  return "<multiprocessing.sharedctypes." + element + "_Array_" +
         std::to_string(length) + " object at " + Hex(address) + ">";
}

void ThrowIndexError(long long index, size_t length) {
  throw IndexError("invalid index " + std::to_string(index) +
                   " for an array of length " + std::to_string(length));
}

std::pair<size_t, size_t> ClampSlice(long long start, long long stop,
                                     size_t length) {
  long long n = static_cast<long long>(length);
  auto clamp = [n](long long i) {
    if (i < 0) i += n;
    if (i < 0) i = 0;
    if (i > n) i = n;
    return i;
  };
  long long b = clamp(start);
  long long e = clamp(stop);
  if (e < b) e = b;
  return {static_cast<size_t>(b), static_cast<size_t>(e)};
}

void ThrowNoLock(const std::string& type_name) {
  throw AttributeError("'" + type_name +
                       "' object has no attribute 'get_lock' (it was created "
                       "with {.lock = false})");
}

void ThrowSliceAssignLength(size_t expected, size_t got) {
  throw ValueError(
      "can only assign a sequence of the same size: the slice "
      "holds " +
      std::to_string(expected) + " elements, got " + std::to_string(got));
}

void ThrowTooLong(size_t capacity, size_t got) {
  throw ValueError("byte string too long: " + std::to_string(got) +
                   " bytes for an array of " + std::to_string(capacity));
}

}  // namespace multiprocessing::sharedctypes::internal
