#include "worker/worker.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <atomic>
#include <thread>
#include <unordered_set>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "common/text.h"
#include "kernels/cuda/gpu_plugin.h"
#include "worker/exec_kernel.h"
#include "worker/executor.h"
#include "worker/result_cache.h"

namespace taskfarm::worker {
namespace {

// Most results per message to the sink, and about this many output bytes (at least one).
constexpr int kMaxResultsPerMessage = 1024;
constexpr size_t kMaxResultBytesPerMessage = size_t{8} << 20;
// Adaptive prefetch: keep about this much queued work per slot, within [1, kMaxExtra] tasks.
constexpr int64_t kPrefetchTargetNs = 2'000'000;
constexpr int64_t kMaxExtraPerSlot = 1024;
// ... and hold at most about this many payload bytes (big inline payloads).
constexpr int64_t kMaxPrefetchBytes = int64_t{64} << 20;
// A sink silent this long (it heartbeats four times a second) is taken as gone: a leaving
// worker does not wait to deliver results to it (their tasks are issued again anyway).
constexpr int64_t kSinkSilentMs = 2000;

struct DeviceChoice {
  int cuda = -1;  // -1: CPU
  std::string description;
};

DeviceChoice choose_device(const std::string& device) {
  if (device == "cpu") return {-1, "cpu"};
  std::string why;
  const auto devices = kernels::gpu::plugin::list_devices(&why);
  // `i` is a position in the list; the CUDA device number is DeviceInfo::index.
  auto pick = [&](int i) {
    const auto& d = devices[static_cast<size_t>(i)];
    return DeviceChoice{d.index, fmt::format("cuda:{} ({})", d.index, d.name)};
  };
  if (device == "auto") {
    if (!devices.empty()) return pick(0);
    log::info("no usable GPU ({}); running kernels on the CPU", why);
    return {-1, "cpu"};
  }
  if (device == "cuda") {
    if (devices.empty()) throw SetupError(fmt::format("--device cuda: no usable GPU ({})", why));
    return pick(0);
  }
  if (device.rfind("cuda:", 0) == 0) {
    const std::string n = device.substr(5);
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 3) {
      throw SetupError(fmt::format("--device {}: expected cuda:N", device));
    }
    const int i = std::stoi(n);
    if (devices.empty()) {
      throw SetupError(fmt::format("--device {}: no usable GPU ({})", device, why));
    }
    if (i >= static_cast<int>(devices.size())) {
      throw SetupError(fmt::format("--device {}: only {} GPU(s) here", device, devices.size()));
    }
    return pick(i);
  }
  throw SetupError(fmt::format("--device {}: expected auto, cpu, cuda or cuda:N", device));
}

}  // namespace

struct Worker::Impl {
  WorkerOptions opt;
  const Clock& clock = SystemClock::instance();
  // What this worker runs: the built-ins, its plugins' kernels, exec when allowed.
  kernels::KernelCatalog catalog = kernels::KernelCatalog::builtins();
  DeviceChoice device;
  v1::WorkerInfo info;
  std::atomic<uint64_t> gpu_bytes{0};
  std::unique_ptr<Executor> executor;
  zmq::context_t ctx{1};
  Curve curve{opt.curve, ctx};  // before the sockets: outlives them
  zmq::socket_t vent{ctx, zmq::socket_type::dealer};
  zmq::socket_t results{ctx, zmq::socket_type::push};
  zmq::socket_t control{ctx, zmq::socket_type::sub};
  // CurveZMQ refusals, logged with their reason instead of a silent wait (after the sockets).
  HandshakeWatch vent_handshakes{ctx, vent, curve.enabled()};
  HandshakeWatch sink_handshakes{ctx, results, curve.enabled()};
  int64_t next_handshake_log_ns = 0;
  RejectCounter rejects{"worker"};

