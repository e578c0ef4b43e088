// The exec runner against real processes: output and input, exit statuses and signals, the
// environment and working directory, timeouts, cancel and stop killing whole process groups,
// output bounds, descriptors and signal state in the child, and many runs at once.
#include "worker/exec_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using taskfarm::worker::ExecRequest;
using taskfarm::worker::ExecResult;
using taskfarm::worker::ExecRunner;
using taskfarm::worker::run_exec;
using Status = ExecResult::Status;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ExecRequest shell(std::string script, std::vector<std::string> args = {}) {
  ExecRequest req;
  req.shell = true;
  req.argv = {std::move(script)};
  req.argv.insert(req.argv.end(), args.begin(), args.end());
  return req;
}

// A fresh directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "exec_runner_test.XXXXXX").string();
    if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Returns: the state letter and process group of `pid` from /proc, or state 0 when gone.
std::pair<char, pid_t> proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return {0, 0};
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {0, 0};
  std::istringstream rest(line.substr(close + 2));
  char state = 0;
  pid_t ppid = 0, pgrp = 0;
  rest >> state >> ppid >> pgrp;
  return {state, pgrp};
}

// Whether `pid` is gone or a zombie, waiting up to 3 s: a process SIGKILLed a moment ago may
// still be on its way out.
bool is_dead(pid_t pid) {
  const auto start = Clock::now();
  while (true) {
    const char state = proc_state(pid).first;
    if (state == 0 || state == 'Z' || state == 'X') return true;
    if (seconds_since(start) > 3) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Returns: the live (not zombie) processes of group `pgid`.
std::vector<pid_t> live_members(pid_t pgid) {
  std::vector<pid_t> live;
  DIR* dir = opendir("/proc");
  if (!dir) return live;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    const auto [state, pgrp] = proc_state(static_cast<pid_t>(pid));
    if (pgrp == pgid && state != 0 && state != 'Z' && state != 'X') {
      live.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(dir);
  return live;
}

// Whether no process of the group is left: kill(-pgid, 0) fails with ESRCH, or only zombies
// remain that this machine's init has not reaped yet (they are dead). Waits up to 3 s for it.
::testing::AssertionResult group_gone(pid_t pgid) {
  const auto start = Clock::now();
  while (true) {
    if (kill(-pgid, 0) != 0 && errno == ESRCH) return ::testing::AssertionSuccess();
    const auto live = live_members(pgid);
    if (live.empty()) return ::testing::AssertionSuccess();
    if (seconds_since(start) > 3) {
      return ::testing::AssertionFailure()
             << live.size() << " process(es) of group " << pgid << " alive, e.g. " << live[0];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::vector<pid_t> pids_in(const std::string& text) {
  std::istringstream in(text);
  std::vector<pid_t> pids;
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

class ExecRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Crash tests must not write core files.
    rlimit none{0, 0};
    setrlimit(RLIMIT_CORE, &none);
  }
};

// ---------------------------------------------------------------- output, input, status

TEST_F(ExecRunnerTest, CapturesStdoutOfASimpleCommand) {
  ExecRequest req;
  req.argv = {"echo", "hello", "world"};  // found in PATH
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.output, "hello world\n");
  EXPECT_EQ(r.error, "");
  EXPECT_GT(r.wall_s, 0);
}

TEST_F(ExecRunnerTest, RoundTripsTenMegabytesOfBinaryDataExactly) {
  std::string data(10 << 20, '\0');
  std::mt19937_64 gen(42);
  for (auto& c : data) c = static_cast<char>(gen());
  ExecRequest req;
  req.argv = {"cat"};
  req.stdin_data = data;
  const auto r = run_exec(req);
  ASSERT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output.size(), data.size());
  EXPECT_TRUE(r.output == data);
}

TEST_F(ExecRunnerTest, FeedsStdinThenEof) {
  std::string data(1 << 20, 'x');
  ExecRequest req;
  req.argv = {"wc", "-c"};
  req.stdin_data = data;
  EXPECT_EQ(run_exec(req).output, "1048576\n");

  req.stdin_data = {};  // /dev/null
  EXPECT_EQ(run_exec(req).output, "0\n");
}

TEST_F(ExecRunnerTest, StdinTheCommandDoesNotReadIsNoError) {
  std::string data(8 << 20, 'x');  // far more than a pipe holds
  ExecRequest req;
  req.argv = {"true"};
  req.stdin_data = data;
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kOk) << r.error;
}

TEST_F(ExecRunnerTest, ReportsExitStatusWithTheLastStderrLine) {
  auto r = run_exec(shell("exit 3"));
  EXPECT_EQ(r.status, Status::kFailed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "exit status 3");

  r = run_exec(shell("echo out; echo first >&2; echo 'no such input file' >&2; echo >&2; exit 1"));
  EXPECT_EQ(r.status, Status::kFailed);
  EXPECT_EQ(r.output, "out\n");
  EXPECT_EQ(r.stderr_tail, "first\nno such input file\n\n");
  EXPECT_EQ(r.error, "exit status 1: no such input file");

  // Stderr of a successful command is kept but is no error.
  r = run_exec(shell("echo warning >&2"));
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.stderr_tail, "warning\n");
  EXPECT_EQ(r.error, "");
}

TEST_F(ExecRunnerTest, ErrorTextIsOnePrintableLine) {
  const auto r = run_exec(shell("printf 'progress 10%%\\rbad \\033[31mred\\001\\n' >&2; exit 2"));
  EXPECT_EQ(r.status, Status::kFailed);
  EXPECT_EQ(r.error, "exit status 2: bad \\x1b[31mred\\x01");
  EXPECT_EQ(r.error.find('\n'), std::string::npos);
}

TEST_F(ExecRunnerTest, KeepsOnlyTheTailOfStderr) {
  ExecRequest req =
      shell("head -c 100000 /dev/zero | tr '\\0' a >&2; echo >&2; echo 'final words' >&2; exit 4");
  req.stderr_tail_bytes = 4096;
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kFailed);
  EXPECT_EQ(r.stderr_tail.size(), 4096u);
  EXPECT_TRUE(r.stderr_tail.ends_with("aaa\nfinal words\n")) << r.stderr_tail.substr(4000);
  EXPECT_EQ(r.error, "exit status 4: final words");
}

