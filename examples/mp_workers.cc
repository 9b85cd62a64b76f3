// Examples: queues feeding tasks to a collection of worker processes and
// collecting the results.
//
// As in the doc, tasks name their function, which travels by reference: here by
// its registered name (MP_REGISTER_FUNCTION), looked up in the worker and
// called with the pickled arguments.
#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using mp::reduction::FindFunction;

using Args = std::tuple<int, int>;
using Task = std::tuple<std::string, Args>;  // (function name, arguments)
using TaskOrStop = std::variant<std::string, Task>;

//
// Functions referenced by tasks
//

void RandomSleep() {
  thread_local std::mt19937 rng(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::duration<double>(
      0.5 * std::uniform_real_distribution<double>(0, 1)(rng)));
}

int mul(int a, int b) {
  RandomSleep();
  return a * b;
}
MP_REGISTER_FUNCTION(mul);

int plus(int a, int b) {
  RandomSleep();
  return a + b;
}
MP_REGISTER_FUNCTION(plus);

//
// Function used to calculate result
//

std::string calculate(const std::string& func, const Args& args) {
  const auto* fn = FindFunction(func);
  int result = mp::reduction::loads<int>(
      fn->call_pickled(mp::reduction::dumps(args), nullptr, nullptr));
  return absl::StrCat(mp::current_process().name(), " says that ", func,
                      mp::reduction::repr(args), " = ", result);
}

//
// Function run by worker processes
//

void worker(mp::Queue input, mp::Queue output) {
  while (true) {
    auto task = input.get<TaskOrStop>();
    if (std::holds_alternative<std::string>(task)) break;  // 'STOP'
    const auto& [func, args] = std::get<Task>(task);
    output.put(calculate(func, args));
  }
}
MP_REGISTER_FUNCTION(worker);

void test() {
  constexpr int NUMBER_OF_PROCESSES = 4;
  std::vector<Task> TASKS1, TASKS2;
  for (int i = 0; i < 20; ++i) TASKS1.push_back({"mul", {i, 7}});
  for (int i = 0; i < 10; ++i) TASKS2.push_back({"plus", {i, 8}});

  // Create queues
  mp::Queue task_queue;
  mp::Queue done_queue;

  // Submit tasks
  for (const auto& task : TASKS1) task_queue.put(task);

  // Start worker processes
  for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) {
    mp::Process(worker, task_queue, done_queue).start();
  }

  // Get and print results
  std::cout << "Unordered results:\n";
  for (size_t i = 0; i < TASKS1.size(); ++i) {
    std::cout << "\t " << done_queue.get<std::string>() << "\n";
  }

  // Add more tasks using `put()`
  for (const auto& task : TASKS2) task_queue.put(task);

  // Get and print some more results
  for (size_t i = 0; i < TASKS2.size(); ++i) {
    std::cout << "\t " << done_queue.get<std::string>() << "\n";
  }

  // Tell child processes to stop
  for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) {
    task_queue.put(std::string("STOP"));
  }
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  test();
}
