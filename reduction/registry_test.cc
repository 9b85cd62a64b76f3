#include "reduction/registry.h"

#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

int Square(int x) { return x * x; }
MP_REGISTER_FUNCTION(Square);

namespace geometry {
double Scale(const std::vector<double>& v, double factor) {
  double sum = 0;
  for (double x : v) sum += x * factor;
  return sum;
}
int Answer() noexcept { return 42; }
}  // namespace geometry
MP_REGISTER_FUNCTION(geometry::Scale);
MP_REGISTER_FUNCTION(geometry::Answer);

int g_calls = 0;
void Touch(std::string s) { g_calls += static_cast<int>(s.size()); }
MP_REGISTER_FUNCTION(Touch);

int Fails(int) { throw multiprocessing::ValueError("bad argument"); }
MP_REGISTER_FUNCTION(Fails);

int NotRegistered(int x) { return x; }

namespace multiprocessing::reduction {
namespace {

TEST(RegistryTest, FindsByNameAndAddress) {
  const RegisteredFunction* f = FindFunction("Square");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->name, "Square");
  EXPECT_EQ(f->address, reinterpret_cast<const void*>(&Square));
  EXPECT_EQ(FindFunction(reinterpret_cast<const void*>(&Square)), f);
  EXPECT_EQ(&RequireFunction(&Square), f);
  EXPECT_NE(FindFunction("geometry::Scale"), nullptr);
  EXPECT_EQ(FindFunction("Scale"), nullptr);
  EXPECT_EQ(FindFunction("nothing"), nullptr);
  EXPECT_EQ(FindFunction(reinterpret_cast<const void*>(&NotRegistered)),
            nullptr);
}

TEST(RegistryTest, CallsWithPickledArguments) {
  EXPECT_EQ(loads<int>(FindFunction("Square")->call_pickled(
                dumps(std::make_tuple(7)), nullptr, nullptr)),
            49);
  auto args = dumps(std::make_tuple(std::vector<double>{1, 2}, 0.5));
  EXPECT_EQ(loads<double>(RequireFunction(&geometry::Scale)
                              .call_pickled(args, nullptr, nullptr)),
            1.5);
  EXPECT_EQ(
      loads<int>(RequireFunction(&geometry::Answer)
                     .call_pickled(dumps(std::tuple<>{}), nullptr, nullptr)),
      42);
  // void returns None.
  std::string result = RequireFunction(&Touch).call_pickled(
      dumps(std::make_tuple("abc")), nullptr, nullptr);
  EXPECT_TRUE(loads<Object>(result).is_none());
  EXPECT_EQ(g_calls, 3);
  // What CPython sends for the arguments works too: a tuple decodes into
  // std::tuple.
  EXPECT_EQ(loads<int>(FindFunction("Square")->call_pickled(
                dumps(Object::tuple({9})), nullptr, nullptr)),
            81);
}

TEST(RegistryTest, ErrorsPropagate) {
  EXPECT_THROW(FindFunction("Fails")->call_pickled(dumps(std::make_tuple(1)),
                                                   nullptr, nullptr),
               ValueError);
  EXPECT_THROW(FindFunction("Square")->call_pickled(dumps(std::make_tuple("x")),
                                                    nullptr, nullptr),
               TypeError);
  EXPECT_THROW(FindFunction("Square")->call_pickled(
                   dumps(std::make_tuple(1, 2)), nullptr, nullptr),
               TypeError);
}

TEST(RegistryTest, UnregisteredFunctionIsAClearError) {
  try {
    RequireFunction(&NotRegistered);
    ADD_FAILURE() << "no error";
  } catch (const PicklingError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("function 'NotRegistered' is not registered"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("MP_REGISTER_FUNCTION(NotRegistered)"),
              std::string::npos)
        << message;
  }
}

}  // namespace
}  // namespace multiprocessing::reduction
