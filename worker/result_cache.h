// The results a worker has sent to the sink, kept as the encoded messages that carried them,
// so that it can send them again when the sink restarted and lost some (the ventilator asks for
// the tasks whose leases are still open). Bounded: the oldest messages go first beyond a number
// of results or of bytes; a task whose result is gone from here is issued again instead.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/protocol.h"

namespace taskfarm::worker {

class ResultCache {
 public:
  static constexpr uint64_t kDefaultMaxResults = 100'000;
  static constexpr uint64_t kDefaultMaxBytes = uint64_t{64} << 20;

  explicit ResultCache(uint64_t max_results = kDefaultMaxResults,
                       uint64_t max_bytes = kDefaultMaxBytes)
      : max_results_(max_results), max_bytes_(max_bytes) {}

  // Keeps an encoded Envelope carrying `results` results (a ResultBatch).
  void add(std::string encoded, uint64_t results);

  // Moves into `out` the newest cached result of each task of `job_id` in `wanted`, and takes
  // those tasks out of `wanted`. Returns: how many were found.
  size_t take(uint64_t job_id, std::unordered_set<uint64_t>& wanted,
              google::protobuf::RepeatedPtrField<v1::Result>& out) const;

  uint64_t results() const { return results_; }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Message {
    std::string bytes;
    uint64_t results;
  };
  uint64_t max_results_, max_bytes_;
  std::deque<Message> messages_;  // oldest first
  uint64_t results_ = 0, bytes_ = 0;
};

}  // namespace taskfarm::worker
