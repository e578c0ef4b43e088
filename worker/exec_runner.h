// Runs one command for an `exec` task: its own process group, stdin from the payload, stdout
// captured (bounded), the tail of stderr kept for the error text, a timeout, cancellation, and
// the whole group killed when the task ends. Thread-safe: each worker slot calls it at once.
//
// Process lifetime, decided once for every path:
// - The command is the group's leader. When the leader exits, whatever is left of its group
//   (background children, grandchildren) gets SIGKILL at once, so a task cannot leave processes
//   behind nor hang the runner by holding stdout open. A command that wants its children to
//   finish waits for them (`wait` in a shell).
// - On timeout, cancel, stop or too much output: SIGTERM (and SIGCONT) to the group, SIGKILL to
//   the group `kill_grace_s` later, or as soon as the leader has exited and nothing of the group
//   holds stdout/stderr open any more.
// - Every kill targets the group while its leader is still unreaped, so the group id cannot
//   have been reused by an unrelated process. Only this child is ever waited for.
// - On return the leader is reaped and the rest of its group has been sent SIGKILL; the kernel
//   may take a few milliseconds more to remove them (their orphans are init's to reap).
// - A process that leaves the group (setsid) is not killed; the runner stops reading the pipes
//   it may hold max(kill_grace_s, 0.5 s) after the leader's exit.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace taskfarm::worker {

struct ExecRequest {
  // The program and its arguments, already expanded by the caller. argv[0] without a '/' is
  // searched in PATH (the one in `env` if given, else the worker's; relative PATH entries are
  // skipped); with a '/' it is used as is, so a relative one is relative to `workdir`.
  std::vector<std::string> argv;
  // Runs /bin/sh -c argv[0]; further elements become $0, $1, ...
  bool shell = false;
  double timeout_s = 0;  // from the start; 0 (or negative): no limit
  // Added to the worker's environment, replacing variables of the same name.
  std::vector<std::pair<std::string, std::string>> env;
  // The command's working directory, created (mode 0700, missing parents too) when missing; the
  // caller removes it. Empty: the worker's own working directory.
  std::string workdir;
  // The program's stdin (a sealed in-memory file, so it can also seek and fstat it); empty:
  // /dev/null. Must stay valid during the call.
  std::string_view stdin_data;
  // Stdout kept up to this many bytes; a command that writes more is killed: kOutputTooLarge.
  uint64_t max_output_bytes = uint64_t{64} << 20;
  size_t stderr_tail_bytes = 4096;  // the last bytes of stderr kept in the result
  double kill_grace_s = 2;          // between SIGTERM and SIGKILL
};

struct ExecResult {
  enum class Status {
    kOk,              // exited with status 0
    kFailed,          // exited with another status, or a signal ended it
    kTimedOut,        // ran past timeout_s; killed
    kCancelled,       // `cancel` became true or the runner was stopped; killed
    kOutputTooLarge,  // wrote more than max_output_bytes to stdout; killed
    kSpawnFailed,     // could not start: not found, not executable, bad argv/env, bad workdir
  };
  Status status = Status::kSpawnFailed;
  int exit_code = -1;       // the leader's exit status when it exited, else -1
  int signal = 0;           // the signal that ended the leader, else 0
  std::string output;       // stdout, at most max_output_bytes
  std::string stderr_tail;  // the last stderr_tail_bytes of stderr
  // Empty for kOk, else one printable line for the report, e.g. "exit status 3: <last stderr
  // line>", "killed by signal 11 (Segmentation fault)", "timed out after 5.0 s", "cancelled",
  // "cannot run 'x': No such file or directory".
  std::string error;
  double wall_s = 0;  // from start to the end of the call

  bool ok() const { return status == Status::kOk; }
};

// Returns: "ok", "failed", "timed_out", "cancelled", "output_too_large" or "spawn_failed".
const char* to_string(ExecResult::Status status);

// Runs commands; one per worker, shared by its slots. stop() ends every run, now and later.
class ExecRunner {
 public:
  // Runs the command and waits for it and its group (see the top of this file). `cancel` (may
  // be null) is read at least every 50 ms while the command runs; once true, the group is killed
  // and the result is kCancelled.
  // Returns: the result; a failure of the command is a status, never an exception.
  // Throws: std::runtime_error for a failure on the worker's side (no pipe, no memory, fork
  // refused for lack of processes); the command's group is killed and reaped first.
  ExecResult run(const ExecRequest& request, const std::atomic<bool>* cancel = nullptr) const;
  // The same with the worker's per-task flag (non-zero: cancelled).
  ExecResult run(const ExecRequest& request, const std::atomic<int>* cancel) const;

  // Every running and later run() ends as kCancelled ("cancelled: the worker is stopping"),
  // within 50 ms; `now` skips the grace (SIGKILL at once). Async-signal-safe.
  void stop(bool now = false) noexcept;
  bool stopping() const noexcept { return stop_.load(std::memory_order_relaxed) != 0; }

 private:
  std::atomic<int> stop_{0};  // 0 running, 1 stop (with the grace), 2 stop now
  static_assert(std::atomic<int>::is_always_lock_free);
};

// Runs one command without a runner to stop it (a fresh ExecRunner's run()).
ExecResult run_exec(const ExecRequest& request, const std::atomic<bool>* cancel = nullptr);

}  // namespace taskfarm::worker
