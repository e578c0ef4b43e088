// The table of kernels. Adding a kernel means one row in kKernels plus its implementation.
#include <fmt/format.h>

#include <new>

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

struct KernelSpec {
  KernelDef def;
  PayloadFormat payload;
  bool banded = false;  // task `index` of `count` computes one band of the output
};

constexpr int64_t kPow2(int bits) { return int64_t{1} << bits; }
// Above this many bands band_begin's size * index could overflow.
constexpr uint64_t kMaxBands = uint64_t{1} << 32;

constexpr PayloadFormat kNoPayload{};
constexpr PayloadFormat kAnyPayload{PayloadFormat::kAnyBytes, "any bytes", 0, 0};

// The order here is the order of names() and --help.
const KernelSpec kKernels[] = {
    {{"noop", "ignored", kPow2(40), true, cpu::noop}, kAnyPayload},
    {{"sleep", "microseconds", 60'000'000, false, cpu::sleep}, kNoPayload},
    {{"saxpy", "elements n", kPow2(28), true, cpu::saxpy},
     {PayloadFormat::kVector, "[float a][n floats x][n floats y]", 4, 8}},
    {{"sgemm", "matrix dimension N (N x N)", 16384, true, cpu::sgemm},
     {PayloadFormat::kSquarePair, "[N*N floats A][N*N floats B]", 0, 8}},
    {{"reduce", "elements n", kPow2(28), true, cpu::reduce},
     {PayloadFormat::kVector, "[n floats]", 0, 4}},
    {{"mandelbrot", "image width = height in pixels", 32768, false, cpu::mandelbrot},
     kNoPayload,
     /*banded=*/true},
    {{"montecarlo_pi", "samples n", kPow2(34), false, cpu::montecarlo_pi}, kNoPayload},
    {{"sort", "keys n (uint32)", kPow2(28), true, cpu::sort},
     {PayloadFormat::kVector, "[n uint32 keys]", 0, 4}},
};

const KernelSpec* find_spec(std::string_view name) {
  for (const KernelSpec& spec : kKernels) {
    if (spec.def.name == name) return &spec;
  }
  return nullptr;
}

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

}  // namespace

const KernelRegistry& KernelRegistry::instance() {
  static const KernelRegistry registry;
  return registry;
}

KernelRegistry::KernelRegistry() {
  for (const KernelSpec& spec : kKernels) defs_.push_back(spec.def);
}

const KernelDef* KernelRegistry::find(std::string_view name) const {
  for (const KernelDef& def : defs_) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

std::string KernelRegistry::names() const {
  std::string out;
  for (const KernelDef& def : defs_) {
    if (!out.empty()) out += ", ";
    out += def.name;
  }
  return out;
}

std::optional<std::string> KernelRegistry::validate(std::string_view kernel,
                                                    const TaskInput& in) const {
  const KernelSpec* spec = find_spec(kernel);
  if (spec == nullptr) {
    return fmt::format("unknown kernel '{}' (known: {})", printable(kernel, 64), names());
  }
  const KernelDef& def = spec->def;
  if (in.size < 0) return fmt::format("{}: negative size {}", def.name, in.size);
  if (in.size > def.max_size) {
    return fmt::format("{}: size {} exceeds the maximum {} ({})", def.name, in.size, def.max_size,
                       def.size_meaning);
  }
  if (auto why = check_payload(*spec, in)) return why;
  if (spec->banded) {
    if (in.count == 0 || in.count > kMaxBands) {
      return fmt::format("{}: band count {} is not in 1..{}", def.name, in.count, kMaxBands);
    }
    if (in.index >= in.count) {
      return fmt::format("{}: band index {} is not below the band count {}", def.name, in.index,
                         in.count);
    }
  }
  return std::nullopt;
}

KernelOutput KernelRegistry::run_cpu(std::string_view kernel, const TaskInput& in) const {
  if (auto why = validate(kernel, in)) throw KernelError(*why);
  const KernelDef& def = *find(kernel);
  try {
    return def.cpu(in);
  } catch (const std::bad_alloc&) {
    // Another worker, or this one later, may have the memory.
    throw KernelError(fmt::format("{}: out of memory for size {}", def.name, in.size),
                      /*retryable=*/true);
  }
}

}  // namespace taskfarm::kernels
