// CPU kernel implementations behind KernelRegistry (internal to taskfarm::kernels).
// Each one assumes its task passed KernelRegistry::validate: sizes in range, payload length
// matching the kernel's format (kernels/README.md). Each runs on the calling thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/kernel.h"

namespace taskfarm::kernels::cpu {

KernelOutput noop(const TaskInput& in);
KernelOutput sleep(const TaskInput& in);
KernelOutput saxpy(const TaskInput& in);
KernelOutput sgemm(const TaskInput& in);
KernelOutput reduce(const TaskInput& in);
KernelOutput mandelbrot(const TaskInput& in);
KernelOutput montecarlo_pi(const TaskInput& in);
KernelOutput sort(const TaskInput& in);

// Writes words first .. first+n-1 of a task's stream to out: the same values as random_u32,
// several Philox blocks at a time (vectorised where the CPU allows).
void fill_random_u32(uint64_t seed, uint64_t index, uint32_t stream, uint64_t first, size_t n,
                     uint32_t* out);

// A per-thread buffer that tasks on one worker thread reuse instead of allocating per task.
// Its contents are unspecified on get(). One grown past kKeepBytes is freed by release(), so
// a single huge task does not pin its memory for the life of the thread.
template <typename T>
class ScratchBuffer {
 public:
  static constexpr size_t kKeepBytes = size_t{64} << 20;

  // Returns: storage for at least n elements. Throws: std::bad_alloc.
  T* get(size_t n) {
    if (n > capacity_) {
      data_.reset();  // free the old buffer before asking for a bigger one
      capacity_ = 0;
      data_ = std::make_unique_for_overwrite<T[]>(n);
      capacity_ = n;
    }
    return data_.get();
  }
  void release() {
    if (capacity_ * sizeof(T) > kKeepBytes) {
      data_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t capacity_ = 0;
};

// Calls release() on scope exit, so a kernel that throws still gives its memory back.
template <typename T>
class ScratchLease {
 public:
  explicit ScratchLease(ScratchBuffer<T>& buffer) : buffer_(buffer) {}
  ~ScratchLease() { buffer_.release(); }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  T* get(size_t n) { return buffer_.get(n); }

 private:
  ScratchBuffer<T>& buffer_;
};

}  // namespace taskfarm::kernels::cpu
