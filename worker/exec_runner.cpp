#include "worker/exec_runner.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "common/text.h"

extern char** environ;

namespace taskfarm::worker {
namespace {

using Clock = std::chrono::steady_clock;
using Duration = Clock::duration;

constexpr auto kCancelPoll = std::chrono::milliseconds(50);  // the promise made in the header
constexpr auto kExitPoll = std::chrono::milliseconds(10);    // only without a pidfd
constexpr auto kMinDrain = std::chrono::milliseconds(500);
constexpr size_t kLineShown = 200;  // bytes shown of a stderr line or a path in the error text

// Thread-safe descriptions (strerror and strsignal are not).
std::string errno_text(int err) {
  const char* text = strerrordesc_np(err);
  return text ? text : fmt::format("error {}", err);
}
std::string signal_text(int sig) {
  const char* text = sigdescr_np(sig);
  return text ? text : "unknown signal";
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::runtime_error(fmt::format("exec: {} failed: {}", what, errno_text(errno)));
}

Duration seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// The child's dup2 onto 0/1/2 must not overwrite one of our own descriptors, which happens when
// the worker runs with stdio closed: keep every descriptor we hand over above 2.
Fd above_stdio(Fd fd) {
  if (fd.get() > 2) return fd;
  const int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
  return Fd(moved);
}

// Returns: {read end (non-blocking), write end}, both close-on-exec so that no other thread's
// child inherits them (that child would hold our pipe open).
std::pair<Fd, Fd> make_pipe() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd r(p[0]), w(p[1]);
  if (fcntl(r.get(), F_SETFL, O_NONBLOCK) != 0) throw_errno("fcntl(O_NONBLOCK)");
  return {above_stdio(std::move(r)), above_stdio(std::move(w))};
}

// Returns: a sealed in-memory file holding `data`, positioned at its start. A file rather than a
// pipe: no writer to keep fed, no SIGPIPE when the program does not read it all.
Fd stdin_file(std::string_view data) {
  Fd fd(memfd_create("taskfarm-exec-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.open()) throw_errno("memfd_create");
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write(stdin file)");
    }
    done += static_cast<size_t>(n);
  }
  if (lseek(fd.get(), 0, SEEK_SET) != 0) throw_errno("lseek(stdin file)");
  // Read-only for the program (it gets the same open file, opened read-write).
  fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return above_stdio(std::move(fd));
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// mkdir -p with mode 0700. Returns: 0, or the errno of the step that failed.
int make_dirs(const std::string& path) {
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix.back() != '/' && mkdir(prefix.c_str(), 0700) != 0 &&
        errno != EEXIST) {
      return errno;
    }
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return errno;
  return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

// execvp's search, done here so that a PATH given in the request's env applies. Returns: the
// program's path, or nullopt with `err` set (EACCES if a match was not executable, else ENOENT).
std::optional<std::string> find_program(const std::string& name, std::string_view path_var,
                                        int& err) {
  if (name.find('/') != std::string::npos) return name;
  err = ENOENT;
  if (name.empty()) return std::nullopt;
  while (true) {
    const size_t colon = path_var.find(':');
    const std::string_view dir = path_var.substr(0, colon);
    // Relative entries ("" and ".") would name a file relative to the worker, not the command.
    if (!dir.empty() && dir.front() == '/') {
      std::string candidate(dir);
      if (candidate.back() != '/') candidate += '/';
      candidate += name;
      struct stat st {};
      if (stat(candidate.c_str(), &st) == 0) {
        if (S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0) return candidate;
        err = EACCES;
      }
    }
    if (colon == std::string_view::npos) break;
    path_var.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

std::string format_bytes(uint64_t n) {
  if (n >= (uint64_t{1} << 20) && n % (uint64_t{1} << 20) == 0) {
    return fmt::format("{} MiB", n >> 20);
  }
  if (n >= 1024 && n % 1024 == 0) return fmt::format("{} KiB", n >> 10);
  return fmt::format("{} bytes", n);
}

std::string format_seconds(double s) {
  return s >= 0.1 ? fmt::format("{:.1f} s", s) : fmt::format("{:.3f} s", s);
}

// Returns: the last non-empty line of `text` (a progress bar's "\r" counts as a line end).
std::string_view last_line(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  while (true) {
    const size_t end = text.find_last_not_of(kSpace);
    if (end == std::string_view::npos) return {};
    text = text.substr(0, end + 1);
    const size_t start = text.find_last_of("\r\n");
    const std::string_view line = start == std::string_view::npos ? text : text.substr(start + 1);
    if (line.find_first_not_of(kSpace) != std::string_view::npos) return line;
    text = text.substr(0, start);
  }
}

// posix_spawn's attribute objects, destroyed on every path.
struct SpawnActions {
  posix_spawn_file_actions_t actions;
  SpawnActions() {
    if (posix_spawn_file_actions_init(&actions) != 0) throw std::runtime_error("exec: no memory");
  }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
  void check(int rc) {
    if (rc != 0) {
      errno = rc;
      throw_errno("posix_spawn_file_actions");
    }
  }
};
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() {
    if (posix_spawnattr_init(&attr) != 0) throw std::runtime_error("exec: no memory");
  }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

// The leader we spawned. Until it is reaped its pid, which is also the group's id, cannot be
// reused, so killing the group by that id always reaches our processes.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // On an exception: no process of the task may outlive the call.
  ~Child() {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  void signal_group(int sig) const { ::kill(-pid_, sig); }

  // Returns: whether the leader has exited (it stays a zombie, unreaped). Throws: when it is not
  // our child any more (the worker ignores SIGCHLD, so the kernel reaped it).
  bool exited(siginfo_t& info) const {
    while (true) {
      info = {};
      if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
        return info.si_pid == pid_;
      }
      if (errno != EINTR) throw_errno("waitid (is SIGCHLD ignored?)");
    }
  }
  void reap() {
    while (waitpid(pid_, nullptr, 0) < 0) {
      if (errno != EINTR) break;  // nothing left to reap
    }
    reaped_ = true;
  }
  bool reaped() const { return reaped_; }

 private:
  pid_t pid_;
  bool reaped_ = false;
};

enum class KillReason { kNone, kTimeout, kCancel, kStop, kTooLarge };

ExecResult spawn_failed(std::string error, Clock::time_point start) {
  ExecResult result;
  result.status = ExecResult::Status::kSpawnFailed;
  result.error = std::move(error);
  result.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

// `Flag`: std::atomic<bool> or std::atomic<int> (the worker's per-task cancel flag).
template <typename Flag>
ExecResult run_impl(const ExecRequest& req, const Flag* cancel, const std::atomic<int>* stop) {
  const auto start = Clock::now();
  const auto stop_level = [&] { return stop ? stop->load(std::memory_order_relaxed) : 0; };
  if (stop_level() > 0 || (cancel && cancel->load())) {
    ExecResult result;
    result.status = ExecResult::Status::kCancelled;
    result.error = stop_level() > 0 ? "cancelled: the worker is stopping" : "cancelled";
    return result;
  }

  // ---- what to run: checked here, so that a bad task is a result and never reaches exec
  if (req.argv.empty()) return spawn_failed("cannot run an empty command (argv is empty)", start);
  for (size_t i = 0; i < req.argv.size(); ++i) {
    if (has_nul(req.argv[i])) {
      return spawn_failed(fmt::format("argv[{}] contains a NUL byte", i), start);
    }
  }
  std::vector<std::string> argv_storage;
  if (req.shell) argv_storage = {"/bin/sh", "-c"};
  argv_storage.insert(argv_storage.end(), req.argv.begin(), req.argv.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  std::optional<std::string_view> path_var;
  for (size_t i = 0; i < req.env.size(); ++i) {
    const std::string& name = req.env[i].first;  // (clang 14 cannot capture a binding)
    const std::string& value = req.env[i].second;
    if (name.empty() || name.find('=') != std::string::npos || has_nul(name) || has_nul(value)) {
      return spawn_failed(
          fmt::format("bad environment variable name or value '{}'", printable(name)), start);
    }
    // The last of several entries with one name wins.
    if (std::any_of(req.env.begin() + static_cast<std::ptrdiff_t>(i) + 1, req.env.end(),
                    [&](const auto& kv) { return kv.first == name; })) {
      continue;
    }
    env_storage.push_back(name + "=" + value);
    if (name == "PATH") path_var = value;
  }
  std::vector<char*> envp;
  // The worker's environment is read, not copied: it must not change while tasks run.
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    const bool replaced = std::any_of(req.env.begin(), req.env.end(),
                                      [&](const auto& kv) { return kv.first == name; });
    if (!replaced) envp.push_back(*e);
  }
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (!path_var) {
    const char* p = getenv("PATH");
    path_var = p ? std::string_view(p) : std::string_view("/usr/local/bin:/usr/bin:/bin");
  }

  const std::string& program_name = argv_storage[0];
  int find_err = 0;
  const auto program = find_program(program_name, *path_var, find_err);
  if (!program) {
    return spawn_failed(fmt::format("cannot run '{}': {}", printable(program_name, kLineShown),
                                    errno_text(find_err)),
                        start);
  }
  if (!req.workdir.empty()) {
    if (has_nul(req.workdir)) return spawn_failed("the working directory contains a NUL", start);
    if (const int err = make_dirs(req.workdir); err != 0) {
      return spawn_failed(fmt::format("cannot create working directory '{}': {}",
                                      printable(req.workdir, kLineShown), errno_text(err)),
                          start);
    }
  }

  // ---- the child's descriptors, attributes and start
  auto [out_r, out_w] = make_pipe();
  auto [err_r, err_w] = make_pipe();
  Fd in = req.stdin_data.empty() ? Fd() : stdin_file(req.stdin_data);

  SpawnActions fa;
  if (in.open()) {
    fa.check(posix_spawn_file_actions_adddup2(&fa.actions, in.get(), 0));
  } else {
    fa.check(posix_spawn_file_actions_addopen(&fa.actions, 0, "/dev/null", O_RDONLY, 0));
  }
  fa.check(posix_spawn_file_actions_adddup2(&fa.actions, out_w.get(), 1));
  fa.check(posix_spawn_file_actions_adddup2(&fa.actions, err_w.get(), 2));
  if (!req.workdir.empty()) {
    fa.check(posix_spawn_file_actions_addchdir_np(&fa.actions, req.workdir.c_str()));
  }
  // Descriptors another library opened without O_CLOEXEC must not reach the command either.
  fa.check(posix_spawn_file_actions_addclosefrom_np(&fa.actions, 3));

  SpawnAttr attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  // Own group (the unit we kill), no blocked signals, every disposition default (the worker
  // ignores SIGPIPE; a command must die of it as it would in a shell). glibc's posix_spawn
  // (2.36 here) still leaves its internal signals 32 and 33 ignored; programs do not use them.
  if (posix_spawnattr_setflags(&attr.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF) != 0 ||
      posix_spawnattr_setpgroup(&attr.attr, 0) != 0 ||
      posix_spawnattr_setsigmask(&attr.attr, &none) != 0 ||
      posix_spawnattr_setsigdefault(&attr.attr, &all) != 0) {
    throw std::runtime_error("exec: posix_spawnattr failed");
  }

  pid_t pid = -1;
  // glibc's posix_spawn returns only once exec succeeded or failed, with the child in its group.
  const int rc =
      posix_spawn(&pid, program->c_str(), &fa.actions, &attr.attr, argv.data(), envp.data());
  if (rc == EAGAIN || rc == ENOMEM) {
    errno = rc;
    throw_errno("posix_spawn");  // the worker's limits, not the task's fault
  }
  if (rc != 0) {
    // chdir is one of the child's steps: name the directory when it is the cause.
    if (!req.workdir.empty() && access(req.workdir.c_str(), X_OK) != 0) {
      return spawn_failed(fmt::format("cannot enter working directory '{}': {}",
                                      printable(req.workdir, kLineShown), errno_text(errno)),
                          start);
    }
    return spawn_failed(
        fmt::format("cannot run '{}': {}", printable(program_name, kLineShown), errno_text(rc)),
        start);
  }
  Child child(pid);
  out_w.reset();
  err_w.reset();
  in.reset();
  // Readable when the leader exits; without it (old kernel, seccomp) we poll for the exit.
  // (The syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C".)
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));

  // ---- wait: read both pipes, enforce the timeout, cancel and output bound, end the group
  ExecResult result;
  uint64_t stdout_total = 0;
  KillReason reason = KillReason::kNone;
  bool term_sent = false, killed = false, exited = false;
  siginfo_t exit_info{};
  Clock::time_point term_at{}, drain_until{};
  const auto grace = seconds(req.kill_grace_s > 0 ? std::min(req.kill_grace_s, 1e6) : 0.0);
  const auto drain = std::max<Duration>(grace, kMinDrain);
  std::optional<Clock::time_point> deadline;
  if (req.timeout_s > 0 && req.timeout_s < 1e9) deadline = start + seconds(req.timeout_s);

  const auto terminate = [&](KillReason why, Clock::time_point now) {
    if (reason == KillReason::kNone) reason = why;
    if (term_sent || killed) return;
    child.signal_group(SIGTERM);
    child.signal_group(SIGCONT);  // a stopped process acts on SIGTERM only once continued
    term_sent = true;
    term_at = now;
  };
  const auto kill_group = [&] {
    if (killed) return;
    child.signal_group(SIGKILL);
    killed = true;
  };

  char buf[64 * 1024];
  const auto read_stdout = [&](Fd& fd) {
    for (int i = 0; i < 16 && fd.open(); ++i) {  // bounded: the other pipe gets its turn
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n > 0) {
        stdout_total += static_cast<uint64_t>(n);
        if (result.output.size() < req.max_output_bytes) {
          const auto room = req.max_output_bytes - result.output.size();
          result.output.append(buf, static_cast<size_t>(std::min<uint64_t>(room, n)));
        }
        if (stdout_total > req.max_output_bytes) terminate(KillReason::kTooLarge, Clock::now());
        if (static_cast<size_t>(n) < sizeof buf) return;
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        fd.reset();
      } else if (errno == EAGAIN) {
        return;
      }
    }
  };
  std::string& tail = result.stderr_tail;
  const auto read_stderr = [&](Fd& fd) {
    for (int i = 0; i < 16 && fd.open(); ++i) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n > 0) {
        tail.append(buf, static_cast<size_t>(n));
        if (tail.size() > 2 * req.stderr_tail_bytes + sizeof buf) {
          tail.erase(0, tail.size() - req.stderr_tail_bytes);
        }
        if (static_cast<size_t>(n) < sizeof buf) return;
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        fd.reset();
      } else if (errno == EAGAIN) {
        return;
      }
    }
  };

  while (true) {
    auto now = Clock::now();
    if (!exited) exited = child.exited(exit_info);
    if (!exited && reason == KillReason::kNone) {
      if (cancel && cancel->load()) {
        terminate(KillReason::kCancel, now);
      } else if (stop_level() > 0) {
        terminate(KillReason::kStop, now);
      } else if (deadline && now >= *deadline) {
        terminate(KillReason::kTimeout, now);
      }
    }
    if (term_sent && !killed && (now >= term_at + grace || stop_level() > 1)) kill_group();
    const bool pipes_open = out_r.open() || err_r.open();
    // A finished command's leftovers die at once; on the kill path they keep the grace unless
    // nothing of them holds our pipes any more.
    if (exited && !killed && (!term_sent || !pipes_open)) kill_group();
    if (exited && killed && !child.reaped()) {
      child.reap();
      drain_until = now + drain;
    }
    // Pipes still open after that are held by a process that left the group (setsid).
    if (child.reaped() && (!pipes_open || now >= drain_until)) break;

    std::optional<Clock::time_point> wake;
    const auto wake_by = [&](Clock::time_point t) { wake = wake ? std::min(*wake, t) : t; };
    if (!exited) {
      if (cancel || stop) wake_by(now + kCancelPoll);
      if (!pidfd.open()) wake_by(now + kExitPoll);
      if (deadline && reason == KillReason::kNone) wake_by(*deadline);
    }
    if (term_sent && !killed) wake_by(term_at + grace);
    if (child.reaped()) wake_by(drain_until);

    pollfd fds[3];
    Fd* owners[3] = {};
    nfds_t n = 0;
    for (Fd* fd : {&out_r, &err_r}) {
      if (fd->open()) {
        owners[n] = fd;
        fds[n++] = {fd->get(), POLLIN, 0};
      }
    }
    if (!exited && pidfd.open()) fds[n++] = {pidfd.get(), POLLIN, 0};
    timespec ts{};
    timespec* tsp = nullptr;
    if (wake) {
      const auto left = std::max<Duration>(*wake - now, Duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      tsp = &ts;
    }
    if (ppoll(fds, n, tsp, nullptr) < 0) {
      if (errno == EINTR) continue;
      throw_errno("ppoll");
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (owners[i] == nullptr || fds[i].revents == 0) continue;
      if (owners[i] == &out_r) {
        read_stdout(out_r);
      } else {
        read_stderr(err_r);
      }
    }
  }

  // ---- the result
  if (tail.size() > req.stderr_tail_bytes) tail.erase(0, tail.size() - req.stderr_tail_bytes);
  result.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (exit_info.si_code == CLD_EXITED) {
    result.exit_code = exit_info.si_status;
  } else {
    result.signal = exit_info.si_status;
  }
  const std::string_view line = last_line(tail);
  const std::string line_suffix = line.empty() ? "" : ": " + printable(line, kLineShown);
  using S = ExecResult::Status;
  switch (reason) {
    case KillReason::kTimeout:
      result.status = S::kTimedOut;
      result.error = "timed out after " + format_seconds(req.timeout_s);
      break;
    case KillReason::kCancel:
      result.status = S::kCancelled;
      result.error = "cancelled";
      break;
    case KillReason::kStop:
      result.status = S::kCancelled;
      result.error = "cancelled: the worker is stopping";
      break;
    case KillReason::kTooLarge:
      result.status = S::kOutputTooLarge;
      result.error = fmt::format("output larger than the limit of {}: the command was killed",
                                 format_bytes(req.max_output_bytes));
      break;
    case KillReason::kNone:
      if (result.exit_code == 0) {
        result.status = S::kOk;
      } else if (result.signal != 0) {
        result.status = S::kFailed;
        result.error = fmt::format("killed by signal {} ({}){}", result.signal,
                                   signal_text(result.signal), line_suffix);
      } else {
        result.status = S::kFailed;
        result.error = fmt::format("exit status {}{}", result.exit_code, line_suffix);
      }
      break;
  }
  return result;
}

}  // namespace

const char* to_string(ExecResult::Status status) {
  switch (status) {
    case ExecResult::Status::kOk: return "ok";
    case ExecResult::Status::kFailed: return "failed";
    case ExecResult::Status::kTimedOut: return "timed_out";
    case ExecResult::Status::kCancelled: return "cancelled";
    case ExecResult::Status::kOutputTooLarge: return "output_too_large";
    case ExecResult::Status::kSpawnFailed: return "spawn_failed";
  }
  return "unknown";
}

ExecResult ExecRunner::run(const ExecRequest& request, const std::atomic<bool>* cancel) const {
  return run_impl(request, cancel, &stop_);
}

ExecResult ExecRunner::run(const ExecRequest& request, const std::atomic<int>* cancel) const {
  return run_impl(request, cancel, &stop_);
}

void ExecRunner::stop(bool now) noexcept {
  int level = stop_.load(std::memory_order_relaxed);
  const int want = now ? 2 : 1;
  while (level < want && !stop_.compare_exchange_weak(level, want)) {
  }
}

ExecResult run_exec(const ExecRequest& request, const std::atomic<bool>* cancel) {
  return run_impl(request, cancel, nullptr);
}

}  // namespace taskfarm::worker
