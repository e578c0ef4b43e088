// Loading plugin libraries: dlopen, the entry symbol, then KernelCatalog::add_plugin's checks.
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "common/errors.h"
#include "common/text.h"
#include "kernels/kernel.h"

namespace taskfarm::kernels {

void KernelCatalog::load_plugin(const std::string& path) {
  const std::string label = printable(path, 200);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw SetupError(fmt::format("plugin {}: no such file", label));
  }
  // RTLD_LOCAL: two plugins may use the same symbol names; RTLD_NOW: a missing symbol is an
  // error now, not a crash in the middle of a task.
  void* handle = dlopen(std::filesystem::absolute(path).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw SetupError(fmt::format("plugin {}: cannot load: {}", label,
                                 printable(why ? why : "unknown error", 300)));
  }
  auto entry = reinterpret_cast<tf_plugin_entry>(dlsym(handle, TF_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    dlclose(handle);
    throw SetupError(fmt::format("plugin {}: no {}() (not a taskfarm plugin, or built for another "
                                 "ABI version)",
                                 label, TF_PLUGIN_ENTRY_SYMBOL));
  }
  const tf_plugin* plugin = entry();
  if (plugin == nullptr) {
    dlclose(handle);
    throw SetupError(fmt::format("plugin {}: {}() returned no plugin", label,
                                 TF_PLUGIN_ENTRY_SYMBOL));
  }
  try {
    add_plugin(*plugin, path);
  } catch (...) {
    dlclose(handle);
    throw;
  }
  // Kept open for the life of the process: the catalog points into the library.
  libraries_.emplace_back(handle, [](void*) {});
}

void KernelCatalog::load_plugin_dir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw SetupError(fmt::format("plugin directory {}: not a directory", printable(dir, 200)));
  }
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > 3 && name.ends_with(".so")) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_plugin(f);
}

}  // namespace taskfarm::kernels
