// StreamRunner on CUDA: one non-blocking stream per runner, inputs generated on the device or
// uploaded through reused pinned staging buffers, task memory from the runner's own
// stream-ordered pool (kept cached between tasks), and 16 result bytes copied back per task.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <optional>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_kernels.cuh"
#include "kernels/cuda/gpu.h"
#include "kernels/inputs.h"

#define TASKFARM_CUBLAS_CHECK(call)                                                     \
  do {                                                                                  \
    const cublasStatus_t taskfarm_cublas_status_ = (call);                              \
    if (taskfarm_cublas_status_ != CUBLAS_STATUS_SUCCESS)                               \
      throw ::taskfarm::kernels::KernelError(                                           \
          std::string("cuBLAS error ") + cublasGetStatusName(taskfarm_cublas_status_) + \
              " in " #call " at " __FILE__ ":" + std::to_string(__LINE__),              \
          /*retryable=*/true);                                                          \
  } while (0)

namespace taskfarm::kernels::gpu {
namespace {

constexpr std::string_view kGpuKernels[] = {"noop",  "sleep",      "saxpy",         "reduce",
                                            "sgemm", "mandelbrot", "montecarlo_pi", "sort"};

// Pinned staging: two buffers of at most this size, grown on demand; a larger payload streams
// through them, the host copy of one chunk overlapping the DMA of the other.
constexpr size_t kStagingChunk = size_t{16} << 20;
constexpr size_t kMinStaging = size_t{64} << 10;
constexpr size_t kCublasWorkspace = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
constexpr size_t kAlign = 256;
// Waiting for a task: poll this long (small tasks finish with low latency), then sleep on a
// blocking-sync event (a 60 s sleep task must not burn a core).
constexpr auto kSpinWait = std::chrono::microseconds(500);

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Every live runner's pool, so that a runner out of memory can make the others hand their
// cached free blocks back to the device before it gives up.
class PoolRegistry {
 public:
  static PoolRegistry& instance() {
    static PoolRegistry registry;
    return registry;
  }
  void add(cudaMemPool_t pool) {
    std::lock_guard lock(mu_);
    pools_.push_back(pool);
  }
  void remove(cudaMemPool_t pool) {
    std::lock_guard lock(mu_);
    pools_.erase(std::remove(pools_.begin(), pools_.end(), pool), pools_.end());
  }
  // Trimming releases only memory no allocation uses, so it is safe while others run.
  void trim_all() {
    std::lock_guard lock(mu_);
    for (cudaMemPool_t pool : pools_) (void)cudaMemPoolTrimTo(pool, 0);
  }

 private:
  std::mutex mu_;
  std::vector<cudaMemPool_t> pools_;  // guarded by mu_
};

class CudaStreamRunner final : public StreamRunner {
 public:
  explicit CudaStreamRunner(int device) : device_(device) {}
  ~CudaStreamRunner() override;
  CudaStreamRunner(const CudaStreamRunner&) = delete;
  CudaStreamRunner& operator=(const CudaStreamRunner&) = delete;

  // Throws: std::runtime_error (KernelError) when the device cannot be used.
  void init();

  KernelOutput run(std::string_view kernel, const TaskInput& in) override;
  KernelOutput run_plugin(const KernelDef& def, const TaskInput& in) override;
  uint64_t device_bytes_in_use() const override;

 private:
  // One pool allocation per task, carved at 256-byte offsets; freed in stream order when the
  // task ends or fails, so the next task on the stream reuses the same blocks.
  class TaskMemory {
   public:
    TaskMemory(CudaStreamRunner& runner, size_t bytes)
        : stream_(runner.stream_), base_(static_cast<char*>(runner.allocate(bytes))) {}
    ~TaskMemory() {
      if (base_ != nullptr) (void)cudaFreeAsync(base_, stream_);
    }
    TaskMemory(const TaskMemory&) = delete;
    TaskMemory& operator=(const TaskMemory&) = delete;
    template <typename T>
    T* at(size_t offset) const {
      return base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + offset);
    }

