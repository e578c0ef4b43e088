// Per-task overhead of the exec runner (worker/exec_runner.h), next to its floor from the same
// run: a bare posix_spawn + waitpid of the same program, no pipes, no group, no polling.
//
//   exec_bench [--benchmark_filter=REGEX] [--benchmark_format=json] ...
//
// Time per iteration is the wall time of one task (real time: the work is in the child);
// items_per_second is tasks per second, over all threads; bytes_per_second counts stdout.
#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "worker/exec_runner.h"

namespace {

using taskfarm::worker::ExecRequest;
using taskfarm::worker::ExecRunner;

// The floor: what starting and reaping /bin/true costs with nothing around it.
void BM_SpawnWaitBaseline(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  for (auto _ : state) {
    pid_t pid = -1;
    if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) {
      state.SkipWithError("posix_spawn failed");
      break;
    }
    int status = 0;
    waitpid(pid, &status, 0);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnWaitBaseline)->UseRealTime()->Threads(1)->Threads(2);

const ExecRunner& runner() {
  static const ExecRunner r;
  return r;
}

void run_or_fail(benchmark::State& state, const ExecRequest& req) {
  const auto r = runner().run(req);
  if (!r.ok()) state.SkipWithError(r.error.c_str());
}

// /bin/true through the runner, as little around it as it allows.
void BM_RunExecTrue(benchmark::State& state) {
  ExecRequest req;
  req.argv = {"/bin/true"};
  for (auto _ : state) run_or_fail(state, req);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunExecTrue)->UseRealTime()->Threads(1)->Threads(2);

// What an exec task costs the worker: PATH search, TASKFARM_* variables, a 100-byte stdin, a
// fresh working directory created and removed, a timeout and a cancel flag to watch. Arg 0:
// the working directories under TMPDIR (or /tmp); 1: under /dev/shm (tmpfs).
void BM_RunExecTask(benchmark::State& state) {
  const std::filesystem::path root =
      state.range(0) == 0 ? std::filesystem::temp_directory_path() : "/dev/shm";
  const auto base = root / ("exec_bench." + std::to_string(getpid()) + "." +
                            std::to_string(state.thread_index()));
  const std::string input(100, 'x');
  const std::atomic<bool> cancel{false};
  uint64_t index = 0;
  ExecRequest req;
  req.argv = {"true", "--seed", "0"};
  req.stdin_data = input;
  req.timeout_s = 60;
  for (auto _ : state) {
    const auto dir = base / std::to_string(index);
    req.argv[2] = std::to_string(index);
    req.env = {{"TASKFARM_JOB_ID", "1"},
               {"TASKFARM_TASK_ID", "1." + std::to_string(index)},
               {"TASKFARM_TASK_INDEX", std::to_string(index)},
               {"TASKFARM_ATTEMPT", "1"}};
    req.workdir = dir.string();
    const auto r = runner().run(req, &cancel);
    if (!r.ok()) state.SkipWithError(r.error.c_str());
    std::filesystem::remove(dir);
    ++index;
  }
  std::filesystem::remove_all(base);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunExecTask)->UseRealTime()->Arg(0)->Arg(1)->Threads(1)->Threads(2);

// The same through /bin/sh -c, as a "shell": true task runs.
void BM_RunExecShellTrue(benchmark::State& state) {
  ExecRequest req;
  req.shell = true;
  req.argv = {"true"};
  for (auto _ : state) run_or_fail(state, req);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunExecShellTrue)->UseRealTime();

// Stdout capture rate: a command writing N bytes, kept whole.
void BM_RunExecStdout(benchmark::State& state) {
  const auto bytes = static_cast<int64_t>(state.range(0));
  ExecRequest req;
  req.argv = {"head", "-c", std::to_string(bytes), "/dev/zero"};
  for (auto _ : state) run_or_fail(state, req);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_RunExecStdout)->UseRealTime()->Arg(1 << 20)->Arg(16 << 20);

}  // namespace

BENCHMARK_MAIN();
