// See instances.h. The rewriting walks the opcodes by their argument sizes
// only (no stack), so it stays linear and bounded; what it passes through
// unchanged is judged by the pickle loader afterwards.
#include "managers/internal/instances.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing::managers::internal {
namespace {

using reduction::Object;

// How an opcode's argument is laid out.
enum class Arg {
  kNone,
  kFixed,     // `size` bytes
  kCounted,   // a little-endian count of `size` bytes, then that many bytes
  kLine,      // up to a newline
  kTwoLines,  // GLOBAL / INST
  kUnknown,
};

struct Layout {
  Arg arg;
  int size;
};

Layout LayoutOf(uint8_t op) {
  switch (op) {
    case 0x80:  // PROTO
    case 'K':   // BININT1
    case 'q':   // BINPUT
    case 'h':   // BINGET
    case 0x82:  // EXT1
      return {Arg::kFixed, 1};
    case 'M':   // BININT2
    case 0x83:  // EXT2
      return {Arg::kFixed, 2};
    case 'J':   // BININT
    case 'r':   // LONG_BINPUT
    case 'j':   // LONG_BINGET
    case 0x84:  // EXT4
      return {Arg::kFixed, 4};
    case 'G':   // BINFLOAT
    case 0x95:  // FRAME
      return {Arg::kFixed, 8};
    case 0x8a:  // LONG1
    case 0x8c:  // SHORT_BINUNICODE
    case 'C':   // SHORT_BINBYTES
    case 'U':   // SHORT_BINSTRING
      return {Arg::kCounted, 1};
    case 0x8b:  // LONG4
    case 'X':   // BINUNICODE
    case 'B':   // BINBYTES
    case 'T':   // BINSTRING
      return {Arg::kCounted, 4};
    case 0x8d:  // BINUNICODE8
    case 0x8e:  // BINBYTES8
    case 0x96:  // BYTEARRAY8
      return {Arg::kCounted, 8};
    case 'I':
    case 'L':
    case 'F':
    case 'S':
    case 'V':
    case 'p':
    case 'g':
    case 'P':
      return {Arg::kLine, 0};
    case 'c':  // GLOBAL
    case 'i':  // INST
      return {Arg::kTwoLines, 0};
    case '(':
    case ')':
    case ']':
    case '}':
    case 0x8f:
    case 'N':
    case 0x88:
    case 0x89:
    case 0x85:
    case 0x86:
    case 0x87:
    case 't':
    case 'l':
    case 'a':
    case 'e':
    case 's':
    case 'u':
    case 0x90:
    case 0x91:
    case '0':
    case '1':
    case '2':
    case '.':
    case 0x94:
    case 'R':
    case 'b':
    case 0x81:
    case 0x92:
    case 0x93:
    case 'd':
    case 'o':
    case 'Q':
    case 0x97:
    case 0x98:
      return {Arg::kNone, 0};
    default:
      return {Arg::kUnknown, 0};
  }
}

[[noreturn]] void Truncated() {
  throw UnpicklingError(
      "pickle data was truncated: the input ends in the middle of a value");
}

void PutTag(std::string& out, std::string_view tag) {
  out.push_back('C');  // SHORT_BINBYTES
  out.push_back(static_cast<char>(tag.size()));
  out.append(tag);
}

void PutStr(std::string& out, std::string_view s) {
  out.push_back('X');  // BINUNICODE
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((s.size() >> (8 * i)) & 0xFF));
  out.append(s);
}