   private:
    cudaStream_t stream_;
    char* base_;
  };

  struct Staging {
    void* host = nullptr;  // pinned
    size_t capacity = 0;
    cudaEvent_t copied = nullptr;  // recorded after the last copy out of `host`
    bool in_flight = false;
  };

  KernelOutput dispatch(std::string_view kernel, const TaskInput& in);
  KernelOutput run_noop(const TaskInput& in);
  KernelOutput run_sleep(const TaskInput& in);
  KernelOutput run_saxpy(const TaskInput& in);
  KernelOutput run_reduce(const TaskInput& in);
  KernelOutput run_sgemm(const TaskInput& in);
  KernelOutput run_mandelbrot(const TaskInput& in);
  KernelOutput run_montecarlo_pi(const TaskInput& in);
  KernelOutput run_sort(const TaskInput& in);

  void* allocate(size_t bytes);
  void upload(void* device_dst, const char* src, size_t bytes);
  Sums finish();  // enqueues the result copy, waits for the stream, returns the result
  void wait();
  void ensure_cublas();
  Launch launch() const { return Launch{stream_, sm_count_, scratch_}; }

  const int device_;
  int sm_count_ = 1;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* scratch_memory_ = nullptr;
  ReduceScratch scratch_;
  Sums* host_result_ = nullptr;  // pinned
  std::array<Staging, 2> staging_;
  size_t next_staging_ = 0;
  cublasHandle_t cublas_ = nullptr;  // created by the first sgemm
  void* cublas_workspace_ = nullptr;
  std::atomic<uint64_t> fixed_device_bytes_{0};  // scratch + cuBLAS workspace
};

void CudaStreamRunner::init() {
  int count = 0;
  TASKFARM_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device_ < 0 || device_ >= count)
    throw std::runtime_error("no CUDA device " + std::to_string(device_) + " (found " +
                             std::to_string(count) + ")");
  TASKFARM_CUDA_CHECK(cudaSetDevice(device_));
  if (const cudaError_t err = probe_kernel_image(); err != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error("CUDA device " + std::to_string(device_) +
                             " cannot run this build's kernels: " + cudaGetErrorString(err));
  }
  TASKFARM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
  TASKFARM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TASKFARM_CUDA_CHECK(
      cudaEventCreateWithFlags(&done_, cudaEventBlockingSync | cudaEventDisableTiming));
  for (Staging& s : staging_)
    TASKFARM_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));

  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device_;
  TASKFARM_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
  PoolRegistry::instance().add(pool_);
  // Keep freed memory cached in the pool: the next task reuses it without a device allocation.
  uint64_t keep_all = std::numeric_limits<uint64_t>::max();
  TASKFARM_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep_all));

  // Scratch: result (16 B), blocks_done, then the block partials.
  const size_t scratch_bytes = kAlign + kAlign + sizeof(Sums) * kMaxBlocks;
  TASKFARM_CUDA_CHECK(cudaMalloc(&scratch_memory_, scratch_bytes));
  fixed_device_bytes_ += scratch_bytes;
  char* base = static_cast<char*>(scratch_memory_);
  scratch_.result = reinterpret_cast<Sums*>(base);
  scratch_.blocks_done = reinterpret_cast<unsigned int*>(base + kAlign);
  scratch_.partials = reinterpret_cast<Sums*>(base + 2 * kAlign);
  TASKFARM_CUDA_CHECK(cudaMemsetAsync(scratch_memory_, 0, scratch_bytes, stream_));
  TASKFARM_CUDA_CHECK(cudaMallocHost(&host_result_, sizeof(Sums)));
  TASKFARM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaStreamRunner::~CudaStreamRunner() {
  // Best effort, never throws: the device may already be gone.
  (void)cudaSetDevice(device_);
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  if (cublas_ != nullptr) (void)cublasDestroy(cublas_);
  if (cublas_workspace_ != nullptr) (void)cudaFree(cublas_workspace_);
  if (scratch_memory_ != nullptr) (void)cudaFree(scratch_memory_);
  if (host_result_ != nullptr) (void)cudaFreeHost(host_result_);
  for (Staging& s : staging_) {
    if (s.host != nullptr) (void)cudaFreeHost(s.host);
    if (s.copied != nullptr) (void)cudaEventDestroy(s.copied);
  }
  if (done_ != nullptr) (void)cudaEventDestroy(done_);
  if (pool_ != nullptr) {
    PoolRegistry::instance().remove(pool_);
    (void)cudaMemPoolDestroy(pool_);
  }
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  (void)cudaGetLastError();
}

