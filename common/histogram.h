// Latency histogram in bounded memory (HDR-style log-linear buckets, at most 1.6% relative error):
// a million samples cost the same 4096 counters as ten.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace taskfarm {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;  // 64 linear sub-buckets per power of two
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = 4096;  // index_of(UINT64_MAX) == 3775

  void record(int64_t value) {
    if (value < 0) value = 0;
    const auto v = static_cast<uint64_t>(value);
    ++counts_[index_of(v)];
    ++total_;
    sum_ += v;
    if (v > max_) max_ = v;
  }

  uint64_t count() const { return total_; }
  uint64_t max() const { return max_; }
  uint64_t sum() const { return sum_; }  // of every recorded value (wraps after 2^64)

  // Calls f(upper_bound, count) for each non-empty bucket, in increasing order.
  template <typename F>
  void for_each_bucket(F&& f) const {
    for (int i = 0; i < kBuckets; ++i) {
      if (counts_[i] != 0) f(upper_bound(i), counts_[i]);
    }
  }

  // Returns: the value at quantile q in [0, 1] (an upper bound of its bucket, capped at max()),
  // or 0 when empty.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const uint64_t upper = upper_bound(i);
        return upper < max_ ? upper : max_;
      }
    }
    return max_;
  }

  // Calls f(index, count) for each non-empty bucket, in increasing order (for saving it).
  template <typename F>
  void for_each_index(F&& f) const {
    for (int i = 0; i < kBuckets; ++i) {
      if (counts_[i] != 0) f(i, counts_[i]);
    }
  }
  // Restores a saved histogram: bucket counts by index, then its totals.
  // Returns: false for an index out of range (nothing else is checked).
  bool set_bucket(int index, uint64_t count) {
    if (index < 0 || index >= kBuckets) return false;
    counts_[static_cast<size_t>(index)] = count;
    return true;
  }
  void set_totals(uint64_t count, uint64_t sum, uint64_t max) {
    total_ = count;
    sum_ = sum;
    max_ = max;
  }

  void merge(const LatencyHistogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    if (other.max_ > max_) max_ = other.max_;
  }

  static int index_of(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    const int msb = 63 - std::countl_zero(v);   // >= kSubBits
    const int shift = msb - kSubBits + 1;       // keep kSubBits bits below the top one
    const int sub = static_cast<int>(v >> shift) & (kSub / 2 - 1);
    return (shift + 1) * (kSub / 2) + sub;
  }
  static uint64_t upper_bound(int index) {
    if (index < kSub) return static_cast<uint64_t>(index);
    const int shift = index / (kSub / 2) - 1;
    const uint64_t sub = static_cast<uint64_t>(index % (kSub / 2)) + kSub / 2;
    return ((sub + 1) << shift) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace taskfarm
