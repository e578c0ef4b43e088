// A RangeSet of task ids to and from its journal form (v1::TaskRanges: (gap, length) pairs).
#pragma once

#include "common/range_set.h"
#include "taskfarm.pb.h"

namespace taskfarm {

// Returns: `set` as (gap, length) pairs: a few bytes per range, whatever the job's size.
inline v1::TaskRanges to_task_ranges(const RangeSet& set) {
  v1::TaskRanges out;
  out.mutable_gap_length()->Reserve(static_cast<int>(set.ranges() * 2));
  uint64_t at = 0;
  for (const auto& [begin, end] : set.range_map()) {
    out.add_gap_length(begin - at);
    out.add_gap_length(end - begin);
    at = end;
  }
  return out;
}

// Replaces `set` with the ranges of `in`, keeping ids below `limit`.
// Returns: false (and `set` holds what was valid) when `in` is malformed: an odd count, a
// range past `limit` or overflowing.
inline bool from_task_ranges(const v1::TaskRanges& in, RangeSet& set,
                             uint64_t limit = UINT64_MAX) {
  set.clear();
  const auto& v = in.gap_length();
  if (v.size() % 2 != 0) return false;
  uint64_t at = 0;
  for (int i = 0; i < v.size(); i += 2) {
    const uint64_t gap = v.Get(i), length = v.Get(i + 1);
    if (gap > limit - at || length > limit - at - gap) return false;
    const uint64_t begin = at + gap, end = begin + length;
    set.insert_range(begin, end);
    at = end;
  }
  return true;
}

}  // namespace taskfarm