  // Flow control: held = tasks received and not yet reported; outstanding = credit granted
  // and not yet used by the ventilator.
  int64_t held = 0;
  int64_t outstanding = 0;
  int64_t avg_task_bytes = 0;  // moving average of received payload sizes
  bool registered = false;
  uint64_t ventilator_epoch = 0;
  int64_t last_heard_ns = 0;
  int64_t next_hello_ns = 0;
  int64_t waiting_since_ns = 0, next_waiting_log_ns = 0;  // ventilator unreachable
  Results unsent;          // results waiting for the sink's socket
  Results resends;         // results sent before, asked for again (the sink restarted)
  ResultCache sent_cache;  // results sent, to resend when asked
  v1::Envelope outgoing;   // reused for result messages
  const int64_t started_ns = clock.steady_ns();
  int64_t sink_heard_ns = 0;  // the sink's last heartbeat (0: none yet)
  int64_t next_heartbeat_ns = 0;  // when the next heartbeat to the ventilator is due

  std::shared_ptr<ExecRunner> exec_runner;  // with --allow-exec
  std::string exec_dir;                     // ours to remove at exit when we made it

  explicit Impl(WorkerOptions o) : opt(std::move(o)) {
    for (const auto& dir : opt.plugin_dirs) catalog.load_plugin_dir(dir);
    for (const auto& path : opt.plugins) catalog.load_plugin(path);
    if (opt.allow_exec) {
      exec_runner = std::make_shared<ExecRunner>();
      std::string dir = opt.exec_dir;
      if (dir.empty()) {
        dir = (std::filesystem::temp_directory_path() /
               fmt::format("taskfarm-exec-{}", getpid())).string();
        exec_dir = dir;
      }
      catalog.add_native(exec_kernel(exec_runner, dir));
    }
    device = choose_device(opt.device);
    if (device.cuda >= 0) {
      if (const tf_plugin* cuda = kernels::gpu::plugin::builtin_kernels()) {
        catalog.attach_builtin_cuda(*cuda);
      }
    }
    const int slots = device.cuda >= 0 ? opt.streams
                                       : (opt.threads > 0 ? opt.threads
                                                          : static_cast<int>(std::max(
                                                                1u, std::thread::hardware_concurrency())));
    if (opt.id.empty()) opt.id = fmt::format("{}-{}", host_name(), getpid());
    info.set_id(opt.id);
    info.set_host(host_name());
    info.set_device(device.description);
    info.set_slots(static_cast<uint32_t>(slots));
    // Advertised at registration: the ventilator sends only tasks of these kernels.
    for (const auto& def : catalog.all()) {
      if (def.has_cpu() || (device.cuda >= 0 && def.has_cuda())) {
        info.add_kernels(std::string(def.name));
      }
    }

    if (device.cuda >= 0) {
      const int dev = device.cuda;
      executor = std::make_unique<Executor>(
          slots,
          [dev, this]() -> TaskRunner {
            std::shared_ptr<kernels::gpu::StreamRunner> runner =
                kernels::gpu::plugin::create_runner(dev);
            warm_up(*runner);
            return [runner, this](std::string_view kernel, const kernels::TaskInput& in) {
              if (auto why = catalog.validate(kernel, in)) throw kernels::KernelError(*why);
              const kernels::KernelDef& def = *catalog.find(kernel);
              kernels::KernelOutput out;
              // The built-in CUDA kernels return summaries only: a task that wants its output
              // (a mandelbrot band) runs on the CPU; so do kernels without a CUDA side.
              if (def.cuda_builtin && !(in.keep_output && def.outputs)) {
                out = runner->run(kernel, in);
              } else if (def.abi.run_cuda != nullptr && !def.cuda_builtin) {
                out = runner->run_plugin(def, in);
              } else {
                return catalog.run_cpu(kernel, in);
              }
              gpu_bytes.store(runner->device_bytes_in_use(), std::memory_order_relaxed);
              return out;
            };
          },
          opt.max_output_bytes);
    } else {
      executor = std::make_unique<Executor>(
          slots,
          [this]() -> TaskRunner {
            return [this](std::string_view kernel, const kernels::TaskInput& in) {
              return catalog.run_cpu(kernel, in);
            };
          },
          opt.max_output_bytes);
    }

    configure_socket(vent, opt.max_message_bytes);
    vent.set(zmq::sockopt::routing_id, fmt::format("{}-{:08x}", opt.id, random_u64() & 0xffffffff));
    vent.set(zmq::sockopt::immediate, 1);  // never queue Hello/credit for a missing ventilator
    configure_socket(results, opt.max_message_bytes, 5000);  // linger: deliver last results
    // Backpressure: when the sink falls behind, results wait in `unsent` and no credit is
    // granted, instead of piling up in the socket (up to 1024 results per message).
    results.set(zmq::sockopt::sndhwm, 16);
    configure_socket(control, opt.max_message_bytes);
    control.set(zmq::sockopt::subscribe, kTopicCtl);
    curve.make_client(vent);
    curve.make_client(results);
    curve.make_client(control);
    connect_socket(vent, opt.ventilator, "ventilator");
    connect_socket(results, opt.sink_results, "sink results");
    connect_socket(control, opt.sink_control, "sink control");
  }

