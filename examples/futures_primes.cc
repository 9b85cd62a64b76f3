// concurrent.futures' ProcessPoolExecutor example: which of six large numbers
// are prime, checked in worker processes.
//
//   PRIMES = [112272535095293, 112582705942171, 112272535095293,
//             115280095190773, 115797848077099, 1099726899285419]
//
//   def is_prime(n): ...  # trial division by the odd numbers up to sqrt(n)
//
//   def main():
//       with concurrent.futures.ProcessPoolExecutor() as executor:
//           for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
//               print('%d is prime: %s' % (number, prime))
//
// Prints "N is prime: True" or "... False" for each, in order. An optional
// argument selects the start method.
#include <cmath>
#include <cstdint>
#include <iostream>
#include <vector>

#include "futures/futures.h"
#include "process/context.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

bool is_prime(int64_t n) {
  if (n < 2) return false;
  if (n == 2) return true;
  if (n % 2 == 0) return false;
  const auto sqrt_n = static_cast<int64_t>(std::floor(std::sqrt(n)));
  for (int64_t i = 3; i <= sqrt_n; i += 2) {
    if (n % i == 0) return false;
  }
  return true;
}
MP_REGISTER_FUNCTION(is_prime);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const std::vector<int64_t> primes{112272535095293, 112582705942171,
                                    112272535095293, 115280095190773,
                                    115797848077099, 1099726899285419};
  mp::futures::ProcessPoolExecutor executor(
      {.mp_context = argc > 1 ? &mp::get_context(argv[1]) : nullptr});
  size_t i = 0;
  for (bool prime : executor.map(is_prime, primes)) {
    std::cout << primes[i++] << " is prime: " << (prime ? "True" : "False")
              << std::endl;
  }
}  // the destructor waits for the workers, as leaving `with` does