TEST_F(ExecRunnerTest, ReportsASignalThatEndedTheCommand) {
  auto r = run_exec(shell("echo about to crash >&2; kill -SEGV $$"));
  EXPECT_EQ(r.status, Status::kFailed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.error, "killed by signal 11 (Segmentation fault): about to crash");

  r = run_exec(shell("kill -KILL $$"));
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.error, "killed by signal 9 (Killed)");
}

// ---------------------------------------------------------------- what cannot run

TEST_F(ExecRunnerTest, MissingProgramIsASpawnFailure) {
  ExecRequest req;
  req.argv = {"no-such-program-taskfarm-test", "arg"};
  auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run 'no-such-program-taskfarm-test': No such file or directory");

  req.argv = {"/no/such/dir/prog"};
  r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run '/no/such/dir/prog': No such file or directory");
}

TEST_F(ExecRunnerTest, FilesThatCannotBeExecutedAreSpawnFailures) {
  TempDir dir;
  const auto plain = dir.path() / "plain";
  std::ofstream(plain) << "#!/bin/sh\necho hi\n";
  fs::permissions(plain, fs::perms::owner_read | fs::perms::owner_write);
  ExecRequest req;
  req.argv = {plain.string()};
  auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run '" + plain.string() + "': Permission denied");

  // In PATH but not executable: execvp's EACCES.
  req.env = {{"PATH", dir.path().string()}};
  req.argv = {"plain"};
  r = run_exec(req);
  EXPECT_EQ(r.error, "cannot run 'plain': Permission denied");

  // Executable but no interpreter line: the kernel refuses it (no shell fallback).
  const auto noshebang = dir.path() / "noshebang";
  std::ofstream(noshebang) << "echo hi\n";
  fs::permissions(noshebang, fs::perms::owner_all);
  req.env = {};
  req.argv = {noshebang.string()};
  r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run '" + noshebang.string() + "': Exec format error");
}

