#include "reduction/protobuf.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reduction/protobuf_test.pb.h"

namespace multiprocessing::reduction {
namespace {

using test::Sample;

TEST(ProtobufTest, MessagesTravelAsBytes) {
  Sample s;
  s.set_name("n");
  s.add_values(1);
  s.add_values(-7);
  std::string data = dumps(s);
  Object o = loads<Object>(data);
  ASSERT_TRUE(o.is_bytes());
  EXPECT_EQ(o.as_bytes(), s.SerializeAsString());
  Sample back = loads<Sample>(data);
  EXPECT_EQ(back.name(), "n");
  ASSERT_EQ(back.values_size(), 2);
  EXPECT_EQ(back.values(1), -7);
  auto m = loads<std::map<std::string, Sample>>(
      dumps(std::map<std::string, Sample>{{"k", s}}, nullptr, 2));
  EXPECT_EQ(m["k"].values(0), 1);
}

TEST(ProtobufTest, InvalidBytesAreAnError) {
  EXPECT_THROW(loads<Sample>(dumps(Bytes{"\xff\xff\xff"})), UnpicklingError);
  EXPECT_THROW(loads<Sample>(dumps(1)), TypeError);
}

}  // namespace
}  // namespace multiprocessing::reduction
