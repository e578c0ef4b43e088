// The CUDA kernels as a plugin (libtaskfarm_gpu.so) that the worker loads with dlopen only when
// it may use a GPU: a CPU worker then never maps cuBLAS and the CUDA runtime (~150 MB resident),
// and runs on nodes that have neither.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cuda/gpu.h"

namespace taskfarm::kernels::gpu {

// Bumped whenever GpuPluginApi or the types it passes change.
inline constexpr int kGpuPluginAbi = 2;

struct GpuPluginApi {
  int abi;
  std::vector<DeviceInfo> (*list_devices)(std::string* why_none);
  std::unique_ptr<StreamRunner> (*create_runner)(int device);
  const tf_plugin& (*builtin_kernels)();  // the built-ins' CUDA side, for the catalog
};

// The plugin's one exported symbol.
extern "C" using GetGpuPluginApi = const GpuPluginApi* (*)();
inline constexpr const char* kGpuPluginSymbol = "taskfarm_gpu_plugin_api";
inline constexpr const char* kGpuPluginFile = "libtaskfarm_gpu.so";

// Host side, in the worker (gpu_loader.cpp): the same calls as gpu.h, through the plugin.
namespace plugin {
// Returns: the usable devices; empty, with the reason, when there is no CUDA driver, no plugin
// next to the executable (a build without CUDA) or no device. Never throws.
std::vector<DeviceInfo> list_devices(std::string* why_none = nullptr);
// Returns: a runner on `device`. Throws: std::runtime_error when the plugin or device is unusable.
std::unique_ptr<StreamRunner> create_runner(int device);
// Returns: the built-ins' CUDA table, or nullptr without the plugin.
const tf_plugin* builtin_kernels();
}  // namespace plugin

}  // namespace taskfarm::kernels::gpu
