#include "common/log.h"

#include <unistd.h>

#include "common/errors.h"

namespace taskfarm::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::string g_program = "taskfarm";  // set once at start-up, before threads exist
}  // namespace

void set_program(std::string name) { g_program = std::move(name); }
void set_level(Level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

Level parse_level(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  throw SetupError(fmt::format("unknown log level '{}' (debug, info, warn, error, off)", name));
}

void write(Level l, std::string_view message) {
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error", ""};
  std::string line = fmt::format("{} {}: {}\n", g_program, kNames[static_cast<int>(l)], message);
  // One write(2) per line so lines from several threads never interleave.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace taskfarm::log
