// The ideal split of work over a mixed pool: how many tasks of each group each worker should
// run so that all finish as early as possible, given what each worker costs per task of each
// group. It is the linear-programming relaxation of scheduling on unrelated machines,
//   minimise T  subject to  backlog[w] + sum_g cost[w][g] * x[w][g] <= T   for every worker,
//                           sum_w x[w][g] = count[g]                        for every group,
//                           x >= 0 (and 0 where a worker cannot run a group),
// solved exactly by the simplex method (the problems are small: workers x groups variables).
// The dispatcher plans with it; tests and bench/hetero.sh measure the farm against it.
#pragma once

#include <limits>
#include <vector>

namespace taskfarm::ventilator {

struct SplitPlan {
  bool feasible = false;       // false when some group has work but no worker can run it
  double makespan = 0;         // T: when the last worker finishes (the unit of the costs)
  std::vector<std::vector<double>> tasks;  // [worker][group]: tasks to run
};

inline constexpr double kCannotRun = std::numeric_limits<double>::infinity();

// cost[w][g]: time worker w needs per task of group g (its throughput: a worker with 4 slots
// that takes 8 ms per task costs 2 ms); kCannotRun where it cannot run it.
// Returns: the plan. Never throws for valid sizes (cost rows of equal length, backlog and count
// non-negative).
SplitPlan plan_split(const std::vector<std::vector<double>>& cost,
                     const std::vector<double>& backlog, const std::vector<double>& count);

}  // namespace taskfarm::ventilator
