// Clocks behind an interface so that lease and heartbeat logic can be driven by tests.
#pragma once

#include <chrono>
#include <cstdint>

namespace taskfarm {

class Clock {
 public:
  virtual ~Clock() = default;
  // Returns: monotonic nanoseconds (timeouts, leases).
  virtual int64_t steady_ns() const = 0;
  // Returns: wall-clock nanoseconds since the epoch (latency across processes).
  virtual int64_t wall_ns() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t steady_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  int64_t wall_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static const SystemClock& instance() {
    static const SystemClock clock;
    return clock;
  }
};

// A clock that only moves when told to.
class ManualClock final : public Clock {
 public:
  int64_t steady_ns() const override { return now_; }
  int64_t wall_ns() const override { return now_; }
  void advance_ms(int64_t ms) { now_ += ms * 1'000'000; }
  void set_ns(int64_t ns) { now_ = ns; }

 private:
  int64_t now_ = 1'000'000'000;
};

inline int64_t ms_to_ns(int64_t ms) { return ms * 1'000'000; }

}  // namespace taskfarm
