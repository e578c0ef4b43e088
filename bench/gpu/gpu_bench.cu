// GPU benchmark: the card's ceilings and taskfarm's CUDA kernels against them, in one run on one
// device, so the ratios compare like with like.
//
//   ceilings  device-to-device copy bandwidth (cudaMemcpyAsync, read + write = 2 x bytes) and
//             cuBLAS SGEMM TFLOP/s (N = 8192, default FP32 math, no TF32)
//   kernels   the launchers StreamRunner uses (kernels/cuda/device_kernels.cuh) on inputs
//             generated beforehand, timed with events, best of several: saxpy (12n bytes) and
//             reduce (4n bytes) as a fraction of copy bandwidth, sgemm (cuBLAS + checksum pass, as
//             a task runs it) as a fraction of bare cuBLAS; sort and montecarlo_pi for reference
//   tasks     many small tasks through StreamRunner::run: one runner vs several in threads
//
// Without a usable device it prints "no CUDA device: <reason>" and exits 0.
// Usage: gpu_bench [--device N] [--quick]
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_kernels.cuh"
#include "kernels/cuda/gpu.h"
#include "kernels/inputs.h"

namespace {

namespace gpu = taskfarm::kernels::gpu;
using taskfarm::kernels::TaskInput;

#define BENCH_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                            \
    const cublasStatus_t bench_status_ = (call);                                                  \
    if (bench_status_ != CUBLAS_STATUS_SUCCESS)                                                   \
      throw std::runtime_error(std::string(#call) + ": " + cublasGetStatusString(bench_status_)); \
  } while (0)

struct Options {
  int device = -1;  // first usable
  bool quick = false;
};

// Device memory that frees itself.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { TASKFARM_CUDA_CHECK(cudaMalloc(&ptr_, bytes)); }
  ~DeviceBuffer() { (void)cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

// Returns: the best time in seconds of `reps` runs of `work` on `stream`, after one warm-up.
double best_seconds(cudaStream_t stream, int reps, const std::function<void()>& work) {
  cudaEvent_t start, stop;
  TASKFARM_CUDA_CHECK(cudaEventCreate(&start));
  TASKFARM_CUDA_CHECK(cudaEventCreate(&stop));
  work();
  TASKFARM_CUDA_CHECK(cudaStreamSynchronize(stream));
  float best_ms = std::numeric_limits<float>::max();
  for (int i = 0; i < reps; ++i) {
    TASKFARM_CUDA_CHECK(cudaEventRecord(start, stream));
    work();
    TASKFARM_CUDA_CHECK(cudaEventRecord(stop, stream));
    TASKFARM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TASKFARM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    best_ms = std::min(best_ms, ms);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return best_ms * 1e-3;
}

// Tasks per second of `tasks` copies of one task spread over `runners` StreamRunners, each
// driven by its own thread.
double tasks_per_second(int device, int runners, int tasks, const char* kernel,
                        const TaskInput& in) {
  std::vector<std::unique_ptr<gpu::StreamRunner>> pool;
  for (int r = 0; r < runners; ++r) {
    pool.push_back(gpu::StreamRunner::create(device));
    pool.back()->run(kernel, in);  // warm: pool memory, staging buffers
  }
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < runners; ++r) {
    threads.emplace_back([&, r] {
      try {
        while (next.fetch_add(1) < tasks) pool[r]->run(kernel, in);
      } catch (...) {
        if (!failed.exchange(true)) failure = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return tasks / seconds;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--device" && i + 1 < argc) {
      o.device = std::atoi(argv[++i]);
    } else if (arg == "--quick") {
      o.quick = true;
    } else {
      std::fprintf(stderr, "usage: gpu_bench [--device N] [--quick]\n");
      std::exit(arg == "--help" || arg == "-h" ? 0 : 1);
    }
  }
  return o;
}

int run(const Options& opt) {
  std::string why;
  const auto devices = gpu::list_devices(&why);
  if (devices.empty()) {
    std::printf("no CUDA device: %s\n", why.c_str());
    return 0;
  }
  const gpu::DeviceInfo* info = &devices.front();
  for (const auto& d : devices)
    if (d.index == opt.device) info = &d;
  if (opt.device >= 0 && info->index != opt.device) {
    std::fprintf(stderr, "gpu_bench: no usable CUDA device %d\n", opt.device);
    return 1;
  }
  const int reps = opt.quick ? 3 : 10;
  TASKFARM_CUDA_CHECK(cudaSetDevice(info->index));
  std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", info->name.c_str(), info->cc_major,
              info->cc_minor, info->sm_count, static_cast<double>(info->total_mem) / (1 << 30));

  cudaStream_t stream;
  TASKFARM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // Reduction scratch, laid out as StreamRunner's.
  DeviceBuffer scratch_memory(512 + sizeof(gpu::Sums) * gpu::kMaxBlocks);
  gpu::Launch launch;
  launch.stream = stream;
  launch.sm_count = info->sm_count;
  launch.scratch.result = scratch_memory.as<gpu::Sums>();
  launch.scratch.blocks_done = reinterpret_cast<unsigned*>(scratch_memory.as<char>() + 256);
  launch.scratch.partials = reinterpret_cast<gpu::Sums*>(scratch_memory.as<char>() + 512);
  TASKFARM_CUDA_CHECK(cudaMemsetAsync(scratch_memory.as<char>(), 0, 512, stream));

  // Four arrays of up to 2^28 floats (1 GiB each), at most a quarter of a small card.
  const int64_t n = std::min<int64_t>(int64_t{1} << (opt.quick ? 26 : 28),
                                      static_cast<int64_t>(info->total_mem / 64));
  const double gb = 1e9;

  // ---- ceilings -----------------------------------------------------------------------------
  const size_t copy_bytes = sizeof(float) * static_cast<size_t>(n);
  DeviceBuffer src(copy_bytes), dst(copy_bytes);
  gpu::generate(launch, gpu::Gen::kRawU32, 1, 0, taskfarm::kernels::kStreamX, src.as<void>(), n);
  const double copy_s = best_seconds(stream, reps, [&] {
    TASKFARM_CUDA_CHECK(cudaMemcpyAsync(dst.as<void>(), src.as<void>(), copy_bytes,
                                        cudaMemcpyDeviceToDevice, stream));
  });
  const double copy_gbps = 2.0 * static_cast<double>(copy_bytes) / copy_s / gb;
  std::printf("copy D2D     %6.0f GB/s  (%.2f GiB, read + write)\n", copy_gbps,
              static_cast<double>(copy_bytes) / (1 << 30));

  const int gemm_n = opt.quick ? 4096 : 8192;
  const size_t gemm_elems = static_cast<size_t>(gemm_n) * gemm_n;
  DeviceBuffer a(4 * gemm_elems), b(4 * gemm_elems), c(4 * gemm_elems);
  gpu::generate(launch, gpu::Gen::kSmallInt, 1, 0, taskfarm::kernels::kStreamX, a.as<void>(),
                static_cast<int64_t>(gemm_elems));
  gpu::generate(launch, gpu::Gen::kSmallInt, 1, 0, taskfarm::kernels::kStreamY, b.as<void>(),
                static_cast<int64_t>(gemm_elems));
  cublasHandle_t cublas;
  BENCH_CUBLAS_CHECK(cublasCreate(&cublas));
  BENCH_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  BENCH_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));
  const float one = 1.0f, zero = 0.0f;
  const auto gemm = [&] {
    BENCH_CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, gemm_n, gemm_n, gemm_n, &one,
                                   b.as<float>(), gemm_n, a.as<float>(), gemm_n, &zero,
                                   c.as<float>(), gemm_n));
  };
  const double gemm_flops = 2.0 * gemm_n * static_cast<double>(gemm_n) * gemm_n;
  const double cublas_s = best_seconds(stream, reps / 2 + 1, gemm);
  const double cublas_tflops = gemm_flops / cublas_s / 1e12;
  std::printf("cuBLAS SGEMM %6.1f TFLOP/s (N = %d, FP32)\n", cublas_tflops, gemm_n);