TEST_F(ExecRunnerTest, BadArgvAndEnvAreSpawnFailures) {
  ExecRequest req;
  auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run an empty command (argv is empty)");

  req.argv = {"echo", std::string("a\0b", 3)};
  r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "argv[1] contains a NUL byte");

  req.argv = {"true"};
  req.env = {{"A=B", "x"}};
  r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "bad environment variable name or value 'A=B'");

  req.env = {{"", "x"}};
  EXPECT_EQ(run_exec(req).status, Status::kSpawnFailed);

  // More than the kernel takes in one argument (MAX_ARG_STRLEN, 128 KiB).
  req.env = {};
  req.argv = {"echo", std::string(200'000, 'x')};
  r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot run 'echo': Argument list too long");
}

// ---------------------------------------------------------------- shell, env, workdir

TEST_F(ExecRunnerTest, ShellModePassesFurtherArgumentsAsPositionals) {
  const auto r = run_exec(shell("echo \"$0|$1|$2\" | tr a-z A-Z", {"zero", "one", "two words"}));
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.output, "ZERO|ONE|TWO WORDS\n");

  // Without shell mode the same text is one program name, not a command line.
  ExecRequest req;
  req.argv = {"echo hi"};
  EXPECT_EQ(run_exec(req).status, Status::kSpawnFailed);
}

TEST_F(ExecRunnerTest, EnvironmentIsTheWorkersPlusTheRequests) {
  setenv("EXEC_RUNNER_TEST_INHERITED", "from-worker", 1);
  setenv("EXEC_RUNNER_TEST_REPLACED", "old", 1);
  ExecRequest req = shell(
      "echo \"$EXEC_RUNNER_TEST_INHERITED $EXEC_RUNNER_TEST_REPLACED $TASKFARM_TASK_ID\";"
      "env | grep -c '^EXEC_RUNNER_TEST_REPLACED='");
  req.env = {{"EXEC_RUNNER_TEST_REPLACED", "newer"},
             {"TASKFARM_TASK_ID", "job-7.42"},
             {"EXEC_RUNNER_TEST_REPLACED", "new"}};  // the last one wins
  const auto r = run_exec(req);
  unsetenv("EXEC_RUNNER_TEST_INHERITED");
  unsetenv("EXEC_RUNNER_TEST_REPLACED");
  EXPECT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output, "from-worker new job-7.42\n1\n");
}

TEST_F(ExecRunnerTest, PathInTheRequestsEnvFindsTheProgram) {
  TempDir dir;
  const auto tool = dir.path() / "my-tool";
  std::ofstream(tool) << "#!/bin/sh\necho \"my tool $1\"\n";
  fs::permissions(tool, fs::perms::owner_all);
  ExecRequest req;
  req.argv = {"my-tool", "ran"};
  EXPECT_EQ(run_exec(req).status, Status::kSpawnFailed);  // not in the worker's PATH
  // Relative entries are skipped, the absolute one after them is searched.
  req.env = {{"PATH", ".::" + dir.path().string() + ":/usr/bin:/bin"}};
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output, "my tool ran\n");
}

TEST_F(ExecRunnerTest, CreatesAndUsesTheWorkingDirectory) {
  TempDir dir;
  const auto workdir = dir.path() / "job" / "task-1";
  ExecRequest req = shell("pwd; echo data > here.txt");
  req.workdir = workdir.string();
  const auto r = run_exec(req);
  ASSERT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output, workdir.string() + "\n");
  EXPECT_TRUE(fs::exists(workdir / "here.txt"));
  for (const auto& d : {workdir, dir.path() / "job"}) {
    struct stat st {};
    ASSERT_EQ(stat(d.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
  }

  // An existing directory is used as it is; a relative program path is relative to it.
  std::ofstream(workdir / "prog") << "#!/bin/sh\necho local prog\n";
  fs::permissions(workdir / "prog", fs::perms::owner_all);
  ExecRequest local;
  local.argv = {"./prog"};
  local.workdir = workdir.string();
  EXPECT_EQ(run_exec(local).output, "local prog\n");
}

TEST_F(ExecRunnerTest, WorkingDirectoryThatCannotBeCreatedIsASpawnFailure) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  ExecRequest req;
  req.argv = {"true"};
  req.workdir = (dir.path() / "file" / "sub").string();
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kSpawnFailed);
  EXPECT_EQ(r.error, "cannot create working directory '" + req.workdir + "': Not a directory");
}

// ---------------------------------------------------------------- process groups and killing

