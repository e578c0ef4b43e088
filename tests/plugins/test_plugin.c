/* A plugin in plain C for the plugin tests: built by the C compiler, loaded by the C++ worker,
 * which is what the C ABI promises. Its kernels:
 *   test.square  CPU: checksum = sum over i < size of (seed + index + i)^2 (mod 2^64)
 *   test.echo    CPU: writes "key=value;" for each sweep parameter, then the payload, as output
 *   test.crash   CPU: crashes the worker (SIGSEGV) on index 0, succeeds otherwise
 *   test.slow    CPU: sleeps `size` ms, checking `cancelled` every millisecond
 *   test.fails   CPU: a permanent failure for odd sizes (validate passes them)
 *   test.gpuonly CUDA only: CPU workers never advertise it
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "taskfarm/plugin.h"

static int square(const tf_task* t, tf_output* out, tf_result* r) {
  (void)out;
  uint64_t sum = 0;
  for (int64_t i = 0; i < t->size; ++i) {
    const uint64_t v = t->seed + t->index + (uint64_t)i;
    sum += v * v;
  }
  r->checksum = sum;
  r->value = (double)t->size;
  r->bytes = 8 * (uint64_t)t->size;
  r->flops = 2 * (uint64_t)t->size;
  return TF_OK;
}

static int validate_square(const tf_task* t, char* error, size_t size) {
  if (t->payload_size != 0) {
    snprintf(error, size, "takes no payload (got %zu bytes)", t->payload_size);
    return TF_FAILED;
  }
  return TF_OK;
}

static int echo(const tf_task* t, tf_output* out, tf_result* r) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the output */
  char buf[256];
  for (size_t i = 0; i < t->n_params; ++i) {
    const int n = snprintf(buf, sizeof buf, "%s=%s;", t->params[i].key, t->params[i].value);
    if (out->write(out->ctx, buf, (size_t)n) != 0) return TF_FAILED;
    for (int k = 0; k < n; ++k) h = (h ^ (unsigned char)buf[k]) * 1099511628211ull;
  }
  if (t->payload_size > 0) {
    if (out->write(out->ctx, t->payload, t->payload_size) != 0) {
      snprintf(r->error, sizeof r->error, "payload does not fit the output limit");
      return TF_FAILED;
    }
    const unsigned char* p = (const unsigned char*)t->payload;
    for (size_t k = 0; k < t->payload_size; ++k) h = (h ^ p[k]) * 1099511628211ull;
  }
  r->checksum = h;
  return TF_OK;
}

static int crash(const tf_task* t, tf_output* out, tf_result* r) {
  (void)out;
  if (t->index == 0) raise(SIGSEGV);
  r->checksum = t->index;
  return TF_OK;
}

static int slow(const tf_task* t, tf_output* out, tf_result* r) {
  (void)out;
  const struct timespec ms = {0, 1000000};
  for (int64_t i = 0; i < t->size; ++i) {
    if (*t->cancelled) {
      snprintf(r->error, sizeof r->error, "cancelled after %lld ms", (long long)i);
      return TF_RETRY;
    }
    nanosleep(&ms, NULL);
  }
  r->checksum = (uint64_t)t->size;
  return TF_OK;
}

static int fails(const tf_task* t, tf_output* out, tf_result* r) {
  (void)out;
  if (t->size % 2 != 0) {
    snprintf(r->error, sizeof r->error, "size %lld is odd\nsecond line", (long long)t->size);
    return TF_FAILED;
  }
  return TF_OK;
}

static int gpuonly(const tf_task* t, tf_cuda* cuda, tf_output* out, tf_result* r) {
  (void)t;
  (void)cuda;
  (void)out;
  r->checksum = 42;
  return TF_OK;
}

static const tf_kernel kKernels[] = {
    {"test.square", "sum of squares", "terms", 1000000000, 0, validate_square, square, NULL},
    {"test.echo", "echoes its parameters and payload", "ignored", 0, 0, NULL, echo, NULL},
    {"test.crash", "crashes on index 0", "ignored", 0, 0, NULL, crash, NULL},
    {"test.slow", "sleeps size ms, cancellable", "milliseconds", 600000, 1, NULL, slow, NULL},
    {"test.fails", "fails for odd sizes", "any", 1000, 0, NULL, fails, NULL},
    {"test.gpuonly", "has only a CUDA side", "ignored", 0, 0, NULL, NULL, gpuonly},
};

static const tf_plugin kPlugin = {TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "test", "1.0",
                                  sizeof kKernels / sizeof kKernels[0], kKernels};

TF_PLUGIN_EXPORT const tf_plugin* taskfarm_plugin_v1(void) { return &kPlugin; }
