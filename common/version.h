// What `--version` prints, fixed at build time (cmake/version.cmake writes the git part).
#pragma once

namespace taskfarm {

extern const char* const kVersion;    // the project version, "0.1.0"
extern const char* const kGitCommit;  // `git describe --always --dirty`, "unknown" outside git
extern const bool kCudaBuilt;         // built with the CUDA kernels (TASKFARM_ENABLE_CUDA)

}  // namespace taskfarm