  // ---- kernels ------------------------------------------------------------------------------
  std::printf("\nkernel                    rate        of ceiling\n");
  DeviceBuffer x(copy_bytes), y(copy_bytes);
  gpu::generate(launch, gpu::Gen::kDyadic16, 1, 0, taskfarm::kernels::kStreamX, x.as<void>(), n);
  gpu::generate(launch, gpu::Gen::kDyadic16, 1, 0, taskfarm::kernels::kStreamY, y.as<void>(), n);
  const float alpha = taskfarm::kernels::saxpy_scalar(1, 0);
  const auto report_bw = [&](const char* name, double bytes, double seconds) {
    const double gbps = bytes / seconds / gb;
    std::printf("%-24s %7.0f GB/s   %5.1f%% of copy\n", name, gbps, 100.0 * gbps / copy_gbps);
    return gbps;
  };
  const double nd = static_cast<double>(n);
  const double saxpy_s = best_seconds(stream, reps, [&] {
    gpu::saxpy(launch, alpha, x.as<float>(), y.as<float>(), n, /*checksum=*/true);
  });
  const double bare_saxpy_s = best_seconds(stream, reps, [&] {
    gpu::saxpy(launch, alpha, x.as<float>(), y.as<float>(), n, /*checksum=*/false);
  });
  const double reduce_s =
      best_seconds(stream, reps, [&] { gpu::reduce_sum(launch, x.as<float>(), n); });
  const double checksum_s =
      best_seconds(stream, reps, [&] { gpu::checksum_floats(launch, x.as<float>(), n); });
  const double saxpy_gbps = report_bw("saxpy (task kernel)", 12.0 * nd, saxpy_s);
  report_bw("saxpy (no checksum)", 12.0 * nd, bare_saxpy_s);
  const double reduce_gbps = report_bw("reduce", 4.0 * nd, reduce_s);
  report_bw("checksum pass (floats)", 4.0 * nd, checksum_s);

