// Without libFuzzer (normal builds): runs the fuzz target over the files named
// on the command line, or over stdin, for reproducing a crash the fuzzer found.
#ifndef MP_LIBFUZZER
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

int main(int argc, char** argv) {
  auto run = [](const std::string& data) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()),
                           data.size());
  };
  if (argc < 2) {
    run(std::string(std::istreambuf_iterator<char>(std::cin), {}));
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "pickle_fuzzer: cannot read %s\n", argv[i]);
      return 1;
    }
    run(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  std::printf("ran %d inputs\n", argc - 1);
  return 0;
}
#endif  // MP_LIBFUZZER
