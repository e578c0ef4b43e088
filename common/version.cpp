#include "common/version.h"

#include "taskfarm_git_version.h"  // generated at build time: TASKFARM_GIT_COMMIT

namespace taskfarm {

const char* const kVersion = TASKFARM_VERSION;
const char* const kGitCommit = TASKFARM_GIT_COMMIT;
const bool kCudaBuilt = TASKFARM_CUDA_BUILT != 0;

}  // namespace taskfarm