  // Runs one small task of every built-in CUDA kernel on a new stream before the worker
  // registers: loading the modules, creating cuBLAS's handle and the first launches cost tens
  // of milliseconds, which would otherwise land on the first tasks of a batch.
  static void warm_up(kernels::gpu::StreamRunner& runner) {
    const std::pair<const char*, int64_t> kWarm[] = {{"noop", 0},      {"saxpy", 4096},
                                                     {"reduce", 4096}, {"sgemm", 64},
                                                     {"sort", 4096},   {"mandelbrot", 64},
                                                     {"montecarlo_pi", 4096}};
    for (const auto& [kernel, size] : kWarm) {
      kernels::TaskInput in;
      in.size = size;
      try {
        (void)runner.run(kernel, in);
      } catch (const std::exception& e) {
        log::warn("warming up {} on the GPU: {}", kernel, e.what());
      }
    }
  }

  int64_t window() const {
    const int64_t slots = executor->threads();
    if (opt.prefetch > 0) return slots + opt.prefetch;
    const int64_t avg = executor->average_task_ns();
    int64_t extra_per_slot = 1;
    if (avg > 0) extra_per_slot = std::clamp<int64_t>(kPrefetchTargetNs / avg, 1, kMaxExtraPerSlot);
    int64_t w = slots + slots * extra_per_slot;
    if (avg_task_bytes > 0) w = std::min(w, std::max(slots + 1, kMaxPrefetchBytes / avg_task_bytes));
    return w;
  }

