// pickle: inspect and re-encode pickles from the command line.
//
//   python3 -c 'import pickle,sys; sys.stdout.buffer.write(pickle.dumps([1,
//   "a"]))' | pickle repr [1, 'a'] pickle roundtrip [--protocol N] < in.pickle
//   > out.pickle    # decode, re-encode (default protocol 4)
//
// Reads the pickle from stdin. On malformed or unsupported input it prints one
// line to stderr and exits 1.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "reduction/object.h"
#include "reduction/pickle.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: pickle repr|roundtrip [--protocol 2..5] < pickle\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  namespace reduction = multiprocessing::reduction;
  if (argc < 2) return Usage();
  std::string command = argv[1];
  int protocol = reduction::kDefaultProtocol;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--protocol") == 0 && i + 1 < argc) {
      protocol = std::atoi(argv[++i]);
      if (protocol < 2 || protocol > reduction::kHighestProtocol)
        return Usage();
    } else {
      return Usage();
    }
  }
  if (command != "repr" && command != "roundtrip") return Usage();
  std::ios::sync_with_stdio(false);
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  try {
    reduction::Object value = reduction::loads<reduction::Object>(input);
    if (command == "repr") {
      std::string text = reduction::repr(value);
      text += '\n';
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
      std::string out = reduction::dumps(value, nullptr, protocol);
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
  } catch (const std::exception& e) {
    std::string message = e.what();
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    std::fprintf(stderr, "pickle: %s\n", message.c_str());
    return 1;
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