TEST_F(ExecRunnerTest, RunsInItsOwnProcessGroup) {
  const auto r = run_exec(shell("echo $$; cut -d' ' -f5 /proc/$$/stat"));
  ASSERT_EQ(r.status, Status::kOk) << r.error;
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_EQ(pids[0], pids[1]);  // the leader of its group
  EXPECT_NE(pids[1], getpgrp());
}

TEST_F(ExecRunnerTest, TimeoutKillsTheCommandAndItsGrandchildren) {
  // A child and a grandchild (a subshell's sleep), the leader waiting for them.
  ExecRequest req = shell("echo $$; sleep 30 & echo $!; (sleep 30 & echo $!; wait) & wait");
  req.timeout_s = 0.3;
  const auto start = Clock::now();
  const auto r = run_exec(req);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_EQ(r.status, Status::kTimedOut);
  EXPECT_EQ(r.error, "timed out after 0.3 s");
  EXPECT_EQ(r.signal, SIGTERM);
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 3u) << r.output;
  EXPECT_TRUE(group_gone(pids[0]));
  for (pid_t p : pids) EXPECT_TRUE(is_dead(p)) << p;
}

TEST_F(ExecRunnerTest, ProcessIgnoringSigtermIsKilledAfterTheGrace) {
  ExecRequest req = shell("trap '' TERM; echo $$; sleep 30 & wait");
  req.timeout_s = 0.2;
  req.kill_grace_s = 0.3;
  const auto start = Clock::now();
  const auto r = run_exec(req);
  const double took = seconds_since(start);
  EXPECT_EQ(r.status, Status::kTimedOut);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_GE(took, 0.45);  // it got the grace
  EXPECT_LT(took, 2.5);
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(group_gone(pids[0]));
}

TEST_F(ExecRunnerTest, StoppedProcessIsKilledOnTimeout) {
  ExecRequest req = shell("echo $$; kill -STOP $$");
  req.timeout_s = 0.2;
  req.kill_grace_s = 5;  // SIGCONT after SIGTERM ends it long before the grace
  const auto start = Clock::now();
  const auto r = run_exec(req);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_EQ(r.status, Status::kTimedOut);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_TRUE(group_gone(pids_in(r.output).at(0)));
}