  const double task_gemm_s = best_seconds(stream, reps / 2 + 1, [&] {
    gemm();
    gpu::checksum_floats(launch, c.as<float>(), static_cast<int64_t>(gemm_elems));
  });
  const double sgemm_tflops = gemm_flops / task_gemm_s / 1e12;
  std::printf("%-24s %7.1f TFLOP/s %5.1f%% of cuBLAS\n", "sgemm (task)", sgemm_tflops,
              100.0 * sgemm_tflops / cublas_tflops);

  {
    const int sort_n = static_cast<int>(std::min<int64_t>(n, int64_t{1} << 27));
    const size_t temp_bytes = gpu::sort_temp_bytes(sort_n);
    DeviceBuffer temp(std::max<size_t>(temp_bytes, 1));
    // Sort a fresh copy of the same keys each time: sorting sorted keys would flatter CUB.
    const double with_copy = best_seconds(stream, reps, [&] {
      TASKFARM_CUDA_CHECK(cudaMemcpyAsync(dst.as<void>(), src.as<void>(), 4 * size_t(sort_n),
                                          cudaMemcpyDeviceToDevice, stream));
      gpu::sort_keys(temp.as<void>(), temp_bytes, dst.as<uint32_t>(), x.as<uint32_t>(), sort_n,
                     stream);
    });
    const double copy_only = best_seconds(stream, reps, [&] {
      TASKFARM_CUDA_CHECK(cudaMemcpyAsync(dst.as<void>(), src.as<void>(), 4 * size_t(sort_n),
                                          cudaMemcpyDeviceToDevice, stream));
    });
    const double sort_s = std::max(with_copy - copy_only, 1e-9);
    std::printf("%-24s %7.2f Gkeys/s (n = %d, CUB radix sort)\n", "sort", sort_n / sort_s / 1e9,
                sort_n);
  }
  {
    const int64_t samples = int64_t{1} << (opt.quick ? 30 : 32);
    const double s =
        best_seconds(stream, reps / 2 + 1, [&] { gpu::montecarlo_pi(launch, 1, 0, samples); });
    std::printf("%-24s %7.1f Gsamples/s\n", "montecarlo_pi",
                static_cast<double>(samples) / s / 1e9);
  }
  BENCH_CUBLAS_CHECK(cublasDestroy(cublas));
  TASKFARM_CUDA_CHECK(cudaStreamSynchronize(stream));

  // ---- small tasks through StreamRunner -------------------------------------------------------
  std::printf("\nsmall tasks (StreamRunner::run)          1 stream    4 streams  speedup\n");
  const int tasks = opt.quick ? 500 : 4000;
  TaskInput generated;
  generated.size = int64_t{1} << 16;
  generated.seed = 1;
  std::string payload(4 + 8 * (size_t{1} << 16), '\0');
  const float a_inline = 1.5f;
  std::memcpy(payload.data(), &a_inline, sizeof a_inline);
  TaskInput inline_in;
  inline_in.payload = payload;
  TaskInput noop_in;
  struct SmallCase {
    const char* label;
    const char* kernel;
    const TaskInput* in;
  };
  double speedup_generated = 0;
  for (const SmallCase& sc : {SmallCase{"saxpy 2^16, generated", "saxpy", &generated},
                              SmallCase{"saxpy 2^16, inline (512 KiB H2D)", "saxpy", &inline_in},
                              SmallCase{"noop", "noop", &noop_in}}) {
    const double one_stream = tasks_per_second(info->index, 1, tasks, sc.kernel, *sc.in);
    const double four_streams = tasks_per_second(info->index, 4, tasks, sc.kernel, *sc.in);
    if (sc.in == &generated) speedup_generated = four_streams / one_stream;
    std::printf("%-36s %9.0f/s %10.0f/s %7.2fx\n", sc.label, one_stream, four_streams,
                four_streams / one_stream);
  }

  std::printf(
      "\n{\"device\": \"%s\", \"copy_gbps\": %.1f, \"cublas_sgemm_tflops\": %.2f, "
      "\"saxpy_gbps\": %.1f, \"saxpy_of_copy\": %.3f, \"reduce_gbps\": %.1f, "
      "\"reduce_of_copy\": %.3f, \"sgemm_tflops\": %.2f, \"sgemm_of_cublas\": %.3f, "
      "\"small_task_speedup_4_streams\": %.2f}\n",
      info->name.c_str(), copy_gbps, cublas_tflops, saxpy_gbps, saxpy_gbps / copy_gbps, reduce_gbps,
      reduce_gbps / copy_gbps, sgemm_tflops, sgemm_tflops / cublas_tflops, speedup_generated);
  TASKFARM_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  }
}
