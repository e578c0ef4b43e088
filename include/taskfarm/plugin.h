/* taskfarm kernel plugins: the public interface, ABI version 1.
 *
 * A plugin is a shared library that exports one C function,
 *
 *     TF_PLUGIN_EXPORT const tf_plugin* taskfarm_plugin_v1(void);
 *
 * returning a static table of kernels. `taskfarm-worker --plugin libmine.so` (repeatable) or
 * `--plugin-dir DIR` loads it at start-up; the worker then advertises its kernels, and the
 * ventilator sends their tasks only to workers that have them. A kernel has a CPU
 * implementation, a CUDA one, or both; a GPU worker uses the CUDA one, a CPU worker the other.
 *
 * Everything here is plain C (C99 or C++), so a plugin built with another compiler loads into
 * any worker of the same ABI version. Structures only ever grow at their end; a plugin states
 * the size of tf_kernel it was built with, and the worker refuses a plugin of another ABI
 * version, one without the entry symbol, and kernel names it already has.
 *
 * Build one with CMake:
 *     find_package(taskfarm REQUIRED)
 *     taskfarm_add_plugin(mine SOURCES mine.cpp mine.cu CUDA)
 * (examples/plugins/ has a complete one: Black-Scholes option pricing on the CPU and a GPU).
 */
#ifndef TASKFARM_PLUGIN_H
#define TASKFARM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TF_PLUGIN_ABI_VERSION 1
#define TF_PLUGIN_ENTRY_SYMBOL "taskfarm_plugin_v1"

#ifdef __cplusplus
#define TF_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define TF_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Return codes of validate and run functions. */
enum {
  TF_OK = 0,     /* the task succeeded (or, for validate, is valid) */
  TF_FAILED = 1, /* a permanent failure: bad input; the task is not tried again */
  TF_RETRY = 2   /* a failure another attempt may fix (out of memory, device error) */
};

/* One value of a parameter-sweep point, both as text: numbers as JSON writes them ("0.5",
 * "12"), strings as they are, booleans "true"/"false". */
typedef struct tf_param {
  const char* key;
  const char* value;
} tf_param;

/* A task, as the kernel sees it. Every pointer is valid during the call only. */
typedef struct tf_task {
  const char* kernel;       /* this kernel's name */
  uint64_t job_id;
  uint64_t task_id;         /* 0 .. total-1 within the job */
  uint64_t index;           /* index within its job entry: with `seed`, the input's key */
  uint64_t count;           /* tasks in its job entry */
  int64_t size;             /* the kernel's size (see tf_kernel.size_meaning) */
  uint64_t seed;
  uint32_t attempt;         /* 1 for the first try */
  int keep_output;          /* the job asked for outputs ("keep_output": true) */
  const void* payload;      /* the entry's inline input bytes, or NULL */
  size_t payload_size;
  const tf_param* params;   /* the task's sweep point, or NULL */
  size_t n_params;
  /* Becomes nonzero when the task is cancelled (job cancelled, worker stopping): a long
   * kernel should check it now and then and return TF_RETRY soon after. */
  const volatile int* cancelled;
} tf_task;

/* Where a task writes the bytes it returns to the user (the sink stores them in
 * results/<job id>/outputs/<task id>). */
typedef struct tf_output {
  void* ctx;
  /* Appends `size` bytes. Returns 0, or -1 once the output would pass the worker's
   * --max-output-mb (the task then fails with that reason whatever the kernel returns). */
  int (*write)(void* ctx, const void* data, size_t size);
} tf_output;

/* What a task reports. The worker zeroes it before the call. */
typedef struct tf_result {
  uint64_t checksum; /* a digest of the task's result; the report's result_digest sums them */
  double value;      /* a number that summarises the result (shown in the outputs index) */
  uint64_t bytes;    /* bytes the task read and wrote: the report's MB/s */
  uint64_t flops;    /* floating-point operations: the report's GFLOP/s */
  char error[512];   /* why, when the run returns TF_FAILED or TF_RETRY (one line) */
} tf_result;

/* The GPU a CUDA implementation runs on. Its device is current on the calling thread. */
typedef struct tf_cuda {
  int device;                /* CUDA device number */
  void* stream;              /* a cudaStream_t: enqueue all work on it; the worker synchronises
                                it after the call returns and before it reads anything back */
  /* Device memory from the worker's stream-ordered pool, valid until the task ends (it is
   * freed in stream order then). NULL when the device is out of memory: return TF_RETRY. */
  void* (*alloc)(struct tf_cuda* cuda, size_t bytes);
  const void* payload_device; /* the task's payload copied to the device, or NULL */
  void* impl;                 /* the worker's; do not touch */
} tf_cuda;

typedef struct tf_kernel {
  const char* name;          /* [A-Za-z0-9_.-], 1..64 characters, unique in the farm */
  const char* description;   /* one line for listings */
  const char* size_meaning;  /* what `size` counts: "options", "bodies", ... */
  int64_t max_size;          /* larger sizes are rejected before the task runs */
  int size_required;         /* nonzero: size 0 is an error */
  /* Checks a task before it runs. Returns TF_OK, or TF_FAILED with a one-line reason in
   * `error`. Must be cheap: no allocation, nothing beyond the payload's length. May be NULL. */
  int (*validate)(const tf_task* task, char* error, size_t error_size);
  /* The CPU implementation, or NULL. Several tasks run at once on different threads. */
  int (*run_cpu)(const tf_task* task, tf_output* output, tf_result* result);
  /* The CUDA implementation, or NULL. One call per task on one of the worker's streams. */
  int (*run_cuda)(const tf_task* task, tf_cuda* cuda, tf_output* output, tf_result* result);
} tf_kernel;

typedef struct tf_plugin {
  uint32_t abi_version;     /* TF_PLUGIN_ABI_VERSION */
  uint32_t kernel_size;     /* sizeof(tf_kernel) as the plugin was built */
  const char* name;         /* the plugin's name, for logs and errors */
  const char* version;
  size_t n_kernels;
  const tf_kernel* kernels;
} tf_plugin;

typedef const tf_plugin* (*tf_plugin_entry)(void);

#ifdef __cplusplus
}
#endif

#endif /* TASKFARM_PLUGIN_H */
