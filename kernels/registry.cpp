// The built-in kernels, registered through the plugin interface like any plugin's (a row in
// kKernels, its CPU implementation in cpu_kernels.cpp and its CUDA one in kernels/cuda/), and
// the catalog that holds them and the plugins' kernels.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <new>
#include <utility>

#include "common/errors.h"
#include "common/text.h"
#include "kernels/cpu_kernels.h"
#include "kernels/kernel.h"

namespace taskfarm::kernels {
namespace {

// How a kernel's inline payload is laid out; validate() checks its length only.
struct PayloadFormat {
  enum Shape {
    kNone,        // rejected
    kAnyBytes,    // any length, never read
    kVector,      // header_bytes + element_bytes * n; size is 0 or n
    kSquarePair,  // element_bytes * N * N; size N is required
  };
  Shape shape = kNone;
  std::string_view layout;  // for messages
  uint64_t header_bytes = 0;
  uint64_t element_bytes = 0;
};

// A built-in's row: what the plugin interface carries, and its native CPU implementation.
struct BuiltinDef {
  std::string_view name;
  std::string_view size_meaning;
  int64_t max_size;
  bool accepts_payload;
  CpuKernelFn cpu;
  std::string_view description;
};

struct KernelSpec {
  BuiltinDef def;
  PayloadFormat payload;
  bool banded = false;          // task `index` of `count` computes one band of the output
  bool job_needs_size = true;   // a job entry without a size (or payload) is an error
};

constexpr int64_t kPow2(int bits) { return int64_t{1} << bits; }
// Above this many bands band_begin's size * index could overflow.
constexpr uint64_t kMaxBands = uint64_t{1} << 32;

constexpr PayloadFormat kNoPayload{};
constexpr PayloadFormat kAnyPayload{PayloadFormat::kAnyBytes, "any bytes", 0, 0};

// The order here is the order of names() and --help.
const KernelSpec kKernels[] = {
    {{"noop", "ignored", kPow2(40), true, cpu::noop, "does nothing: measures the farm itself"},
     kAnyPayload,
     /*banded=*/false,
     /*job_needs_size=*/false},
    {{"sleep", "microseconds", 60'000'000, false, cpu::sleep, "sleeps for `size` microseconds"},
     kNoPayload},
    {{"saxpy", "elements n", kPow2(28), true, cpu::saxpy, "y = a*x + y on n floats"},
     {PayloadFormat::kVector, "[float a][n floats x][n floats y]", 4, 8}},
    {{"sgemm", "matrix dimension N (N x N)", 16384, true, cpu::sgemm,
      "C = A*B on N x N floats (cuBLAS on GPUs)"},
     {PayloadFormat::kSquarePair, "[N*N floats A][N*N floats B]", 0, 8}},
    {{"reduce", "elements n", kPow2(28), true, cpu::reduce, "sum of n floats"},
     {PayloadFormat::kVector, "[n floats]", 0, 4}},
    {{"mandelbrot", "image width = height in pixels", 32768, false, cpu::mandelbrot,
      "one band of rows of a Mandelbrot image"},
     kNoPayload,
     /*banded=*/true},
    {{"montecarlo_pi", "samples n", kPow2(34), false, cpu::montecarlo_pi,
      "estimates pi from n random points"},
     kNoPayload},
    {{"sort", "keys n (uint32)", kPow2(28), true, cpu::sort, "radix sort of n uint32 keys"},
     {PayloadFormat::kVector, "[n uint32 keys]", 0, 4}},
};

std::optional<std::string> check_payload(const KernelSpec& spec, const TaskInput& in) {
  const std::string_view name = spec.def.name;
  const PayloadFormat& format = spec.payload;
  const uint64_t length = in.payload.size();
  if (length == 0) return std::nullopt;  // generated from (seed, index)
  switch (format.shape) {
    case PayloadFormat::kNone:
      return fmt::format("{}: takes no payload (got {} bytes)", name, length);
    case PayloadFormat::kAnyBytes:
      return std::nullopt;
    case PayloadFormat::kVector: {
      if (length < format.header_bytes || (length - format.header_bytes) % format.element_bytes) {
        return fmt::format("{}: payload of {} bytes is not {} ({} + {}n bytes)", name, length,
                           format.layout, format.header_bytes, format.element_bytes);
      }
      const uint64_t n = (length - format.header_bytes) / format.element_bytes;
      if (n > static_cast<uint64_t>(spec.def.max_size)) {
        return fmt::format("{}: payload holds {} elements, above the maximum {}", name, n,
                           spec.def.max_size);
      }
      if (in.size != 0 && static_cast<uint64_t>(in.size) != n) {
        return fmt::format("{}: size {} does not match the payload's {} elements (give 0 or {})",
                           name, in.size, n, n);
      }
      return std::nullopt;
    }
    case PayloadFormat::kSquarePair: {
      if (in.size == 0) {
        return fmt::format("{}: a payload of {} bytes needs size N (got size 0)", name, length);
      }
      // size <= max_size was checked first, so this cannot overflow.
      const uint64_t expected = format.element_bytes * static_cast<uint64_t>(in.size) *
                                static_cast<uint64_t>(in.size);
      if (length != expected) {
        return fmt::format("{}: payload of {} bytes does not match size {}: {} is {} bytes", name,
                           length, in.size, format.layout, expected);
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// The checks of a built-in kernel beyond its size range: payload layout, bands.
std::optional<std::string> check_builtin(const KernelSpec& spec, const TaskInput& in) {
  if (auto why = check_payload(spec, in)) return why;
  if (spec.banded) {
    if (in.count == 0 || in.count > kMaxBands) {
      return fmt::format("{}: band count {} is not in 1..{}", spec.def.name, in.count, kMaxBands);
    }
    if (in.index >= in.count) {
      return fmt::format("{}: band index {} is not below the band count {}", spec.def.name,
                         in.index, in.count);
    }
  }
  return std::nullopt;
}

}  // namespace

TaskInput task_input_of(const tf_task& t) {
  TaskInput in;
  in.size = t.size;
  in.seed = t.seed;
  in.index = t.index;
  in.count = t.count;
  if (t.payload != nullptr) in.payload = {static_cast<const char*>(t.payload), t.payload_size};
  in.job_id = t.job_id;
  in.task_id = t.task_id;
  in.attempt = t.attempt;
  in.keep_output = t.keep_output != 0;
  in.cancelled = reinterpret_cast<const std::atomic<int>*>(const_cast<const int*>(t.cancelled));
  return in;
}

namespace {

void set_error(char* error, size_t size, std::string_view why) {
  if (size == 0) return;
  const size_t n = std::min(size - 1, why.size());
  std::memcpy(error, why.data(), n);
  error[n] = '\0';
}

// The built-in kernels through the plugin interface, like any plugin's.
template <size_t I>
int builtin_validate(const tf_task* task, char* error, size_t error_size) {
  if (auto why = check_builtin(kKernels[I], task_input_of(*task))) {
    set_error(error, error_size, *why);
    return TF_FAILED;
  }
  return TF_OK;
}

template <size_t I>
int builtin_run_cpu(const tf_task* task, tf_output* output, tf_result* result) {
  TaskInput in = task_input_of(*task);
  std::string bytes;
  if (in.keep_output) in.output = &bytes;
  try {
    const KernelOutput out = kKernels[I].def.cpu(in);
    if (!bytes.empty() && output->write(output->ctx, bytes.data(), bytes.size()) != 0) {
      set_error(result->error, sizeof result->error, "output too large");
      return TF_FAILED;
    }
    result->checksum = out.checksum;
    result->value = out.value;
    result->bytes = out.bytes;
    result->flops = out.flops;
    return TF_OK;
  } catch (const KernelError& e) {
    set_error(result->error, sizeof result->error, e.what());
    return e.retryable() ? TF_RETRY : TF_FAILED;
  } catch (const std::bad_alloc&) {
    set_error(result->error, sizeof result->error, "out of memory");
    return TF_RETRY;
  }
}

template <size_t... I>
std::array<tf_kernel, sizeof...(I)> builtin_table(std::index_sequence<I...>) {
  return {tf_kernel{kKernels[I].def.name.data(), kKernels[I].def.description.data(),
                    kKernels[I].def.size_meaning.data(), kKernels[I].def.max_size, 0,
                    &builtin_validate<I>, &builtin_run_cpu<I>, nullptr}...};
}

const tf_plugin& builtin_plugin() {
  static const auto table = builtin_table(std::make_index_sequence<std::size(kKernels)>());
  static const tf_plugin plugin{TF_PLUGIN_ABI_VERSION, sizeof(tf_kernel), "builtin",
                                "1", table.size(), table.data()};
  return plugin;
}

// Kernel names: what a job file, a log line and a file name can all carry safely.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string_view text_or_empty(const char* s) { return s ? std::string_view(s) : std::string_view(); }

}  // namespace

const KernelCatalog& KernelCatalog::builtins() {
  static const KernelCatalog catalog = [] {
    KernelCatalog c;
    c.add_plugin(builtin_plugin(), "builtin");
    // Their native CPU implementations and payload rules (the plugin interface has no room for
    // the fast path and the layout table).
    for (const KernelSpec& spec : kKernels) {
      KernelDef& def = c.defs_[static_cast<size_t>(&spec - kKernels)];
      def.cpu = spec.def.cpu;
      def.accepts_payload = spec.def.accepts_payload;
      def.outputs = spec.banded;  // mandelbrot's band, with keep_output
      def.job_needs_size = spec.job_needs_size;
    }
    return c;
  }();
  return catalog;
}

void KernelCatalog::add_plugin(const tf_plugin& plugin, const std::string& where) {
  const std::string label = printable(where, 200);
  if (plugin.abi_version != TF_PLUGIN_ABI_VERSION) {
    throw SetupError(fmt::format("plugin {}: ABI version {}, this worker speaks version {}",
                                 label, plugin.abi_version, TF_PLUGIN_ABI_VERSION));
  }
  if (plugin.kernel_size < sizeof(tf_kernel) || plugin.kernel_size > 4096) {
    throw SetupError(fmt::format("plugin {}: kernel table entries of {} bytes (expected {})",
                                 label, plugin.kernel_size, sizeof(tf_kernel)));
  }
  if (plugin.n_kernels == 0 || plugin.n_kernels > 1024 || plugin.kernels == nullptr) {
    throw SetupError(fmt::format("plugin {}: {} kernels", label, plugin.n_kernels));
  }
  const std::string_view plugin_name =
      plugin.name && valid_name(plugin.name) ? std::string_view(plugin.name) : std::string_view(where);
  std::vector<KernelDef> added;
  const auto* base = reinterpret_cast<const char*>(plugin.kernels);
  for (size_t i = 0; i < plugin.n_kernels; ++i) {
    // Entries are kernel_size bytes apart: a newer plugin's longer entries start with ours.
    tf_kernel k;
    std::memcpy(&k, base + i * plugin.kernel_size, sizeof k);
    const std::string_view name = text_or_empty(k.name);
    if (!valid_name(name)) {
      throw SetupError(fmt::format("plugin {}: kernel {} has a bad name '{}' (1-64 of A-Z a-z "
                                   "0-9 _ . -)",
                                   label, i + 1, printable(name)));
    }
    if (find(name) != nullptr || std::any_of(added.begin(), added.end(),
                                             [&](const KernelDef& d) { return d.name == name; })) {
      const KernelDef* other = find(name);
      throw SetupError(fmt::format("plugin {}: kernel '{}' is already defined{}", label, name,
                                   other ? fmt::format(" by {}", other->plugin) : std::string()));
    }
    if (k.run_cpu == nullptr && k.run_cuda == nullptr) {
      throw SetupError(fmt::format("plugin {}: kernel '{}' has neither a CPU nor a CUDA "
                                   "implementation", label, name));
    }
    if (k.max_size < 0) {
      throw SetupError(fmt::format("plugin {}: kernel '{}' has a negative max_size", label, name));
    }
    KernelDef def;
    def.name = name;
    def.size_meaning = text_or_empty(k.size_meaning);
    def.description = text_or_empty(k.description);
    def.max_size = k.max_size;
    def.size_required = k.size_required != 0;
    def.plugin = plugin_name;
    def.outputs = true;  // plugins write what they like through tf_output
    def.abi = k;
    added.push_back(def);
  }
  defs_.insert(defs_.end(), added.begin(), added.end());
}

void KernelCatalog::attach_builtin_cuda(const tf_plugin& plugin) {
  if (plugin.abi_version != TF_PLUGIN_ABI_VERSION || plugin.kernel_size < sizeof(tf_kernel)) {
    throw SetupError("the GPU plugin's kernel table has another ABI version");
  }
  const auto* base = reinterpret_cast<const char*>(plugin.kernels);
  for (size_t i = 0; i < plugin.n_kernels; ++i) {
    tf_kernel k;
    std::memcpy(&k, base + i * plugin.kernel_size, sizeof k);
    for (KernelDef& def : defs_) {
      if (def.name == text_or_empty(k.name) && def.plugin == "builtin") {
        def.cuda_builtin = true;
        def.abi.run_cuda = k.run_cuda;
      }
    }
  }
}

void KernelCatalog::add_native(KernelDef def) {
  if (const KernelDef* other = find(def.name)) {
    throw SetupError(fmt::format("kernel '{}' is already defined by {}", def.name, other->plugin));
  }
  defs_.push_back(std::move(def));
}

const KernelDef* KernelCatalog::find(std::string_view name) const {
  for (const KernelDef& def : defs_) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

std::string KernelCatalog::names() const {
  std::string out;
  for (const KernelDef& def : defs_) {
    if (!out.empty()) out += ", ";
    out += def.name;
  }
  return out;
}

std::optional<std::string> KernelCatalog::validate(std::string_view kernel,
                                                   const TaskInput& in) const {
  const KernelDef* def = find(kernel);
  if (def == nullptr) {
    return fmt::format("unknown kernel '{}' (known: {})", printable(kernel, 64), names());
  }
  if (in.size < 0) return fmt::format("{}: negative size {}", def->name, in.size);
  if (in.size > def->max_size) {
    return fmt::format("{}: size {} exceeds the maximum {} ({})", def->name, in.size,
                       def->max_size, def->size_meaning);
  }
  if (def->size_required && in.size == 0) {
    return fmt::format("{}: needs a size ({})", def->name, def->size_meaning);
  }
  if (def->abi.validate != nullptr) {
    const PluginTask task(def->name, in);
    char error[512];
    error[0] = '\0';
    if (def->abi.validate(task.get(), error, sizeof error) != TF_OK) {
      error[sizeof error - 1] = '\0';
      const std::string_view why(error);
      // A plugin's reason is quoted as text from outside: one printable line.
      return why.rfind(def->name, 0) == 0 && def->plugin == "builtin"
                 ? std::string(why)
                 : fmt::format("{}: {}", def->name, printable(why.empty() ? "invalid task" : why, 400));
    }
  }
  return std::nullopt;
}

KernelOutput KernelCatalog::run_cpu(std::string_view kernel, const TaskInput& in) const {
  if (auto why = validate(kernel, in)) throw KernelError(*why);
  const KernelDef& def = *find(kernel);
  try {
    if (def.cpu) return def.cpu(in);
    if (def.native) return def.native(in);
    if (def.abi.run_cpu) {
      const PluginTask task(def.name, in);
      PluginOutput output(in);
      tf_result result{};
      const int rc = def.abi.run_cpu(task.get(), output.get(), &result);
      return plugin_outcome(def.name, rc, result, output, in.max_output_bytes);
    }
  } catch (const std::bad_alloc&) {
    // Another worker, or this one later, may have the memory.
    throw KernelError(fmt::format("{}: out of memory for size {}", def.name, in.size),
                      /*retryable=*/true);
  }
  throw KernelError(fmt::format("{}: no CPU implementation (it runs on GPU workers)", def.name));
}

// ------------------------------------------------------------------ plugin interface glue

PluginTask::PluginTask(std::string_view kernel, const TaskInput& in) {
  // `kernel` is a catalog name: NUL-terminated storage (a literal or the plugin's own string).
  task_.kernel = kernel.data();
  task_.job_id = in.job_id;
  task_.task_id = in.task_id;
  task_.index = in.index;
  task_.count = in.count;
  task_.size = in.size;
  task_.seed = in.seed;
  task_.attempt = in.attempt;
  task_.keep_output = in.keep_output ? 1 : 0;
  task_.payload = in.payload.empty() ? nullptr : in.payload.data();
  task_.payload_size = in.payload.size();
  if (in.params != nullptr && !in.params->empty()) {
    params_.reserve(in.params->size());
    for (const auto& [k, v] : *in.params) params_.push_back(tf_param{k.c_str(), v.c_str()});
    task_.params = params_.data();
    task_.n_params = params_.size();
  }
  // The C interface reads the flag through a volatile int: std::atomic<int> is a lock-free int.
  static_assert(std::atomic<int>::is_always_lock_free && sizeof(std::atomic<int>) == sizeof(int));
  static const std::atomic<int> kNever{0};
  task_.cancelled = reinterpret_cast<const volatile int*>(in.cancelled ? in.cancelled : &kNever);
}

PluginOutput::PluginOutput(const TaskInput& in) : target_(in.output), limit_(in.max_output_bytes) {
  out_.ctx = this;
  out_.write = &PluginOutput::write;
}

int PluginOutput::write(void* ctx, const void* data, size_t size) {
  auto* self = static_cast<PluginOutput*>(ctx);
  if (self->overflowed_) return -1;
  if (self->target_ == nullptr) return 0;  // the caller keeps no output
  if (size > self->limit_ - std::min<uint64_t>(self->limit_, self->target_->size())) {
    self->overflowed_ = true;
    return -1;
  }
  try {
    self->target_->append(static_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    self->overflowed_ = true;
    return -1;
  }
  return 0;
}

KernelOutput plugin_outcome(std::string_view kernel, int rc, const tf_result& result,
                            const PluginOutput& output, uint64_t max_output_bytes) {
  if (output.overflowed()) {
    throw KernelError(fmt::format("{}: output larger than {} MiB (--max-output-mb)", kernel,
                                  max_output_bytes >> 20));
  }
  if (rc != TF_OK) {
    std::string_view why(result.error, strnlen(result.error, sizeof result.error));
    if (why.empty()) why = rc == TF_RETRY ? "failed (retryable)" : "failed";
    throw KernelError(fmt::format("{}: {}", kernel, printable(why, 500)), rc == TF_RETRY);
  }
  return KernelOutput{result.checksum, result.value, result.bytes, result.flops};
}

}  // namespace taskfarm::kernels
