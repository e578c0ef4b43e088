// The shared shape of every taskfarm executable's main(): CLI11 parsing with one-line errors,
// stop-signal handlers, and exit code 1 with a one-line message for every setup error.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace taskfarm {

// Adds the flags every command has (--log-level).
void add_common_flags(CLI::App& app);

// Parses argv into `app`, installs the stop handlers and calls `body`.
// Returns: body's exit code; 0 for --help; 1 (after printing "PROGRAM: error: ..." on stderr)
// for a bad flag, a SetupError or any other exception escaping body.
int cli_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace taskfarm
