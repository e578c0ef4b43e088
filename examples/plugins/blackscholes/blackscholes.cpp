// A taskfarm kernel plugin: Black-Scholes prices of European options, on the CPU here and on a
// GPU in blackscholes.cu. One kernel, `blackscholes`:
//   input   a payload of option records (blackscholes.h: Option, 40 bytes each), or `size`
//           options generated from (seed, task index)
//   output  a call and a put price per option, in input order (Price, 16 bytes each)
//   result  checksum: FNV-1a of the output bytes; value: the sum of all call and put prices
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "blackscholes.h"

namespace blackscholes {
namespace {

int fail(tf_result* result, int code, const char* why) {
  std::snprintf(result->error, sizeof result->error, "%s", why);
  return code;
}

// Cheap checks before the task runs: lengths and sizes only, no allocation.
int validate(const tf_task* task, char* error, size_t error_size) {
  if (task->payload_size != 0) {
    if (task->payload_size % sizeof(Option) != 0) {
      std::snprintf(error, error_size,
                    "payload of %zu bytes is not a whole number of %zu-byte option records "
                    "(spot, strike, years, rate, vol as doubles)",
                    task->payload_size, sizeof(Option));
      return TF_FAILED;
    }
    const size_t n = task->payload_size / sizeof(Option);
    if (n > static_cast<size_t>(kMaxOptions)) {
      std::snprintf(error, error_size, "payload holds %zu options, above the maximum %" PRId64,
                    n, kMaxOptions);
      return TF_FAILED;
    }
    if (task->size != 0 && static_cast<uint64_t>(task->size) != n) {
      std::snprintf(error, error_size,
                    "size %" PRId64 " does not match the payload's %zu options (give 0 or %zu)",
                    task->size, n, n);
      return TF_FAILED;
    }
    return TF_OK;
  }
  if (task->size <= 0 || task->size > kMaxOptions) {
    std::snprintf(error, error_size,
                  "needs a size (options to generate, 1..%" PRId64 ") or a payload of option "
                  "records",
                  kMaxOptions);
    return TF_FAILED;
  }
  return TF_OK;
}

int run_cpu(const tf_task* task, tf_output* output, tf_result* result) {
  if (check_options(*task, result) != TF_OK) return TF_FAILED;
  const size_t n = option_count(*task);
  std::vector<Price> prices;
  try {
    prices.resize(n);
  } catch (const std::bad_alloc&) {
    return fail(result, TF_RETRY, "out of memory for the prices");  // another worker may have it
  }
  const auto* records = static_cast<const unsigned char*>(task->payload);
  for (size_t i = 0; i < n; ++i) {
    if (i % 65536 == 0 && *task->cancelled) return fail(result, TF_RETRY, "cancelled");
    Option o;
    if (records != nullptr) {
      std::memcpy(&o, records + i * sizeof(Option), sizeof o);  // the payload is not aligned
    } else {
      o = generate(task->seed, task->index, i);
    }
    prices[i] = price(o);
  }
  return finish(*task, prices.data(), n, output, result);
}

const tf_kernel kKernels[] = {{
    "blackscholes",
    "European call and put prices, Black-Scholes closed form in double precision",
    "options",
    kMaxOptions,
    0,  // size 0 is fine with a payload; validate() asks for one or the other
    validate,
    run_cpu,
#if defined(TASKFARM_PLUGIN_CUDA) && TASKFARM_PLUGIN_CUDA
    run_cuda,
#else
    nullptr,  // built without CUDA: GPU workers run run_cpu
#endif
}};

const tf_plugin kPlugin = {TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "blackscholes", "1.0",
                           sizeof kKernels / sizeof kKernels[0], kKernels};

}  // namespace

size_t option_count(const tf_task& task) {
  return task.payload_size != 0 ? task.payload_size / sizeof(Option)
                                : static_cast<size_t>(task.size);
}

int check_options(const tf_task& task, tf_result* result) {
  const auto* records = static_cast<const unsigned char*>(task.payload);
  for (size_t i = 0; records != nullptr && i < option_count(task); ++i) {
    Option o;
    std::memcpy(&o, records + i * sizeof(Option), sizeof o);
    const bool ok = std::isfinite(o.spot) && o.spot > 0 && std::isfinite(o.strike) &&
                    o.strike > 0 && std::isfinite(o.years) && o.years > 0 &&
                    std::isfinite(o.rate) && std::isfinite(o.vol) && o.vol > 0;
    if (!ok) {
      std::snprintf(result->error, sizeof result->error,
                    "option %zu: spot %g, strike %g, years %g, rate %g, vol %g (spot, strike, "
                    "years and vol must be positive, all finite)",
                    i, o.spot, o.strike, o.years, o.rate, o.vol);
      return TF_FAILED;
    }
  }
  return TF_OK;
}

int finish(const tf_task& task, const Price* prices, size_t n, tf_output* output,
           tf_result* result) {
  const size_t bytes = n * sizeof(Price);
  if (output->write(output->ctx, prices, bytes) != 0) {
    return fail(result, TF_FAILED, "the prices are larger than the worker's --max-output-mb");
  }
  uint64_t fnv = 1469598103934665603ull;  // FNV-1a 64 of the output bytes
  const auto* p = reinterpret_cast<const unsigned char*>(prices);
  for (size_t k = 0; k < bytes; ++k) fnv = (fnv ^ p[k]) * 1099511628211ull;
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prices[i].call + prices[i].put;
  result->checksum = fnv;
  result->value = total;
  result->bytes = bytes + task.payload_size;  // prices written, option records read
  result->flops = kFlopsPerOption * n;
  return TF_OK;
}

}  // namespace blackscholes

TF_PLUGIN_EXPORT const tf_plugin* taskfarm_plugin_v1(void) { return &blackscholes::kPlugin; }