  // Returns: false when the ventilator is not connected (the message was not queued).
  bool send_vent(v1::Envelope& env) {
    try {
      return vent.send(encode(env), zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t& e) {
      if (e.num() == EAGAIN || e.num() == EINTR) return false;
      throw;
    }
  }

  void hello() {
    const int64_t credit = std::max<int64_t>(0, window() - held);
    v1::Envelope env;
    *env.mutable_hello()->mutable_worker() = info;
    env.mutable_hello()->set_credit(static_cast<uint32_t>(credit));
    registered = false;
    if (send_vent(env)) {
      waiting_since_ns = 0;
      outstanding = credit;
      log::debug("hello sent with credit {}", credit);
      next_hello_ns = clock.steady_ns() + ms_to_ns(1000);  // wait for the Welcome
    } else {
      next_hello_ns = clock.steady_ns() + ms_to_ns(50);  // not connected yet: cheap to retry
      const int64_t now = clock.steady_ns();
      if (waiting_since_ns == 0) waiting_since_ns = now;
      if (now - waiting_since_ns >= ms_to_ns(10000) && now >= next_waiting_log_ns) {
        // libzmq reconnects with back-off (100 ms growing to 1 s); say so now and then.
        log::info("waiting for the ventilator at {} ({:.0f} s so far)", opt.ventilator,
                  static_cast<double>(now - waiting_since_ns) * 1e-9);
        next_waiting_log_ns = now + ms_to_ns(30000);
      }
    }
  }

  // Logs why a server refuses the handshake, at once and then every 30 s while it lasts.
  void check_handshakes(int64_t now) {
    const std::string& vent_why = vent_handshakes.failure();
    const std::string& sink_why = sink_handshakes.failure();
    if ((vent_why.empty() && sink_why.empty()) || now < next_handshake_log_ns) return;
    if (!vent_why.empty()) log::warn("cannot register with the ventilator at {}: {}", opt.ventilator, vent_why);
    if (!sink_why.empty()) log::warn("cannot send results to the sink at {}: {}", opt.sink_results, sink_why);
    next_handshake_log_ns = now + ms_to_ns(30000);
  }

  void grant_credit() {
    if (!registered) return;
    const int64_t give = window() - held - outstanding;
    if (give <= 0) return;
    v1::Envelope env;
    env.mutable_credit()->set_credit(static_cast<uint32_t>(give));
    // How long tasks took: the ventilator's scheduler plans with it.
    for (auto& t : executor->take_timings()) *env.mutable_credit()->add_timings() = std::move(t);
    if (send_vent(env)) {
      outstanding += give;
    } else {
      registered = false;  // say Hello again once the ventilator is back
    }
  }

  void on_tasks(SharedBatch batch) {
    last_heard_ns = clock.steady_ns();
    const auto& tasks = batch->envelope->tasks().tasks();
    const int n = tasks.size();
    outstanding = std::max<int64_t>(0, outstanding - n);
    for (const auto& t : tasks) {
      const auto b = static_cast<int64_t>(t.payload().size());
      avg_task_bytes = avg_task_bytes == 0 ? b : (avg_task_bytes * 7 + b) / 8;
    }
    held += n;
    executor->submit_all(std::move(batch));
  }

  // Returns: true when told to exit.
  bool on_ventilator(v1::Envelope& env) {
    last_heard_ns = clock.steady_ns();
    switch (env.body_case()) {
      case v1::Envelope::kTasks:  // decoded by drain_socket onto an arena, see on_tasks
        break;
      case v1::Envelope::kWelcome:
        registered = true;
        if (ventilator_epoch != 0 && env.welcome().epoch() != ventilator_epoch) {
          // A restarted ventilator knows nothing of the tasks queued here: it issues them again.
          const auto dropped = executor->take_unstarted();
          held -= static_cast<int64_t>(dropped.size());
          if (!dropped.empty()) {
            log::info("dropped {} queued tasks of the ventilator's previous life", dropped.size());
          }
        }
        ventilator_epoch = env.welcome().epoch();
        if (farm_id() == 0 && !name_problem(env.welcome().farm(), 255, true)) {
          set_farm(env.welcome().farm());
          log::info("joined farm '{}'", printable(farm_name()));
        }
        if (const auto& id = env.welcome().worker_id();
            !id.empty() && id != info.id() && !name_problem(id, kMaxWorkerIdBytes, false)) {
          log::warn("another worker of this farm has the id '{}': this one is '{}' in reports "
                    "(give each worker its own --id)",
                    printable(info.id()), printable(id));
          info.set_id(id);
        }
        // The ventilator's --worker-timeout rules: beat often enough for it.
        if (env.welcome().heartbeat_ms() > 0) {
          opt.heartbeat_ms = std::min<int64_t>(opt.heartbeat_ms, env.welcome().heartbeat_ms());
          // The beat already planned at the old, longer interval would come too late.
          next_heartbeat_ns =
              std::min(next_heartbeat_ns, clock.steady_ns() + ms_to_ns(opt.heartbeat_ms));
        }
        log::info("registered with the ventilator at {} ({} slots, {})", opt.ventilator,
                  info.slots(), info.device());
        grant_credit();
        break;
      case v1::Envelope::kResendResults:
        on_resend(env.resend_results());
        break;
      case v1::Envelope::kHeartbeat:
        if (registered && env.heartbeat().epoch() != ventilator_epoch) {
          log::info("the ventilator restarted; registering again");
          hello();
        }
        break;
      case v1::Envelope::kReconnect:
        // Answers to heartbeats queued during a partition arrive in bursts: one Hello will do.
        if (registered) {
          log::info("the ventilator does not know this worker; registering again");
          hello();
        }
        break;
      case v1::Envelope::kKill:
        log::info("the batch is over; exiting");
        return true;
      case v1::Envelope::kCancelTasks: {
        // Copies of tasks another worker finished first: drop them, or stop them.
        const auto& c = env.cancel_tasks();
        const std::vector<uint64_t> ids(c.task_ids().begin(), c.task_ids().end());
        held -= static_cast<int64_t>(executor->cancel_tasks(c.job_id(), ids));
        grant_credit();
        break;
      }
      case v1::Envelope::kCancelJob: {
        const uint64_t job = env.cancel_job().job_id();
        const size_t n = executor->drop_job(job);
        held -= static_cast<int64_t>(n);
        const size_t running = executor->cancel_running(job);
        if (n + running > 0) {
          log::info("job {:016x} cancelled: dropped {} queued tasks, stopping {} running", job, n,
                    running);
        }
        grant_credit();
        break;
      }
      default:
        rejects.reject(fmt::format("unexpected '{}' message from the ventilator", body_name(env)));
    }
    return false;
  }

  // The sink restarted and may have lost results this worker sent: send again those it still
  // has, say which it has not (neither queued, running, nor kept).
  void on_resend(const v1::ResendResults& rr) {
    const uint64_t job = rr.job_id();
    std::unordered_set<uint64_t> wanted(rr.task_ids().begin(), rr.task_ids().end());
    const size_t asked = wanted.size();
    executor->erase_pending(job, wanted);  // their results are still to come
    executor->collect(unsent);             // finished since: sent with the others
    for (const auto& r : unsent) {
      if (r.job_id() == job) wanted.erase(r.task_id());
    }
    const size_t found = sent_cache.take(job, wanted, resends);
    if (!wanted.empty()) {
      v1::Envelope env;
      env.mutable_results_not_held()->set_job_id(job);
      env.mutable_results_not_held()->mutable_task_ids()->Add(wanted.begin(), wanted.end());
      (void)send_vent(env);
    }
    log::info("asked for {} results of job {:016x}: resending {}, {} still to come, {} no "
              "longer here",
              asked, job, found, asked - found - wanted.size(), wanted.size());
  }

  // Returns: whether the sink was heard from lately (a worker that just started gives it time).
  bool sink_reachable() const {
    const int64_t since = sink_heard_ns != 0 ? sink_heard_ns : started_ns;
    return clock.steady_ns() - since < ms_to_ns(kSinkSilentMs);
  }

  // Returns: true when told to exit.
  bool on_control(const v1::Envelope& env) {
    if (env.body_case() == v1::Envelope::kSinkHeartbeat) {
      sink_heard_ns = clock.steady_ns();
      return false;
    }
    if (env.body_case() == v1::Envelope::kKill) {
      log::info("the sink says the batch is over; exiting");
      return true;
    }
    if (env.body_case() == v1::Envelope::kBatchEnd) {
      log::debug("batch {:016x} ended", env.batch_end().job_id());
    }
    return false;
  }

  // Tasks stopped on request: dropped when their job was cancelled, handed back to the
  // ventilator when this worker is leaving (they were not the tasks' fault).
  void hand_back_aborted(bool leaving) {
    const auto aborted = executor->take_aborted();
    if (aborted.empty()) return;
    held -= static_cast<int64_t>(aborted.size());
    if (leaving) {
      v1::Envelope bye;
      for (const auto& ref : aborted) *bye.mutable_goodbye()->add_returned() = ref;
      (void)send_vent(bye);
      log::info("returned {} stopped tasks", aborted.size());
    }
  }

  // Sends the results of `queue` in messages of up to kMaxResultsPerMessage, keeping a copy
  // of each message in the cache when `keep`. Returns: results sent; the rest stay in `queue`
  // (the sink's queue is full, or it is missing).
  int64_t send_from(Results& queue, bool keep) {
    info.set_gpu_mem_bytes(gpu_bytes.load(std::memory_order_relaxed));
    auto* batch = outgoing.mutable_results();
    *batch->mutable_worker() = info;
    auto* rs = batch->mutable_results();  // empty; its cleared elements are reused
    int64_t sent = 0;
    while (!queue.empty()) {
      int n = 0;
      size_t bytes = 0;
      while (n < std::min(kMaxResultsPerMessage, queue.size()) &&
             (n == 0 || bytes + queue.Get(n).output().size() <= kMaxResultBytesPerMessage)) {
        bytes += queue.Get(n++).output().size();
      }
      if (n == queue.size()) {
        rs->Swap(&queue);  // O(1)
      } else {
        for (int i = 0; i < n; ++i) rs->Add()->Swap(queue.Mutable(i));
        queue.DeleteSubrange(0, n);
      }
      zmq::message_t message = encode(outgoing);
      std::string copy;
      if (keep) copy.assign(static_cast<const char*>(message.data()), message.size());
      bool ok = false;
      try {
        ok = results.send(message, zmq::send_flags::dontwait).has_value();
      } catch (const zmq::error_t& e) {
        if (e.num() != EAGAIN && e.num() != EINTR) throw;
      }
      if (!ok) {  // sink queue full or sink missing: keep them, try again on POLLOUT
        for (auto& r : *rs) queue.Add()->Swap(&r);
        rs->Clear();
        break;
      }
      if (keep) sent_cache.add(std::move(copy), static_cast<uint64_t>(n));
      sent += n;
      rs->Clear();  // keeps the objects for the next results
    }
    return sent;
  }

  void send_results() {
    executor->collect(unsent);
    hand_back_aborted(stop_requested());
    if (!unsent.empty()) {
      held -= send_from(unsent, /*keep=*/true);
      grant_credit();
    }
    if (!resends.empty()) (void)send_from(resends, /*keep=*/false);  // still in the cache
  }

  void drain_socket(zmq::socket_t& s, bool topic_frame, bool& kill) {
    zmq::message_t first, frame;
    for (int i = 0; i < 1000; ++i) {
      if (!s.recv(first, zmq::recv_flags::dontwait)) return;
      zmq::message_t* body = &first;
      if (topic_frame) {
        if (!first.more()) continue;
        (void)s.recv(frame, zmq::recv_flags::none);
        body = &frame;
      }
      if (body->more()) {
        while (body->more()) (void)s.recv(*body, zmq::recv_flags::none);
        rejects.reject("multipart message");
        continue;
      }
      // Decoded once onto an arena; task batches are queued without copying their tasks.
      SharedBatch batch = make_batch();
      if (auto err = decode_into(body->data(), body->size(), *batch->envelope)) {
        rejects.reject(*err);
        continue;
      }
      if (topic_frame) {
        kill = kill || on_control(*batch->envelope);
      } else if (batch->envelope->body_case() == v1::Envelope::kTasks) {
        on_tasks(std::move(batch));
      } else {
        kill = on_ventilator(*batch->envelope) || kill;
      }
    }
  }

  // Leaves without delivering results: the sink is gone, and the tasks of those results are
  // issued again when the ventilator sees this worker gone (their leases are open).
  void abandon(const char* doing) {
    const size_t running = executor->cancel_running(0);
    const double silent =
        static_cast<double>(clock.steady_ns() - (sink_heard_ns ? sink_heard_ns : started_ns)) * 1e-9;
    log::warn("{}: the sink is unreachable (silent for {:.1f} s); leaving {} results undelivered "
              "and stopping {} running tasks (they are issued again)",
              doing, silent, unsent.size(), running);
    results.set(zmq::sockopt::linger, 0);
  }

  // Graceful leave: hand back unstarted tasks, finish the running ones.
  void leave() {
    auto unstarted = executor->take_unstarted();
    v1::Envelope bye;
    for (const auto& t : unstarted) {
      auto* ref = bye.mutable_goodbye()->add_returned();
      ref->set_job_id(t.job_id());
      ref->set_task_id(t.task_id());
    }
    bye.mutable_goodbye();
    (void)send_vent(bye);
    held -= static_cast<int64_t>(unstarted.size());
    // Command tasks are killed (their whole process group) and handed back; in-process
    // kernels finish within the drain timeout.
    const size_t killed = executor->cancel_running(0, /*commands_only=*/true);
    if (!sink_reachable()) {
      abandon("stopping");
      return;
    }
    log::info("stopping: returned {} unstarted tasks, stopping {} commands, finishing {} running",
              unstarted.size(), killed, executor->pending() - killed);
    const int64_t deadline = clock.steady_ns() + ms_to_ns(opt.drain_timeout_ms);
    const int stops = stop_count();
    while ((executor->pending() > 0 || !unsent.empty()) && clock.steady_ns() < deadline &&
           stop_count() == stops) {
      zmq::pollitem_t items[] = {{nullptr, executor->notify_fd(), ZMQ_POLLIN, 0},
                                 {control.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(50));
      } catch (const zmq::error_t&) {
      }
      if (items[1].revents & ZMQ_POLLIN) {
        bool ignored = false;
        drain_socket(control, true, ignored);  // the sink's heartbeats
      }
      if (!sink_reachable()) {
        abandon("draining");
        return;
      }
      send_results();
      v1::Envelope hb;  // keep the lease alive while draining
      hb.mutable_heartbeat();
      (void)send_vent(hb);
    }
  }

  int run() {
    log::info("worker {} ({}, {} slots): ventilator {}, sink {}", info.id(), info.device(),
              info.slots(), opt.ventilator, opt.sink_results);
    bool kill = false;
    hello();
    while (!kill && !stop_requested()) {
      const int64_t now = clock.steady_ns();
      check_handshakes(now);
      if (!registered && now >= next_hello_ns) hello();
      if (registered && now - last_heard_ns > ms_to_ns(opt.peer_timeout_ms)) {
        log::warn("no word from the ventilator for {:.1f} s; registering again",
                  static_cast<double>(now - last_heard_ns) * 1e-9);
        hello();
      }
      if (now >= next_heartbeat_ns) {
        v1::Envelope hb;
        hb.mutable_heartbeat();
        if (registered) {
          for (auto& t : executor->take_timings()) *hb.mutable_heartbeat()->add_timings() = std::move(t);
        }
        if (registered && !send_vent(hb)) registered = false;
        next_heartbeat_ns = now + ms_to_ns(opt.heartbeat_ms);
      }
      zmq::pollitem_t items[] = {{vent.handle(), 0, ZMQ_POLLIN, 0},
                                 {control.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, executor->notify_fd(), ZMQ_POLLIN, 0},
                                 {results.handle(), 0, ZMQ_POLLOUT, 0}};
      // Wait for room on the results socket only while results wait for it.
      const bool waiting = !unsent.empty() || !resends.empty();
      try {
        zmq::poll(items, waiting ? 4 : 3,
                  std::chrono::milliseconds(!waiting && registered ? 100 : 10));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) drain_socket(vent, false, kill);
      if (items[1].revents & ZMQ_POLLIN) drain_socket(control, true, kill);
      if ((items[2].revents & ZMQ_POLLIN) || waiting) send_results();
    }
    if (stop_requested()) leave();
    if (!exec_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(exec_dir, ec);
    }
    return kExitOk;
  }
};

Worker::Worker(WorkerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Worker::~Worker() = default;
int Worker::run() { return impl_->run(); }

}  // namespace taskfarm::worker