uint64_t CudaStreamRunner::device_bytes_in_use() const {
  uint64_t reserved = 0;
  if (pool_ != nullptr &&
      cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved) != cudaSuccess) {
    (void)cudaGetLastError();
    reserved = 0;
  }
  return reserved + fixed_device_bytes_.load();
}

KernelOutput CudaStreamRunner::run(std::string_view kernel, const TaskInput& in) {
  if (auto why = KernelRegistry::instance().validate(kernel, in)) throw KernelError(*why);
  if (!has_kernel(kernel))
    throw KernelError("kernel '" + std::string(kernel) + "' has no CUDA implementation");
  try {
    TASKFARM_CUDA_CHECK(cudaSetDevice(device_));  // the calling thread's current device
    // Launch checks (cudaGetLastError) must see only this task's errors.
    (void)cudaGetLastError();
    return dispatch(kernel, in);
  } catch (...) {
    // Leave the runner usable: nothing of this task may still read the staging buffers, and
    // the reduction counter must be 0 for the next kernel.
    (void)cudaMemsetAsync(scratch_.blocks_done, 0, sizeof(unsigned int), stream_);
    (void)cudaStreamSynchronize(stream_);
    (void)cudaGetLastError();
    for (Staging& s : staging_) s.in_flight = false;
    next_staging_ = 0;
    throw;
  }
}

// A plugin kernel's view of this runner: its stream, and allocations from its pool that are
// freed in stream order when the task ends.
struct PluginCuda {
  tf_cuda cuda{};
  std::vector<void*> allocations;
  std::function<void*(size_t)> allocate;
  static void* alloc(tf_cuda* c, size_t bytes) {
    auto* self = reinterpret_cast<PluginCuda*>(c);  // `cuda` is the first member
    try {
      void* p = self->allocate(bytes);
      if (p != nullptr) self->allocations.push_back(p);
      return p;
    } catch (...) {
      return nullptr;  // out of memory: the plugin returns TF_RETRY
    }
  }
};

// The caller validated the task against its catalog (the plugin's kernels are not built in).
KernelOutput CudaStreamRunner::run_plugin(const KernelDef& def, const TaskInput& in) {
  if (def.abi.run_cuda == nullptr)
    throw KernelError(std::string(def.name) + ": no CUDA implementation");
  TASKFARM_CUDA_CHECK(cudaSetDevice(device_));
  (void)cudaGetLastError();
  PluginCuda ctx;
  ctx.allocate = [this](size_t bytes) { return allocate(bytes); };
  ctx.cuda.device = device_;
  ctx.cuda.stream = stream_;
  ctx.cuda.alloc = &PluginCuda::alloc;
  ctx.cuda.impl = this;
  auto release = [&] {
    for (void* p : ctx.allocations) (void)cudaFreeAsync(p, stream_);
    ctx.allocations.clear();
  };
  try {
    if (!in.payload.empty()) {
      void* payload = PluginCuda::alloc(&ctx.cuda, in.payload.size());
      if (payload == nullptr)
        throw KernelError(std::string(def.name) + ": out of device memory for the payload", true);
      upload(payload, in.payload.data(), in.payload.size());
      ctx.cuda.payload_device = payload;
    }
    const PluginTask task(def.name, in);
    PluginOutput output(in);
    tf_result result{};
    const int rc = def.abi.run_cuda(task.get(), &ctx.cuda, output.get(), &result);
    wait();  // everything the plugin enqueued, and the payload upload, is done
    const cudaError_t err = cudaGetLastError();
    release();
    if (err != cudaSuccess)
      throw KernelError(std::string(def.name) + ": CUDA error " + cudaGetErrorName(err) + ": " +
                            cudaGetErrorString(err),
                        /*retryable=*/true);
    return plugin_outcome(def.name, rc, result, output, in.max_output_bytes);
  } catch (...) {
    release();
    (void)cudaStreamSynchronize(stream_);
    (void)cudaGetLastError();
    for (Staging& s : staging_) s.in_flight = false;
    next_staging_ = 0;
    throw;
  }
}

