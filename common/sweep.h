// Parameter sweeps: a job entry's `params`, a list of points or a grid, expanded lazily into
// one point per task. The ventilator (task descriptors) and the sink (the outputs index) expand
// them the same way, from the same JobSpec.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol.h"

namespace taskfarm {

class Sweep {
 public:
  using Point = std::vector<std::pair<std::string, std::string>>;  // (key, value as text)

  // Parses an entry's params: [{"x": 1, ...}, ...] or {"grid": {"x": [1, 2], ...}}.
  // Grid points vary the last key (in alphabetical order) fastest.
  // Throws: SetupError with a one-line reason (bad shape, a key that is not an identifier,
  // a value that is not a number, string or boolean, more than `max_points` points).
  static Sweep parse(const google::protobuf::Value& params, uint64_t max_points);

  bool empty() const { return points_ == 0; }
  uint64_t points() const { return points_; }
  // Returns: point `index` (< points()).
  Point point(uint64_t index) const;
  // Returns: the keys every point has (the grid's, or the list's union), sorted.
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  uint64_t points_ = 0;
  std::vector<std::string> keys_;
  std::vector<Point> list_;                     // list mode
  std::vector<std::vector<std::string>> axes_;  // grid mode: values of keys_[i]
  bool grid_ = false;
};

// Returns: whether `key` can name a parameter: an identifier of at most 64 characters
// ([A-Za-z_][A-Za-z0-9_]*), usable as {key} in argv and in TASKFARM_PARAM_<KEY>.
bool valid_param_key(std::string_view key);

}  // namespace taskfarm
