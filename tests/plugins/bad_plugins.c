/* Plugins the worker must refuse with a one-line error, one per build (BAD_KIND):
 * 1: another ABI version, 2: a kernel named like a built-in, 3: no entry symbol,
 * 4: a kernel name with a space, 5: a kernel without any implementation. */
#include <stddef.h>

#include "taskfarm/plugin.h"

static int run(const tf_task* t, tf_output* o, tf_result* r) {
  (void)t;
  (void)o;
  (void)r;
  return TF_OK;
}

#if BAD_KIND == 2
static const tf_kernel kKernels[] = {{"saxpy", "a clash", "n", 10, 0, NULL, run, NULL}};
#elif BAD_KIND == 4
static const tf_kernel kKernels[] = {{"bad name", "spaces", "n", 10, 0, NULL, run, NULL}};
#elif BAD_KIND == 5
static const tf_kernel kKernels[] = {{"bad.empty", "nothing", "n", 10, 0, NULL, NULL, NULL}};
#else
static const tf_kernel kKernels[] = {{"bad.ok", "fine", "n", 10, 0, NULL, run, NULL}};
#endif

#if BAD_KIND != 3
static const tf_plugin kPlugin = {BAD_KIND == 1 ? 99 : TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel),
                                  "bad", "0", 1, kKernels};
TF_PLUGIN_EXPORT const tf_plugin* taskfarm_plugin_v1(void) { return &kPlugin; }
#else
TF_PLUGIN_EXPORT int not_a_plugin(void) { return run(NULL, NULL, NULL); }
#endif