KernelOutput CudaStreamRunner::dispatch(std::string_view kernel, const TaskInput& in) {
  if (kernel == "noop") return run_noop(in);
  if (kernel == "sleep") return run_sleep(in);
  if (kernel == "saxpy") return run_saxpy(in);
  if (kernel == "reduce") return run_reduce(in);
  if (kernel == "sgemm") return run_sgemm(in);
  if (kernel == "mandelbrot") return run_mandelbrot(in);
  if (kernel == "montecarlo_pi") return run_montecarlo_pi(in);
  if (kernel == "sort") return run_sort(in);
  throw KernelError("kernel '" + std::string(kernel) + "' has no CUDA implementation");
}

void* CudaStreamRunner::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  cudaError_t err = cudaMallocFromPoolAsync(&ptr, bytes, pool_, stream_);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    // Our own frees complete in stream order; other runners' cached blocks go back too.
    TASKFARM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    PoolRegistry::instance().trim_all();
    err = cudaMallocFromPoolAsync(&ptr, bytes, pool_, stream_);
  }
  if (err != cudaSuccess) {
    const std::string call = "cudaMallocFromPoolAsync of " + std::to_string(bytes) + " bytes";
    throw_cuda_error(err, call.c_str(), __FILE__, __LINE__);
  }
  return ptr;
}

void CudaStreamRunner::upload(void* device_dst, const char* src, size_t bytes) {
  char* dst = static_cast<char*>(device_dst);
  while (bytes > 0) {
    const size_t chunk = std::min(bytes, kStagingChunk);
    Staging& s = staging_[next_staging_];
    next_staging_ ^= 1;
    if (s.in_flight) {  // its previous chunk is still being copied to the device
      TASKFARM_CUDA_CHECK(cudaEventSynchronize(s.copied));
      s.in_flight = false;
    }
    if (s.capacity < chunk) {
      const size_t capacity =
          std::min(kStagingChunk, std::max({chunk, 2 * s.capacity, kMinStaging}));
      if (s.host != nullptr) TASKFARM_CUDA_CHECK(cudaFreeHost(s.host));
      s.host = nullptr;
      s.capacity = 0;
      TASKFARM_CUDA_CHECK(cudaMallocHost(&s.host, capacity));
      s.capacity = capacity;
    }
    std::memcpy(s.host, src, chunk);
    TASKFARM_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, chunk, cudaMemcpyHostToDevice, stream_));
    TASKFARM_CUDA_CHECK(cudaEventRecord(s.copied, stream_));
    s.in_flight = true;
    dst += chunk;
    src += chunk;
    bytes -= chunk;
  }
}

void CudaStreamRunner::wait() {
  TASKFARM_CUDA_CHECK(cudaEventRecord(done_, stream_));
  const auto spin_until = std::chrono::steady_clock::now() + kSpinWait;
  for (;;) {
    const cudaError_t err = cudaEventQuery(done_);
    if (err == cudaSuccess) break;
    if (err != cudaErrorNotReady)
      throw_cuda_error(err, "cudaEventQuery(done_)", __FILE__, __LINE__);
    if (std::chrono::steady_clock::now() >= spin_until) {
      TASKFARM_CUDA_CHECK(cudaEventSynchronize(done_));
      break;
    }
    std::this_thread::yield();
  }
  for (Staging& s : staging_) s.in_flight = false;
  next_staging_ = 0;
}

