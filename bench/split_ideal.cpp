// The ideal split of a batch over a mixed pool (ventilator/split.h), for bench/hetero.py:
//   split_ideal COUNTS COST_W0 COST_W1 ...
// COUNTS: tasks per class, comma-separated; COST_Wi: worker i's time per task of each class on
// one slot divided by its slots (its throughput cost), comma-separated, "inf" where it cannot run
// the class. Prints the makespan and each worker's tasks per class.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "ventilator/split.h"

namespace {
std::vector<double> numbers(const std::string& s) {
  std::vector<double> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    out.push_back(item == "inf" ? taskfarm::ventilator::kCannotRun : std::strtod(item.c_str(), nullptr));
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: split_ideal COUNTS COST_W0 [COST_W1 ...]\n");
    return 1;
  }
  const std::vector<double> counts = numbers(argv[1]);
  std::vector<std::vector<double>> cost;
  for (int i = 2; i < argc; ++i) {
    cost.push_back(numbers(argv[i]));
    if (cost.back().size() != counts.size()) {
      std::fprintf(stderr, "split_ideal: worker %d has %zu costs for %zu classes\n", i - 2,
                   cost.back().size(), counts.size());
      return 1;
    }
  }
  const auto plan = taskfarm::ventilator::plan_split(cost, std::vector<double>(cost.size(), 0.0), counts);
  if (!plan.feasible) {
    std::fprintf(stderr, "split_ideal: some class has no worker\n");
    return 1;
  }
  std::printf("%.6f\n", plan.makespan);
  for (const auto& row : plan.tasks) {
    for (size_t g = 0; g < row.size(); ++g) std::printf("%s%.2f", g ? "," : "", row[g]);
    std::printf("\n");
  }
  return 0;
}
