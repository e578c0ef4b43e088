// The ideal split of a mixed pool (ventilator/split.h), against brute force over the splits.
#include "ventilator/split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace taskfarm::ventilator {
namespace {

TEST(Split, EqualWorkersShareOneGroupEvenly) {
  const auto p = plan_split({{1.0}, {1.0}}, {0, 0}, {100});
  ASSERT_TRUE(p.feasible);
  EXPECT_NEAR(p.makespan, 50, 1e-6);
  EXPECT_NEAR(p.tasks[0][0], 50, 1e-6);
  EXPECT_NEAR(p.tasks[1][0], 50, 1e-6);
}

TEST(Split, BacklogIsTakenIntoAccount) {
  const auto p = plan_split({{1.0}, {1.0}}, {10, 0}, {100});
  EXPECT_NEAR(p.makespan, 55, 1e-6);
  EXPECT_NEAR(p.tasks[0][0], 45, 1e-6);
  // More backlog than the whole job: the other worker does everything.
  const auto q = plan_split({{1.0}, {1.0}}, {1000, 0}, {100});
  EXPECT_NEAR(q.tasks[1][0], 100, 1e-6);
  EXPECT_NEAR(q.makespan, 1000, 1e-6);
}

TEST(Split, AGroupNobodyRunsIsInfeasibleAndEmptyWorkIsFree) {
  EXPECT_FALSE(plan_split({{1.0, kCannotRun}}, {0}, {5, 5}).feasible);
  const auto p = plan_split({{1.0, kCannotRun}}, {3}, {5, 0});
  EXPECT_TRUE(p.feasible);
  EXPECT_NEAR(p.makespan, 8, 1e-6);
}

// GPU and CPU, sgemm and saxpy, as in the issue: each device does what it is best at.
TEST(Split, UnrelatedMachinesMatchBruteForce) {
  const double gpu_sgemm = 1, gpu_saxpy = 1, cpu_sgemm = 30, cpu_saxpy = 3;
  const auto p = plan_split({{gpu_sgemm, gpu_saxpy}, {cpu_sgemm, cpu_saxpy}}, {0, 0}, {400, 2000});
  ASSERT_TRUE(p.feasible);
  double best = 1e18;
  for (int k = 0; k <= 400; ++k) {      // sgemm tasks on the CPU
    for (int s = 0; s <= 2000; ++s) {   // saxpy tasks on the CPU
      const double gpu = (400 - k) * gpu_sgemm + (2000 - s) * gpu_saxpy;
      const double cpu = k * cpu_sgemm + s * cpu_saxpy;
      best = std::min(best, std::max(gpu, cpu));
    }
  }
  EXPECT_LE(p.makespan, best + 1e-6);
  EXPECT_GE(p.makespan, best - 3.0);  // the grid is integral: within one task of the optimum
  EXPECT_NEAR(p.tasks[1][0], 0, 1e-6) << "the CPU should run no sgemm";
  EXPECT_NEAR(p.tasks[0][0], 400, 1e-6);
}

TEST(Split, RandomTwoWorkerThreeGroupProblemsMatchBruteForce) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> cost(0.5, 20), count(0, 30);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::vector<double>> c(2, std::vector<double>(3));
    for (auto& row : c) {
      for (double& v : row) v = cost(gen);
    }
    std::vector<double> n = {std::round(count(gen)), std::round(count(gen)), std::round(count(gen))};
    const std::vector<double> backlog = {std::round(count(gen)), 0};
    const auto p = plan_split(c, backlog, n);
    ASSERT_TRUE(p.feasible);
    // Every constraint holds.
    for (int w = 0; w < 2; ++w) {
      double t = backlog[w];
      for (int g = 0; g < 3; ++g) t += c[w][g] * p.tasks[w][g];
      EXPECT_LE(t, p.makespan + 1e-6);
    }
    for (int g = 0; g < 3; ++g) EXPECT_NEAR(p.tasks[0][g] + p.tasks[1][g], n[g], 1e-6);
    // No split on a fine grid beats it.
    const int steps = 30;
    double best = 1e18;
    for (int a = 0; a <= steps; ++a) {
      for (int b = 0; b <= steps; ++b) {
        for (int d = 0; d <= steps; ++d) {
          const double f[3] = {a / double(steps), b / double(steps), d / double(steps)};
          double w0 = backlog[0], w1 = backlog[1];
          for (int g = 0; g < 3; ++g) {
            w0 += c[0][g] * n[g] * f[g];
            w1 += c[1][g] * n[g] * (1 - f[g]);
          }
          best = std::min(best, std::max(w0, w1));
        }
      }
    }
    EXPECT_LE(p.makespan, best + 1e-6) << "trial " << trial;
  }
}

TEST(Split, SixteenWorkersAndEightGroupsSolveQuickly) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> cost(0.1, 10);
  std::vector<std::vector<double>> c(16, std::vector<double>(8));
  for (auto& row : c) {
    for (double& v : row) v = cost(gen);
  }
  std::vector<double> n(8, 1000), backlog(16, 0);
  const auto p = plan_split(c, backlog, n);
  ASSERT_TRUE(p.feasible);
  double total = 0;
  for (const auto& row : p.tasks) {
    for (double v : row) total += v;
  }
  EXPECT_NEAR(total, 8000, 1e-3);
  // A lower bound: even if every worker ran every group at its cheapest, ...
  double rate = 0;
  for (const auto& row : c) rate += 1.0 / *std::min_element(row.begin(), row.end());
  EXPECT_GE(p.makespan, 8000 / rate - 1e-6);
}

}  // namespace
}  // namespace taskfarm::ventilator
