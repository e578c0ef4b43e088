// Error types shared by every part.
#pragma once

#include <stdexcept>
#include <string>

namespace taskfarm {

// A problem with the user's setup (bad flag, bad file, port in use): the process prints the
// one-line message and exits with code 1 before starting anything.
class SetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A stop signal (SIGINT/SIGTERM) ended a blocking wait: the process exits with code 130.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Process exit codes (DESIGN.md).
enum ExitCode : int { kExitOk = 0, kExitSetup = 1, kExitTasksFailed = 2, kExitInterrupted = 130 };

}  // namespace taskfarm
