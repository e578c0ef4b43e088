// kernels/cuda/gpu.h for a build without CUDA (TASKFARM_ENABLE_CUDA=OFF): there is no device,
// and asking for a runner is a setup error.
#include <stdexcept>
#include <string>

#include "kernels/cuda/gpu.h"

namespace taskfarm::kernels::gpu {

bool built_with_cuda() { return false; }

std::vector<DeviceInfo> list_devices(std::string* why_none) {
  if (why_none != nullptr) *why_none = "built without CUDA";
  return {};
}

bool has_kernel(std::string_view) { return false; }

const tf_plugin& builtin_cuda_kernels() {
  static const tf_plugin none{TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "cuda-builtin", "0", 0,
                              nullptr};
  return none;
}

std::unique_ptr<StreamRunner> StreamRunner::create(int device) {
  throw std::runtime_error("cannot use CUDA device " + std::to_string(device) +
                           ": taskfarm was built without CUDA (TASKFARM_ENABLE_CUDA=OFF)");
}

}  // namespace taskfarm::kernels::gpu