Sums CudaStreamRunner::finish() {
  TASKFARM_CUDA_CHECK(cudaMemcpyAsync(host_result_, scratch_.result, sizeof(Sums),
                                      cudaMemcpyDeviceToHost, stream_));
  wait();
  return *host_result_;
}

void CudaStreamRunner::ensure_cublas() {
  if (cublas_ != nullptr) return;
  cublasHandle_t handle = nullptr;
  TASKFARM_CUBLAS_CHECK(cublasCreate(&handle));
  try {
    TASKFARM_CUBLAS_CHECK(cublasSetStream(handle, stream_));
    // Plain FP32 (no TF32): inline float payloads keep FP32 accuracy.
    TASKFARM_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
    if (cublas_workspace_ == nullptr) {
      TASKFARM_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspace));
      fixed_device_bytes_ += kCublasWorkspace;
    }
    // After cublasSetStream, which resets the workspace to cuBLAS's own.
    TASKFARM_CUBLAS_CHECK(cublasSetWorkspace(handle, cublas_workspace_, kCublasWorkspace));
  } catch (...) {
    (void)cublasDestroy(handle);
    throw;
  }
  cublas_ = handle;
}

KernelOutput CudaStreamRunner::run_noop(const TaskInput& in) {
  noop(launch(), in.index, in.payload.size());
  const Sums r = finish();
  return KernelOutput{r.u, 0.0, in.payload.size(), 0};
}

KernelOutput CudaStreamRunner::run_sleep(const TaskInput& in) {
  sleep_us(launch(), in.size, in.index);
  const Sums r = finish();
  return KernelOutput{r.u, r.d, 0, 0};
}

KernelOutput CudaStreamRunner::run_saxpy(const TaskInput& in) {
  const bool generated = in.payload.empty();
  const int64_t n =
      generated ? in.size
                : static_cast<int64_t>((in.payload.size() - sizeof(float)) / (2 * sizeof(float)));
  const size_t bytes = sizeof(float) * static_cast<size_t>(n), y_offset = align_up(bytes);
  TaskMemory memory(*this, y_offset + bytes);
  float* x = memory.at<float>(0);
  float* y = memory.at<float>(y_offset);
  float a;
  if (generated) {
    a = saxpy_scalar(in.seed, in.index);
    generate(launch(), Gen::kDyadic16, in.seed, in.index, kStreamX, x, n);
    generate(launch(), Gen::kDyadic16, in.seed, in.index, kStreamY, y, n);
  } else {
    std::memcpy(&a, in.payload.data(), sizeof a);
    upload(x, in.payload.data() + sizeof(float), bytes);
    upload(y, in.payload.data() + sizeof(float) + bytes, bytes);
  }
  saxpy(launch(), a, x, y, n);
  const Sums r = finish();
  const auto un = static_cast<uint64_t>(n);
  return KernelOutput{r.u, r.d, 12 * un, 2 * un};
}

KernelOutput CudaStreamRunner::run_reduce(const TaskInput& in) {
  const bool generated = in.payload.empty();
  const int64_t n = generated ? in.size : static_cast<int64_t>(in.payload.size() / sizeof(float));
  const size_t bytes = sizeof(float) * static_cast<size_t>(n);
  TaskMemory memory(*this, bytes);
  float* x = memory.at<float>(0);
  if (generated)
    generate(launch(), Gen::kDyadic24, in.seed, in.index, kStreamX, x, n);
  else
    upload(x, in.payload.data(), bytes);
  reduce_sum(launch(), x, n);
  const Sums r = finish();
  const auto un = static_cast<uint64_t>(n);
  return KernelOutput{element_hash(0, double_bits(r.d)), r.d, 4 * un, un};
}

