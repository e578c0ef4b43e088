// The worker: asks the ventilator for tasks with credits (DEALER), runs them on its executor
// (CPU threads or CUDA streams), pushes results to the sink (PUSH), and exits when the sink
// says so (SUB) or on SIGINT/SIGTERM after handing back the tasks it has not started.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/security.h"

namespace taskfarm::worker {

struct WorkerOptions {
  std::string ventilator = "tcp://localhost:5557";
  std::string sink_results = "tcp://localhost:5558";
  std::string sink_control = "tcp://localhost:5559";
  std::string id;              // default host-pid
  std::string device = "auto"; // auto | cpu | cuda | cuda:N
  int threads = 0;             // CPU tasks at once (0: number of cores)
  int streams = 4;             // CUDA streams (tasks at once on a GPU)
  int prefetch = 0;            // tasks held beyond the running ones (0: adaptive)
  int64_t heartbeat_ms = 500;
  int64_t peer_timeout_ms = 3000;  // re-register when the ventilator is silent this long
  int64_t drain_timeout_ms = 30000; // on SIGTERM, wait this long for running tasks
  int64_t max_message_bytes = int64_t{256} << 20;
  std::vector<std::string> plugins;      // plugin libraries to load (--plugin)
  std::vector<std::string> plugin_dirs;  // folders of plugin libraries (--plugin-dir)
  bool allow_exec = false;               // run command tasks (--allow-exec)
  std::string exec_dir;                  // where command tasks get their working folders
  uint64_t max_output_bytes = uint64_t{64} << 20;  // a task's output (--max-output-mb)
  CurveOptions curve;
};

class Worker {
 public:
  // Chooses the device, starts the executor and connects. Throws: SetupError.
  explicit Worker(WorkerOptions options);
  ~Worker();
  // Returns: the exit code (0 after a kill from the sink or a stop signal).
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskfarm::worker
