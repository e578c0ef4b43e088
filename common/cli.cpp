#include "common/cli.h"

#include <fmt/core.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cctype>

#include "common/errors.h"
#include "common/log.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "common/text.h"
#include "common/version.h"

namespace taskfarm {
namespace {
std::string g_log_level = "info";
}

std::string version_line(const std::string& program) {
  return fmt::format("{} {} (git {}, protocol {}, CUDA {})", program, kVersion, kGitCommit,
                     kProtocolVersion, kCudaBuilt ? "on" : "off");
}

void add_common_flags(CLI::App& app) {
  app.add_option("--log-level", g_log_level, "debug, info, warn, error or off")
      ->capture_default_str();
  app.set_version_flag("--version", version_line(app.get_name()),
                       "print the version, git commit, protocol version and CUDA support");
}

void add_farm_flag(CLI::App& app, std::string& farm, const std::string& learns) {
  app.add_option("--farm", farm,
                 "this farm's name: messages of another farm are dropped, counted and logged "
                 "(default: " + learns + ")")
      ->envname("TASKFARM_FARM")
      ->check([](const std::string& name) -> std::string {
        if (auto problem = name_problem(name, 64, false)) return "--farm: " + *problem;
        return "";
      });
}

namespace {

// Levenshtein distance, for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

struct KnownFlag {
  std::string name;  // with its dashes
  bool takes_value;
};

void collect(const CLI::App& app, std::vector<KnownFlag>& flags, std::vector<std::string>& commands) {
  for (const CLI::Option* o : app.get_options()) {
    const bool value = o->get_items_expected_max() > 0;
    for (const auto& l : o->get_lnames()) flags.push_back({"--" + l, value});
    for (const auto& s : o->get_snames()) flags.push_back({"-" + s, value});
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(sub->get_name());
    collect(*sub, flags, commands);
  }
}

// Returns: " (did you mean X?)" for the closest candidate, or "".
std::string suggestion(const std::string& given, const std::vector<std::string>& candidates) {
  const std::string* best = nullptr;
  size_t best_distance = 0;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(given, c);
    if (!best || d < best_distance) {
      best = &c;
      best_distance = d;
    }
  }
  // Close enough to be a typo: two edits, or a third of the name for long names.
  if (!best || best_distance > std::max<size_t>(2, given.size() / 3)) return "";
  return fmt::format(" (did you mean {}?)", *best);
}

bool is_number(const std::string& s) {
  return s.size() > 1 && (std::isdigit(static_cast<unsigned char>(s[1])) || s[1] == '.');
}

}  // namespace

std::optional<std::string> unknown_argument(const CLI::App& app, int argc,
                                            const char* const* argv) {
  std::vector<KnownFlag> flags;
  std::vector<std::string> commands;
  collect(app, flags, commands);
  std::vector<std::string> flag_names;
  for (const auto& f : flags) flag_names.push_back(f.name);
  bool command_seen = commands.empty();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-' || is_number(arg)) {
      if (!command_seen) {
        // The first bare word names the subcommand when the program has them.
        if (std::find(commands.begin(), commands.end(), arg) == commands.end()) {
          return fmt::format("unknown command '{}'{}", arg, suggestion(arg, commands));
        }
        command_seen = true;
      }
      continue;
    }
    const std::string name = arg.substr(0, arg.find('='));
    const auto known = std::find_if(flags.begin(), flags.end(),
                                    [&](const KnownFlag& f) { return f.name == name; });
    if (known == flags.end()) {
      return fmt::format("unknown flag {}{}", name, suggestion(name, flag_names));
    }
    if (known->takes_value && name.size() == arg.size()) ++i;  // "--size 10": skip the value
  }
  return std::nullopt;
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
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A typo first: CLI11 checks requirements (--tasks needs --kernel) before unknown flags.
    const auto unknown = unknown_argument(app, argc, argv);
    fmt::print(stderr, "{}: error: {} (see --help)\n", program, unknown ? *unknown : e.what());
    return kExitSetup;
  }
  try {
    log::set_level(log::parse_level(g_log_level));
    install_stop_handlers();
    return body();
  } catch (const SetupError& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
  } catch (const Interrupted& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return kExitInterrupted;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: fatal: {}\n", program, e.what());
  }
  return kExitSetup;
}

}  // namespace taskfarm
