#include "ventilator/split.h"

#include <algorithm>
#include <cmath>

namespace taskfarm::ventilator {
namespace {

// A dense two-phase simplex on  minimise c.x  subject to  A x = b (b >= 0), x >= 0.
class Simplex {
 public:
  Simplex(std::vector<std::vector<double>> a, std::vector<double> b, std::vector<double> c)
      : m_(a.size()), n_(c.size()) {
    // Columns: the n variables, then one artificial per row; then the right-hand side.
    width_ = n_ + m_ + 1;
    t_.assign((m_ + 1) * width_, 0.0);
    for (size_t r = 0; r < m_; ++r) {
      for (size_t j = 0; j < n_; ++j) at(r, j) = a[r][j];
      at(r, n_ + r) = 1;
      at(r, width_ - 1) = b[r];
      basis_.push_back(n_ + r);
    }
    c_ = std::move(c);
  }

  // Returns: the optimum, or false when infeasible or unbounded.
  bool solve(std::vector<double>& x) {
    // Phase 1: minimise the sum of the artificials.
    std::vector<double> phase1(n_ + m_, 0.0);
    for (size_t r = 0; r < m_; ++r) phase1[n_ + r] = 1;
    set_objective(phase1);
    if (!iterate(n_ + m_)) return false;
    if (-at(m_, width_ - 1) > 1e-7 * scale()) return false;  // infeasible
    // Drive artificials out of the basis where a real column can replace them.
    for (size_t r = 0; r < m_; ++r) {
      if (basis_[r] < n_) continue;
      for (size_t j = 0; j < n_; ++j) {
        if (std::fabs(at(r, j)) > 1e-9) {
          pivot(r, j);
          break;
        }
      }
    }
    // Phase 2: the real objective, artificials barred.
    std::vector<double> phase2(n_ + m_, 0.0);
    std::copy(c_.begin(), c_.end(), phase2.begin());
    set_objective(phase2);
    if (!iterate(n_)) return false;
    x.assign(n_, 0.0);
    for (size_t r = 0; r < m_; ++r) {
      if (basis_[r] < n_) x[basis_[r]] = at(r, width_ - 1);
    }
    return true;
  }

 private:
  double& at(size_t r, size_t j) { return t_[r * width_ + j]; }

  double scale() {
    double s = 1;
    for (size_t r = 0; r < m_; ++r) s = std::max(s, std::fabs(at(r, width_ - 1)));
    return s;
  }

  // The objective row holds reduced costs: c_j - c_B B^-1 A_j, and -z in the last column.
  void set_objective(const std::vector<double>& cost) {
    for (size_t j = 0; j < width_; ++j) at(m_, j) = j < cost.size() ? cost[j] : 0.0;
    for (size_t r = 0; r < m_; ++r) {
      const double cb = basis_[r] < cost.size() ? cost[basis_[r]] : 0.0;
      if (cb == 0) continue;
      for (size_t j = 0; j < width_; ++j) at(m_, j) -= cb * at(r, j);
    }
  }

  void pivot(size_t row, size_t col) {
    const double p = at(row, col);
    for (size_t j = 0; j < width_; ++j) at(row, j) /= p;
    for (size_t r = 0; r <= m_; ++r) {
      if (r == row) continue;
      const double f = at(r, col);
      if (f == 0) continue;
      for (size_t j = 0; j < width_; ++j) at(r, j) -= f * at(row, j);
    }
    basis_[row] = col;
  }

  // Pivots until no column among the first `allowed` improves the objective.
  bool iterate(size_t allowed) {
    const double eps = 1e-9;
    for (size_t iter = 0; iter < 50 * (m_ + n_) + 100; ++iter) {
      // Dantzig's rule, then Bland's (smallest index) late on, which cannot cycle.
      const bool bland = iter > 10 * (m_ + n_);
      size_t col = allowed;
      double best = -eps;
      for (size_t j = 0; j < allowed; ++j) {
        if (at(m_, j) < best) {
          best = at(m_, j);
          col = j;
          if (bland) break;
        }
      }
      if (col == allowed) return true;  // optimal
      size_t row = m_;
      double ratio = 0;
      for (size_t r = 0; r < m_; ++r) {
        const double a = at(r, col);
        if (a <= eps) continue;
        const double q = at(r, width_ - 1) / a;
        if (row == m_ || q < ratio - eps || (std::fabs(q - ratio) <= eps && basis_[r] < basis_[row])) {
          row = r;
          ratio = q;
        }
      }
      if (row == m_) return false;  // unbounded
      pivot(row, col);
    }
    return true;  // out of iterations: the current vertex is feasible, if not optimal
  }

  size_t m_, n_, width_ = 0;
  std::vector<double> t_;
  std::vector<size_t> basis_;
  std::vector<double> c_;
};

}  // namespace

SplitPlan plan_split(const std::vector<std::vector<double>>& cost,
                     const std::vector<double>& backlog, const std::vector<double>& count) {
  SplitPlan plan;
  const size_t workers = cost.size(), groups = count.size();
  plan.tasks.assign(workers, std::vector<double>(groups, 0.0));
  // Groups without work drop out; a group with work that no worker runs makes it infeasible.
  std::vector<size_t> live;
  for (size_t g = 0; g < groups; ++g) {
    if (count[g] <= 0) continue;
    bool runnable = false;
    for (size_t w = 0; w < workers; ++w) runnable |= std::isfinite(cost[w][g]);
    if (!runnable) return plan;
    live.push_back(g);
  }
  plan.feasible = true;
  double busiest = 0;
  for (double b : backlog) busiest = std::max(busiest, b);
  if (live.empty() || workers == 0) {
    plan.makespan = busiest;
    return plan;
  }
  // Variables: x[w][g] for every runnable pair, then T, then one slack per worker.
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t w = 0; w < workers; ++w) {
    for (size_t g : live) {
      if (std::isfinite(cost[w][g])) pairs.emplace_back(w, g);
    }
  }
  const size_t n = pairs.size() + 1 + workers;
  const size_t t_col = pairs.size();
  std::vector<std::vector<double>> a;
  std::vector<double> b;
  // Workers: T - sum_g cost x - slack = backlog  (backlog >= 0).
  for (size_t w = 0; w < workers; ++w) {
    std::vector<double> row(n, 0.0);
    for (size_t k = 0; k < pairs.size(); ++k) {
      if (pairs[k].first == w) row[k] = -cost[w][pairs[k].second];
    }
    row[t_col] = 1;
    row[t_col + 1 + w] = -1;
    a.push_back(std::move(row));
    b.push_back(std::max(0.0, backlog[w]));
  }
  // Groups: sum_w x = count.
  for (size_t g : live) {
    std::vector<double> row(n, 0.0);
    for (size_t k = 0; k < pairs.size(); ++k) {
      if (pairs[k].second == g) row[k] = 1;
    }
    a.push_back(std::move(row));
    b.push_back(count[g]);
  }
  std::vector<double> objective(n, 0.0);
  objective[t_col] = 1;
  Simplex simplex(std::move(a), std::move(b), std::move(objective));
  std::vector<double> x;
  if (!simplex.solve(x)) {
    plan.feasible = false;
    return plan;
  }
  for (size_t k = 0; k < pairs.size(); ++k) {
    plan.tasks[pairs[k].first][pairs[k].second] = std::max(0.0, x[k]);
  }
  plan.makespan = std::max(x[t_col], busiest);
  return plan;
}

}  // namespace taskfarm::ventilator
