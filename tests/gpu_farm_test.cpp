// A batch through real processes with a GPU worker next to a CPU worker gives the digest of a
// CPU-only batch (generated inputs are exact on both devices). Skips without a CUDA device.
#include "farm.h"
#include "kernels/cuda/gpu.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kJob = R"({ "name": "gpu-mix", "tasks": [
  { "kernel": "noop", "count": 40 },
  { "kernel": "saxpy", "count": 40, "size": 1000003, "seed": 7 },
  { "kernel": "sgemm", "count": 8, "size": 257, "seed": 8 },
  { "kernel": "reduce", "count": 40, "size": 1048579, "seed": 9 },
  { "kernel": "mandelbrot", "count": 16, "size": 512, "seed": 1 },
  { "kernel": "montecarlo_pi", "count": 20, "size": 1000003, "seed": 3 },
  { "kernel": "sort", "count": 20, "size": 100003, "seed": 4 } ] })";

v1::Report run(Farm& farm, const std::vector<std::vector<std::string>>& workers) {
  auto sink = farm.sink();
  std::vector<Process> ws;
  for (size_t i = 0; i < workers.size(); ++i) ws.push_back(farm.worker("w" + std::to_string(i), workers[i]));
  // Every worker takes part: a GPU worker needs ~0.6 s to start (context, plugin, cuBLAS)
  // and a CPU worker alone would finish the batch before it registers.
  auto vent = farm.ventilator({"--job", farm.write("job.json", kJob), "--min-workers",
                               std::to_string(workers.size())});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  return farm.report();
}

TEST(GpuFarm, GpuAndCpuWorkersGiveTheCpuOnlyDigest) {
  std::string why;
  if (kernels::gpu::list_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;
  v1::Report cpu_only, mixed;
  {
    Farm farm;
    cpu_only = run(farm, {{"--threads", "2"}});
  }
  {
    Farm farm;
    mixed = run(farm, {{"--device", "cuda:0", "--streams", "4"}, {"--threads", "1"}});
  }
  EXPECT_EQ(mixed.tasks_ok(), cpu_only.tasks_ok());
  EXPECT_EQ(mixed.result_digest(), cpu_only.result_digest());
  bool gpu_worked = false;
  for (const auto& w : mixed.workers()) {
    if (w.device().rfind("cuda:", 0) == 0) {
      gpu_worked = w.tasks() > 0;
      EXPECT_GT(w.gpu_mem_mb(), 0) << "GPU memory use reported";
    }
  }
  EXPECT_TRUE(gpu_worked);
}

}  // namespace
}  // namespace taskfarm::testing