KernelOutput CudaStreamRunner::run_sgemm(const TaskInput& in) {
  const int64_t n = in.size;
  const auto elements = static_cast<size_t>(n) * static_cast<size_t>(n);
  const size_t bytes = sizeof(float) * elements, stride = align_up(bytes);
  TaskMemory memory(*this, 3 * stride);
  float* a = memory.at<float>(0);
  float* b = memory.at<float>(stride);
  float* c = memory.at<float>(2 * stride);
  if (in.payload.empty()) {
    generate(launch(), Gen::kSmallInt, in.seed, in.index, kStreamX, a,
             static_cast<int64_t>(elements));
    generate(launch(), Gen::kSmallInt, in.seed, in.index, kStreamY, b,
             static_cast<int64_t>(elements));
  } else {
    upload(a, in.payload.data(), bytes);
    upload(b, in.payload.data() + bytes, bytes);
  }
  if (n > 0) {
    ensure_cublas();
    // cuBLAS is column-major, where a row-major matrix reads as its transpose: computing
    // C^T = B^T A^T column-major leaves C = A B row-major in c.
    const float one = 1.0f, zero = 0.0f;
    const int dim = static_cast<int>(n);
    TASKFARM_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, dim, dim, dim, &one, b,
                                      dim, a, dim, &zero, c, dim));
  }
  checksum_floats(launch(), c, static_cast<int64_t>(elements));
  const Sums r = finish();
  const auto un = static_cast<uint64_t>(n);
  return KernelOutput{r.u, r.d, 12 * un * un, 2 * un * un * un};
}

KernelOutput CudaStreamRunner::run_mandelbrot(const TaskInput& in) {
  const auto size = static_cast<uint64_t>(in.size);
  const uint64_t row_begin = band_begin(size, in.count, in.index);
  const uint64_t row_end = band_begin(size, in.count, in.index + 1);
  mandelbrot(launch(), in.size, static_cast<int64_t>(row_begin), static_cast<int64_t>(row_end));
  const Sums r = finish();
  const uint64_t pixels = (row_end - row_begin) * size;
  const auto iterations = static_cast<uint64_t>(r.d);
  return KernelOutput{r.u, r.d, 4 * pixels, 8 * iterations};
}

KernelOutput CudaStreamRunner::run_montecarlo_pi(const TaskInput& in) {
  montecarlo_pi(launch(), in.seed, in.index, in.size);
  const Sums r = finish();
  const uint64_t hits = r.u;
  const double pi =
      in.size == 0 ? 0.0 : 4.0 * static_cast<double>(hits) / static_cast<double>(in.size);
  return KernelOutput{element_hash(0, hits), pi, 0, 4 * static_cast<uint64_t>(in.size)};
}

KernelOutput CudaStreamRunner::run_sort(const TaskInput& in) {
  const bool generated = in.payload.empty();
  const int64_t n =
      generated ? in.size : static_cast<int64_t>(in.payload.size() / sizeof(uint32_t));
  const size_t bytes = sizeof(uint32_t) * static_cast<size_t>(n), stride = align_up(bytes);
  const size_t temp_bytes = n > 0 ? sort_temp_bytes(static_cast<int>(n)) : 0;
  TaskMemory memory(*this, 2 * stride + temp_bytes);
  uint32_t* keys = memory.at<uint32_t>(0);
  uint32_t* alt = memory.at<uint32_t>(stride);
  if (generated)
    generate(launch(), Gen::kRawU32, in.seed, in.index, kStreamX, keys, n);
  else
    upload(keys, in.payload.data(), bytes);
  const uint32_t* sorted = keys;
  if (n > 0)
    sorted =
        sort_keys(memory.at<char>(2 * stride), temp_bytes, keys, alt, static_cast<int>(n), stream_);
  checksum_sorted(launch(), sorted, n);
  const Sums r = finish();
  return KernelOutput{r.u, n > 0 ? r.d : 0.0, 8 * static_cast<uint64_t>(n), 0};
}

}  // namespace

