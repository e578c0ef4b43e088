#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <mutex>
#include <stdexcept>

#include "kernels/cuda/gpu_plugin.h"

namespace taskfarm::kernels::gpu::plugin {
namespace {

struct Loaded {
  const GpuPluginApi* api = nullptr;
  std::string why;  // when api is null
};

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}

Loaded load() {
  Loaded out;
  // No driver, no GPU: do not map the CUDA runtime and cuBLAS at all.
  if (!dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    out.why = "no CUDA driver (" + dl_error() + ")";
    return out;
  }
  std::vector<std::string> candidates;
  char exe[PATH_MAX] = {};
  if (readlink("/proc/self/exe", exe, sizeof exe - 1) > 0) {
    const auto dir = std::filesystem::path(exe).parent_path();
    candidates.push_back((dir / kGpuPluginFile).string());  // the build tree
    candidates.push_back((dir / ".." / "lib" / "taskfarm" / kGpuPluginFile).string());  // packages
    candidates.push_back((dir / ".." / "lib" / kGpuPluginFile).string());  // scripts/bundle.sh
  }
  candidates.push_back(kGpuPluginFile);  // LD_LIBRARY_PATH and the system paths
  std::string errors;
  for (const auto& path : candidates) {
    if (path.find('/') != std::string::npos && !std::filesystem::exists(path)) continue;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      errors += (errors.empty() ? "" : "; ") + dl_error();
      continue;
    }
    auto get = reinterpret_cast<GetGpuPluginApi>(dlsym(handle, kGpuPluginSymbol));
    const GpuPluginApi* api = get ? get() : nullptr;
    if (!api || api->abi != kGpuPluginAbi) {
      errors += (errors.empty() ? "" : "; ") + path + ": not a compatible taskfarm GPU plugin";
      continue;
    }
    out.api = api;
    return out;
  }
  out.why = errors.empty() ? std::string("this build has no CUDA kernels (") + kGpuPluginFile +
                                 " not found)"
                           : "cannot load the CUDA kernels: " + errors;
  return out;
}

const Loaded& loaded() {
  static const Loaded l = load();  // once, thread-safe
  return l;
}

}  // namespace

std::vector<DeviceInfo> list_devices(std::string* why_none) {
  const Loaded& l = loaded();
  if (!l.api) {
    if (why_none) *why_none = l.why;
    return {};
  }
  return l.api->list_devices(why_none);
}

std::unique_ptr<StreamRunner> create_runner(int device) {
  const Loaded& l = loaded();
  if (!l.api) throw std::runtime_error(l.why);
  return l.api->create_runner(device);
}

const tf_plugin* builtin_kernels() {
  const Loaded& l = loaded();
  return l.api ? &l.api->builtin_kernels() : nullptr;
}

}  // namespace taskfarm::kernels::gpu::plugin
