/* A plugin for bench/output_throughput.sh: an output source that costs next to nothing, so that
 * what is measured is the output's way from the worker to the sink's results directory.
 *   bench.zeros  CPU: returns `size` zero bytes as the task's output (one write of a static
 *                buffer); checksum = size
 */
#include <stdint.h>

#include "taskfarm/plugin.h"

#define kMaxBytes (16 << 20)
static const unsigned char kZeros[kMaxBytes];

static int zeros(const tf_task* t, tf_output* out, tf_result* r) {
  if (out->write(out->ctx, kZeros, (size_t)t->size) != 0) return TF_FAILED;
  r->checksum = (uint64_t)t->size;
  r->value = (double)t->size;
  r->bytes = (uint64_t)t->size;
  return TF_OK;
}

static const tf_kernel kKernels[] = {
    {"bench.zeros", "returns size zero bytes as output", "output bytes", kMaxBytes, 1, NULL, zeros,
     NULL},
};

static const tf_plugin kPlugin = {TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "bench", "1.0",
                                  sizeof kKernels / sizeof kKernels[0], kKernels};

TF_PLUGIN_EXPORT const tf_plugin* taskfarm_plugin_v1(void) { return &kPlugin; }
