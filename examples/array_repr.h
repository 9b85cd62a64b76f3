// Python's repr() of an array.array('i', ...), for the examples that print one.
#ifndef MULTIPROCESSING_EXAMPLES_ARRAY_REPR_H_
#define MULTIPROCESSING_EXAMPLES_ARRAY_REPR_H_

#include <cstdint>
#include <span>
#include <string>

inline std::string ArrayRepr(std::span<const std::int32_t> items) {
  std::string out = "array('i', [";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(items[i]);
  }
  return out + "])";
}

#endif  // MULTIPROCESSING_EXAMPLES_ARRAY_REPR_H_