std::string Rewrite(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 64);
  size_t pos = 0;
  auto line = [&]() -> std::string_view {
    size_t nl = in.find('\n', pos);
    if (nl == std::string_view::npos) Truncated();
    std::string_view l = in.substr(pos, nl - pos);
    pos = nl + 1;
    return l;
  };
  while (pos < in.size()) {
    const auto op = static_cast<uint8_t>(in[pos]);
    const size_t start = pos++;
    Layout layout = LayoutOf(op);
    switch (layout.arg) {
      case Arg::kUnknown:
        throw UnpicklingError(absl::StrCat("unknown pickle opcode ",
                                           static_cast<int>(op), " at offset ",
                                           start));
      case Arg::kNone:
        break;
      case Arg::kFixed:
        if (in.size() - pos < static_cast<size_t>(layout.size)) Truncated();
        pos += layout.size;
        break;
      case Arg::kCounted: {
        if (in.size() - pos < static_cast<size_t>(layout.size)) Truncated();
        uint64_t n = 0;
        for (int i = 0; i < layout.size; ++i)
          n |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i]))
               << (8 * i);
        pos += layout.size;
        if (n > in.size() - pos) Truncated();
        pos += static_cast<size_t>(n);
        break;
      }
      case Arg::kLine:
        line();
        break;
      case Arg::kTwoLines: {
        std::string_view module = line();
        std::string_view name = line();
        if (op == 'i') {
          throw UnpicklingError(
              "the INST opcode (protocol 0 instances) is not supported");
        }
        PutStr(out, module);
        PutStr(out, name);
        PutTag(out, kGlobalTag);
        out.push_back('\x87');  // TUPLE3
        continue;
      }
    }
    switch (op) {
      case 0x95:  // FRAME: the rewritten sizes differ; frames are optional.
        continue;
      case 0x93:  // STACK_GLOBAL: module and name are on the stack
        PutTag(out, kGlobalTag);
        out.push_back('\x87');
        continue;
      case 'R':   // REDUCE
      case 0x81:  // NEWOBJ
        PutTag(out, kCallTag);
        out.push_back('\x87');
        continue;
      case 0x92:  // NEWOBJ_EX
        throw UnpicklingError(
            "NEWOBJ_EX (an instance made with keyword arguments) is not "
            "supported");
      case 'b':  // BUILD
        PutTag(out, kBuildTag);
        out.push_back('\x87');
        continue;
      default:
        out.append(in.substr(start, pos - start));
    }
  }
  return out;
}

bool Tagged3(const Object& o, std::string_view tag) {
  if (!o.is_tuple() || o.size() != 3) return false;
  const Object& t = o.items()[2];
  return t.is_bytes() && t.as_bytes() == tag;
}

bool IsOSError(std::string_view name) {
  static constexpr std::string_view kNames[] = {"OSError",
                                                "IOError",
                                                "BlockingIOError",
                                                "ChildProcessError",
                                                "ConnectionError",
                                                "BrokenPipeError",
                                                "ConnectionAbortedError",
                                                "ConnectionRefusedError",
                                                "ConnectionResetError",
                                                "FileExistsError",
                                                "FileNotFoundError",
                                                "InterruptedError",
                                                "IsADirectoryError",
                                                "NotADirectoryError",
                                                "PermissionError",
                                                "ProcessLookupError",
                                                "TimeoutError"};
  for (std::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

}  // namespace

Object LoadWithInstances(std::string_view bytes) {
  return reduction::loads<Object>(Rewrite(bytes));
}

std::optional<std::string> InstanceClass(const Object& o, Object* args,
                                         Object* state) {
  const Object* call = &o;
  if (Tagged3(o, kBuildTag)) {
    if (state) *state = o.items()[1];
    call = &o.items()[0];
  }
  if (!Tagged3(*call, kCallTag)) return std::nullopt;
  const Object& global = call->items()[0];
  if (!Tagged3(global, kGlobalTag) || !global.items()[0].is_str() ||
      !global.items()[1].is_str()) {
    return std::nullopt;
  }
  if (args) *args = call->items()[1];
  return absl::StrCat(global.items()[0].as_str(), ".",
                      global.items()[1].as_str());
}

void ExceptionFromInstance(const Object& o, std::string* name,
                           std::string* message) {
  Object args;
  std::optional<std::string> cls = InstanceClass(o, &args);
  if (!cls || !args.is_tuple()) {
    *name = "Exception";
    *message = reduction::str(o);
    return;
  }
  *name = cls->substr(cls->rfind('.') + 1);
  const std::vector<Object>& a = args.items();
  if (a.empty()) {
    message->clear();
  } else if (a.size() == 1) {
    // str(KeyError(k)) is repr(k); other exceptions print their argument.
    *message =
        *name == "KeyError" ? reduction::repr(a[0]) : reduction::str(a[0]);
  } else if (IsOSError(*name) && a[0].is_int() && a[1].is_str()) {
    // OSError(errno, strerror[, filename]) and its subclasses.
    *message = absl::StrCat("[Errno ", a[0].as_int(), "] ", a[1].as_str());
    if (a.size() >= 3 && !a[2].is_none())
      absl::StrAppend(message, ": ", reduction::repr(a[2]));
  } else {
    *message = reduction::str(args);
  }
}

}  // namespace multiprocessing::managers::internal
