// Protocol Buffers messages as pickle values: a message travels as Python bytes
// holding its serialized form (what `msg.SerializeToString()` gives in Python),
// so a CPython peer parses it with FromString().
//
//   #include "reduction/protobuf.h"   // target //reduction:protobuf
//   std::string data = reduction::dumps(my_message);
//   auto back = reduction::loads<MyMessage>(data);
//
// Kept apart from pickle.h so that programs that do not use protobuf do not
// depend on it.
#ifndef MULTIPROCESSING_REDUCTION_PROTOBUF_H_
#define MULTIPROCESSING_REDUCTION_PROTOBUF_H_

#include <string>
#include <type_traits>

#include "google/protobuf/message_lite.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {

template <class M>
requires std::is_base_of_v<google::protobuf::MessageLite, M>
struct Pickler<M> {
  static void Save(Writer& w, const M& message) {
    std::string data;
    if (!message.SerializeToString(&data)) {
      throw PicklingError("cannot serialize protobuf message " +
                          message.GetTypeName() +
                          " (are required fields missing?)");
    }
    w.write_bytes(data);
  }
  static M Load(Reader& r) {
    M message;
    if (!message.ParseFromString(r.read_bytes())) {
      throw UnpicklingError("the bytes are not a valid protobuf message " +
                            message.GetTypeName());
    }
    return message;
  }
};

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_PROTOBUF_H_