TEST_F(ExecRunnerTest, CancelKillsTheGroupWithinASecond) {
  std::atomic<bool> cancel{false};
  ExecRequest req = shell("sleep 30 & echo $$ $!; wait");
  ExecResult r;
  std::thread runner([&] { r = run_exec(req, &cancel); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto cancelled_at = Clock::now();
  cancel = true;
  runner.join();
  EXPECT_LT(seconds_since(cancelled_at), 1.0);
  EXPECT_EQ(r.status, Status::kCancelled);
  EXPECT_EQ(r.error, "cancelled");
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 2u) << r.output;
  EXPECT_TRUE(group_gone(pids[0]));
  EXPECT_TRUE(is_dead(pids[1]));

  // Cancelled before it starts: nothing runs.
  TempDir dir;
  ExecRequest touch;
  touch.argv = {"touch", (dir.path() / "ran").string()};
  EXPECT_EQ(run_exec(touch, &cancel).status, Status::kCancelled);
  EXPECT_FALSE(fs::exists(dir.path() / "ran"));
}

TEST_F(ExecRunnerTest, OutputOverTheLimitKillsAndFails) {
  ExecRequest req = shell("echo $$ >&2; exec cat /dev/zero");  // never ends by itself
  req.max_output_bytes = 1 << 20;
  const auto r = run_exec(req);
  EXPECT_EQ(r.status, Status::kOutputTooLarge);
  EXPECT_EQ(r.output.size(), 1u << 20);
  EXPECT_EQ(r.error, "output larger than the limit of 1 MiB: the command was killed");
  EXPECT_TRUE(group_gone(pids_in(r.stderr_tail).at(0)));

  // Exactly the limit is fine.
  req = shell("head -c 1048576 /dev/zero");
  req.max_output_bytes = 1 << 20;
  EXPECT_EQ(run_exec(req).status, Status::kOk);
  req.max_output_bytes = (1 << 20) - 1;
  const auto over = run_exec(req);
  EXPECT_EQ(over.status, Status::kOutputTooLarge);
  EXPECT_EQ(over.error, "output larger than the limit of 1048575 bytes: the command was killed");
}

TEST_F(ExecRunnerTest, GrandchildHoldingStdoutDoesNotHangTheRunner) {
  // The leader exits at once; its background sleep keeps stdout and stderr open.
  ExecRequest req = shell("sleep 30 & echo $$ $!");
  req.kill_grace_s = 10;  // the leftovers of a finished command get no grace
  const auto start = Clock::now();
  const auto r = run_exec(req);
  EXPECT_LT(seconds_since(start), 1.0);
  EXPECT_EQ(r.status, Status::kOk) << r.error;
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_TRUE(group_gone(pids[0]));
  EXPECT_TRUE(is_dead(pids[1]));

  // The same with the leader failing: its status is the result.
  const auto failed = run_exec(shell("sleep 30 >&2 & exit 5"));
  EXPECT_EQ(failed.status, Status::kFailed);
  EXPECT_EQ(failed.exit_code, 5);
}

TEST_F(ExecRunnerTest, ProcessThatLeftTheGroupDoesNotHangTheRunner) {
  // setsid puts the sleep out of reach of the group kill; it keeps stdout open. The leader waits
  // until it has its own session so that the group kill cannot catch it first.
  ExecRequest req = shell(
      "setsid sleep 30 & p=$!; i=0;"
      "while [ \"$(cut -d' ' -f6 /proc/$p/stat)\" != $p ] && [ $i -lt 500 ]; do i=$((i+1)); done;"
      "echo $p");
  req.kill_grace_s = 0.2;  // the runner reads its pipes max(grace, 0.5 s) after the exit
  const auto start = Clock::now();
  const auto r = run_exec(req);
  const double took = seconds_since(start);
  const auto pids = pids_in(r.output);
  ASSERT_EQ(pids.size(), 1u) << r.output;
  EXPECT_NE(kill(pids[0], 0), -1);  // documented: out of the group, out of reach
  kill(pids[0], SIGKILL);
  EXPECT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_GE(took, 0.45);
  EXPECT_LT(took, 2.0);
}

// ---------------------------------------------------------------- the runner's stop

TEST_F(ExecRunnerTest, StopCancelsRunningAndLaterRuns) {
  ExecRunner runner;
  EXPECT_FALSE(runner.stopping());
  ExecResult r;
  std::thread t([&] { r = runner.run(shell("echo $$; exec sleep 30")); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto stopped_at = Clock::now();
  runner.stop();
  t.join();
  EXPECT_LT(seconds_since(stopped_at), 1.0);
  EXPECT_TRUE(runner.stopping());
  EXPECT_EQ(r.status, Status::kCancelled);
  EXPECT_EQ(r.error, "cancelled: the worker is stopping");
  EXPECT_TRUE(group_gone(pids_in(r.output).at(0)));

  TempDir dir;
  ExecRequest touch;
  touch.argv = {"touch", (dir.path() / "ran").string()};
  EXPECT_EQ(runner.run(touch).status, Status::kCancelled);
  EXPECT_FALSE(fs::exists(dir.path() / "ran"));
}

TEST_F(ExecRunnerTest, StopNowSkipsTheGrace) {
  ExecRunner runner;
  ExecRequest req = shell("trap '' TERM; echo $$; sleep 30 & wait");
  req.kill_grace_s = 30;
  ExecResult r;
  std::thread t([&] { r = runner.run(req); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  runner.stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto stopped_at = Clock::now();
  runner.stop(/*now=*/true);
  t.join();
  EXPECT_LT(seconds_since(stopped_at), 1.0);
  EXPECT_EQ(r.status, Status::kCancelled);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_TRUE(group_gone(pids_in(r.output).at(0)));
}

// ---------------------------------------------------------------- the child's state

TEST_F(ExecRunnerTest, NoWorkerDescriptorLeaksIntoTheCommand) {
  // Descriptors opened without O_CLOEXEC, as a careless library would.
  const int leaky = open("/dev/null", O_RDONLY);
  int leaky_pipe[2];
  ASSERT_EQ(pipe(leaky_pipe), 0);
  ASSERT_GT(leaky, 2);
  ExecRequest req;
  req.argv = {"ls", "/proc/self/fd"};  // ls's own directory descriptor is 3
  req.stdin_data = "input";
  const auto r = run_exec(req);
  close(leaky);
  close(leaky_pipe[0]);
  close(leaky_pipe[1]);
  ASSERT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output, "0\n1\n2\n3\n");
}

TEST_F(ExecRunnerTest, CommandStartsWithCleanSignalState) {
  // The worker ignores SIGPIPE and may block signals in its threads.
  struct sigaction ignore {
  }, old_pipe{}, old_int{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old_pipe);
  sigaction(SIGINT, &ignore, &old_int);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  ExecRequest req;
  req.argv = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"};
  const auto r = run_exec(req);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  ASSERT_EQ(r.status, Status::kOk) << r.error;
  unsigned long long blocked = ~0ull, ignored = ~0ull;
  ASSERT_EQ(std::sscanf(r.output.c_str(), "SigBlk: %llx SigIgn: %llx", &blocked, &ignored), 2)
      << r.output;
  EXPECT_EQ(blocked, 0u);
  // Signals 1-31: glibc's posix_spawn leaves its two internal signals (32, 33) ignored.
  EXPECT_EQ(ignored & 0x7fffffffu, 0u) << r.output;

  // So a command writing into a closed pipe dies of SIGPIPE (128 + 13) as in a terminal.
  const auto piped = run_exec(shell("(yes; echo \"yes: $?\" >&2) | head -c 1 >/dev/null"));
  EXPECT_EQ(piped.stderr_tail, "yes: 141\n");
}

TEST_F(ExecRunnerTest, WorksWhenTheWorkersStdinIsClosed) {
  // Our pipes then get descriptor 0; the child's dup2 onto 0..2 must not clobber them.
  const int saved = dup(0);
  ASSERT_GE(saved, 0);
  close(0);
  ExecRequest req;
  req.argv = {"cat"};
  req.stdin_data = "abc";
  const auto r = run_exec(req);
  dup2(saved, 0);
  close(saved);
  EXPECT_EQ(r.status, Status::kOk) << r.error;
  EXPECT_EQ(r.output, "abc");
}

TEST_F(ExecRunnerTest, WaitsOnlyForItsOwnChild) {
  // Another child of the worker, ending while the runner waits.
  pid_t other = -1;
  char* argv[] = {const_cast<char*>("sleep"), const_cast<char*>("0.1"), nullptr};
  ASSERT_EQ(posix_spawnp(&other, "sleep", nullptr, nullptr, argv, environ), 0);
  const auto r = run_exec(shell("sleep 0.3"));
  EXPECT_EQ(r.status, Status::kOk);
  int status = -1;
  ASSERT_EQ(waitpid(other, &status, 0), other);  // still ours to reap
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---------------------------------------------------------------- many at once

TEST_F(ExecRunnerTest, SixteenConcurrentRunsFromThreads) {
  constexpr int kThreads = 16, kRuns = 4;
  ExecRunner runner;
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kRuns; ++k) {
        const std::string id = std::to_string(i) + "." + std::to_string(k);
        const std::string input(1000 + i * 997 + k, static_cast<char>('a' + i));
        ExecRequest req = shell("sleep 0.05; cat; echo \" $0\"; echo err-$0 >&2; exit $1",
                                {id, std::to_string(i % 3)});
        req.stdin_data = input;
        req.env = {{"TASKFARM_TASK_ID", id}};
        const auto r = runner.run(req);
        const auto want = i % 3 == 0 ? Status::kOk : Status::kFailed;
        if (r.status != want || r.output != input + " " + id + "\n" ||
            r.stderr_tail != "err-" + id + "\n") {
          failures[i] = id + ": " + r.error + " output size " + std::to_string(r.output.size());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& f : failures) EXPECT_EQ(f, "");
}

TEST(ExecRunnerStatus, Names) {
  EXPECT_STREQ(to_string(Status::kOk), "ok");
  EXPECT_STREQ(to_string(Status::kFailed), "failed");
  EXPECT_STREQ(to_string(Status::kTimedOut), "timed_out");
  EXPECT_STREQ(to_string(Status::kCancelled), "cancelled");
  EXPECT_STREQ(to_string(Status::kOutputTooLarge), "output_too_large");
  EXPECT_STREQ(to_string(Status::kSpawnFailed), "spawn_failed");
}

}  // namespace
