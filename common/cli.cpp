#include "common/cli.h"

#include <fmt/core.h>
#include <google/protobuf/stubs/logging.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/signals.h"

namespace taskfarm {
namespace {
std::string g_log_level = "info";
}

void add_common_flags(CLI::App& app) {
  app.add_option("--log-level", g_log_level, "debug, info, warn, error or off")
      ->capture_default_str();
}

namespace {
// protobuf logs an ERROR for every string field with invalid UTF-8 in a parsed frame: a bad peer
// could flood stderr with them. Those frames are counted by RejectCounter; keep protobuf quiet
// below FATAL except at debug level.
void protobuf_log(google::protobuf::LogLevel level, const char* file, int line,
                  const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL || log::level() <= log::Level::kDebug) {
    log::write(log::Level::kDebug, fmt::format("protobuf {}:{}: {}", file, line, message));
  }
}
}  // namespace

int cli_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const std::string program = app.get_name();
  log::set_program(program);
  google::protobuf::SetLogHandler(&protobuf_log);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    fmt::print(stderr, "{}: error: {} (see --help)\n", program, e.what());
    return kExitSetup;
  }
  try {
    log::set_level(log::parse_level(g_log_level));
    install_stop_handlers();
    return body();
  } catch (const SetupError& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: fatal: {}\n", program, e.what());
  }
  return kExitSetup;
}

}  // namespace taskfarm
