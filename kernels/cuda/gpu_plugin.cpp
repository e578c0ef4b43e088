// libtaskfarm_gpu.so: exports the CUDA kernels of taskfarm_kernels_gpu to the worker's loader.
#include "kernels/cuda/gpu_plugin.h"

namespace {

using namespace taskfarm::kernels::gpu;

std::unique_ptr<StreamRunner> create_runner(int device) { return StreamRunner::create(device); }

const GpuPluginApi kApi{kGpuPluginAbi, &list_devices, &create_runner, &builtin_cuda_kernels};

}  // namespace

extern "C" __attribute__((visibility("default"))) const GpuPluginApi* taskfarm_gpu_plugin_api() {
  return &kApi;
}