bool built_with_cuda() { return true; }

bool has_kernel(std::string_view kernel) {
  return std::find(std::begin(kGpuKernels), std::end(kGpuKernels), kernel) != std::end(kGpuKernels);
}

namespace {
// A built-in's CUDA side through the plugin interface: the runner is the context.
int run_builtin_cuda(const tf_task* task, tf_cuda* cuda, tf_output*, tf_result* result) {
  try {
    const KernelOutput out =
        static_cast<StreamRunner*>(cuda->impl)->run(task->kernel, task_input_of(*task));
    result->checksum = out.checksum;
    result->value = out.value;
    result->bytes = out.bytes;
    result->flops = out.flops;
    return TF_OK;
  } catch (const KernelError& e) {
    std::snprintf(result->error, sizeof result->error, "%s", e.what());
    return e.retryable() ? TF_RETRY : TF_FAILED;
  }
}
}  // namespace

const tf_plugin& builtin_cuda_kernels() {
  static const std::vector<tf_kernel> table = [] {
    std::vector<tf_kernel> t;
    for (std::string_view name : kGpuKernels)
      t.push_back(tf_kernel{name.data(), nullptr, nullptr, 0, 0, nullptr, nullptr, &run_builtin_cuda});
    return t;
  }();
  static const tf_plugin plugin{TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "cuda-builtin", "1",
                                table.size(), table.data()};
  return plugin;
}

std::vector<DeviceInfo> list_devices(std::string* why_none) {
  std::vector<DeviceInfo> devices;
  std::string why;
  auto add_reason = [&why](const std::string& reason) {
    why += (why.empty() ? "" : "; ") + reason;
  };
  try {
    int count = 0;
    if (const cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
      add_reason(std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
      count = 0;
    } else if (count == 0) {
      add_reason("no CUDA device found");
    }
    int previous = 0;
    const bool restore = count > 0 && cudaGetDevice(&previous) == cudaSuccess;
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp props{};
      int mode = 0;
      if (const cudaError_t err = cudaGetDeviceProperties(&props, i); err != cudaSuccess) {
        add_reason("device " + std::to_string(i) + ": " + cudaGetErrorString(err));
        continue;
      }
      const std::string label = "device " + std::to_string(i) + " (" + props.name + ", sm_" +
                                std::to_string(props.major) + std::to_string(props.minor) + ")";
      if (cudaDeviceGetAttribute(&mode, cudaDevAttrComputeMode, i) == cudaSuccess &&
          mode == cudaComputeModeProhibited) {
        add_reason(label + ": compute mode prohibited");
        continue;
      }
      cudaError_t err = cudaSetDevice(i);
      if (err == cudaSuccess) err = probe_kernel_image();  // no SASS/PTX for this device?
      if (err != cudaSuccess) {
        add_reason(label + ": " + cudaGetErrorString(err));
        continue;
      }
      devices.push_back(DeviceInfo{i, props.name, static_cast<uint64_t>(props.totalGlobalMem),
                                   props.multiProcessorCount, props.major, props.minor});
    }
    if (restore) (void)cudaSetDevice(previous);
  } catch (...) {  // std::bad_alloc: list_devices never throws
    devices.clear();
    add_reason("could not list CUDA devices");
  }
  (void)cudaGetLastError();
  if (devices.empty() && why_none != nullptr)
    *why_none = why.empty() ? "no usable CUDA device" : why;
  return devices;
}

std::unique_ptr<StreamRunner> StreamRunner::create(int device) {
  auto runner = std::make_unique<CudaStreamRunner>(device);
  runner->init();  // on failure the destructor releases whatever init made
  return runner;
}

}  // namespace taskfarm::kernels::gpu
