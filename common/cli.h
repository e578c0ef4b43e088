// The shared shape of every taskfarm executable's main(): CLI11 parsing with one-line errors,
// stop-signal handlers, and exit code 1 with a one-line message for every setup error.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace taskfarm {

// Adds the flags every command has (--log-level, --version).
void add_common_flags(CLI::App& app);

// Adds --farm NAME (environment TASKFARM_FARM) to a program of a farm; `learns` says where a
// program without it takes its farm from. The name is checked (printable, at most 64 bytes).
void add_farm_flag(CLI::App& app, std::string& farm, const std::string& learns);

// Returns: "PROGRAM 0.1.0 (git 5f521d6, protocol 1, CUDA on)": what --version prints.
std::string version_line(const std::string& program);

// Returns: the first argument in argv[1..argc) that names no flag of `app` or its subcommands,
// as one line ("unknown flag --kernal (did you mean --kernel?)"), or nullopt when every flag is
// known. Values of flags are skipped; arguments after "--" are not flags.
std::optional<std::string> unknown_argument(const CLI::App& app, int argc, const char* const* argv);

// Parses argv into `app`, installs the stop handlers and calls `body`.
// Returns: body's exit code; 0 for --help and --version; 1 (after printing "PROGRAM: error: ..."
// on stderr) for a bad flag (unknown flags are named before any other problem), a SetupError or
// any other exception escaping body; 130 when body throws Interrupted.
int cli_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace taskfarm
