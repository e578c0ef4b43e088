// A set of task ids kept as disjoint ranges [begin, end): its memory follows the gaps (tasks
// finished out of order, i.e. about the tasks in flight), not the size of the job. A job of
// 2^32 tasks finished in order is one range.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace taskfarm {

class RangeSet {
 public:
  RangeSet() = default;
  // The hint points into one map: copies and moves start without it.
  RangeSet(const RangeSet& o) : ranges_(o.ranges_), count_(o.count_) {}
  RangeSet(RangeSet&& o) noexcept : ranges_(std::move(o.ranges_)), count_(o.count_) {
    o.clear();
  }
  RangeSet& operator=(RangeSet o) noexcept {
    ranges_.swap(o.ranges_);
    hint_ = ranges_.end();
    count_ = o.count_;
    return *this;
  }

  // Adds `id` (below UINT64_MAX). Returns: true when it was not in the set yet.
  bool insert(uint64_t id) {
    // Fast path: results mostly extend the range the previous one extended.
    if (hint_ != ranges_.end() && id == hint_->second) {
      auto next = std::next(hint_);
      ++hint_->second;
      if (next != ranges_.end() && next->first == hint_->second) {
        hint_->second = next->second;
        ranges_.erase(next);
      }
      ++count_;
      return true;
    }
    auto next = ranges_.upper_bound(id);  // first range starting after id
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (id < prev->second) return false;  // already in
      if (id == prev->second) {
        ++prev->second;
        if (next != ranges_.end() && next->first == prev->second) {
          prev->second = next->second;
          ranges_.erase(next);
        }
        hint_ = prev;
        ++count_;
        return true;
      }
    }
    if (next != ranges_.end() && next->first == id + 1) {
      const uint64_t end = next->second;
      hint_ = ranges_.emplace_hint(ranges_.erase(next), id, end);
    } else {
      hint_ = ranges_.emplace_hint(next, id, id + 1);
    }
    ++count_;
    return true;
  }

  // Adds every id in [begin, end) (for loading a saved set). Returns: how many were new.
  uint64_t insert_range(uint64_t begin, uint64_t end) {
    uint64_t added = 0;
    while (begin < end) {
      auto next = ranges_.upper_bound(begin);
      if (next != ranges_.begin() && begin < std::prev(next)->second) {
        begin = std::prev(next)->second;  // skip what is already in
        continue;
      }
      const uint64_t stop = next != ranges_.end() && next->first < end ? next->first : end;
      // [begin, stop) is all new: add it as one range, merged with its neighbours.
      added += stop - begin;
      count_ += stop - begin;
      uint64_t b = begin, e = stop;
      if (next != ranges_.begin() && std::prev(next)->second == b) {
        auto prev = std::prev(next);
        b = prev->first;
        ranges_.erase(prev);
      }
      if (next != ranges_.end() && next->first == e) {
        e = next->second;
        next = ranges_.erase(next);
      }
      ranges_.emplace_hint(next, b, e);
      begin = stop;
    }
    hint_ = ranges_.end();
    return added;
  }

  bool contains(uint64_t id) const {
    auto next = ranges_.upper_bound(id);
    return next != ranges_.begin() && id < std::prev(next)->second;
  }
  // Returns: how many ids the set holds.
  uint64_t size() const { return count_; }
  // Returns: how many disjoint ranges hold them (the memory used).
  size_t ranges() const { return ranges_.size(); }
  // Returns: the smallest id not in the set that is >= `from`.
  uint64_t next_missing(uint64_t from) const {
    auto next = ranges_.upper_bound(from);
    if (next != ranges_.begin() && from < std::prev(next)->second) return std::prev(next)->second;
    return from;
  }
  // The ranges in order, as (begin, end) pairs.
  const std::map<uint64_t, uint64_t>& range_map() const { return ranges_; }
  void clear() {
    ranges_.clear();
    hint_ = ranges_.end();
    count_ = 0;
  }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // begin -> end (exclusive)
  std::map<uint64_t, uint64_t>::iterator hint_ = ranges_.end();
  uint64_t count_ = 0;
};

}  // namespace taskfarm
