// Order-independent digest of a batch's results: the wrapping sum of a hash of each task's
// (task id, status, checksum). Same batch and seed -> same digest, whatever the number of
// workers, their order of completion, retries or devices.
#pragma once

#include <fmt/core.h>

#include <cstdint>
#include <string>

namespace taskfarm {

class ResultDigest {
 public:
  ResultDigest() = default;
  explicit ResultDigest(uint64_t value) : sum_(value) {}  // a saved digest, to continue it

  void add(uint64_t task_id, bool ok, uint64_t checksum) {
    sum_ += mix(task_id * 0xD6E8FEB86659FD93ull ^ mix(checksum ^ (ok ? 0 : 0xFA11ED00FA11ED00ull)));
  }
  uint64_t value() const { return sum_; }
  std::string hex() const { return fmt::format("{:016x}", sum_); }

 private:
  // SplitMix64's finaliser (the same function as kernels::mix64; kept here so that common/ does
  // not depend on kernels/). Changing it changes every digest: common_test pins a value.
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  uint64_t sum_ = 0;
};

}  // namespace taskfarm
