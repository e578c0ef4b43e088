// bare_pipeline: the baseline taskfarm is measured against (issue #8). A ventilator PUSHes raw
// messages of a given size to N relay processes (PULL -> PUSH) that forward them to one sink
// (PULL), over loopback TCP, with no serialization and no flow control beyond ZeroMQ's own.
// Every role is a separate process with its own context, like the real farm.
//
//   bare_pipeline [--messages N] [--size BYTES] [--relays N] [--hwm N] [--zero-copy]
//
// Prints one JSON line: messages, size, relays, elapsed_s (first send -> last receive),
// msgs_per_s, mb_per_s (payload bytes, 1 MB = 1e6 bytes, as the sink's report), cpu_s (user +
// system seconds of all the processes) and the max resident set of every process (rss_kb); both
// from wait4.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  uint64_t messages = 1'000'000;
  size_t size = 48;  // about one serialized no-op task (protobuf Task: ids, kernel name, times)
  int relays = 2;
  int hwm = 1000;    // ZeroMQ's default
  bool zero_copy = false;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bare_pipeline: %s: %s\n", what, zmq_strerror(zmq_errno()));
  _exit(1);
}

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // shared by every process on the machine
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(1);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

bool read_all(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void* make_socket(void* ctx, int type, int hwm) {
  void* s = zmq_socket(ctx, type);
  if (!s) die("zmq_socket");
  const int linger = -1;  // the ventilator must deliver everything before it exits
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
  return s;
}

// Binds `s` to a free loopback port. Returns: the endpoint.
std::string bind_any(void* s) {
  if (zmq_bind(s, "tcp://127.0.0.1:*") != 0) die("zmq_bind");
  char ep[256];
  size_t len = sizeof ep;
  zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
  return ep;
}

void send_string(int fd, const std::string& s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  write_all(fd, &n, sizeof n);
  write_all(fd, s.data(), n);
}

std::string read_string(int fd) {
  uint32_t n = 0;
  if (!read_all(fd, &n, sizeof n)) return {};
  std::string s(n, '\0');
  if (!read_all(fd, s.data(), n)) return {};
  return s;
}

// ---------------------------------------------------------------- roles (child processes)

struct SinkResult {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
};

[[noreturn]] void run_sink(const Options& opt, int out_fd) {
  void* ctx = zmq_ctx_new();
  void* pull = make_socket(ctx, ZMQ_PULL, opt.hwm);
  send_string(out_fd, bind_any(pull));
  SinkResult res;
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  while (res.messages < opt.messages) {
    const int n = zmq_msg_recv(&msg, pull, 0);
    if (n < 0) {
      if (zmq_errno() == EINTR) continue;
      die("sink recv");
    }
    if (res.messages == 0) res.first_ns = now_ns();
    ++res.messages;
    res.bytes += static_cast<uint64_t>(n);
  }
  res.last_ns = now_ns();
  zmq_msg_close(&msg);
  write_all(out_fd, &res, sizeof res);
  zmq_close(pull);
  zmq_ctx_term(ctx);
  _exit(0);
}

[[noreturn]] void run_relay(const Options& opt, const std::string& from, const std::string& to) {
  void* ctx = zmq_ctx_new();
  void* pull = make_socket(ctx, ZMQ_PULL, opt.hwm);
  void* push = make_socket(ctx, ZMQ_PUSH, opt.hwm);
  if (zmq_connect(pull, from.c_str()) != 0) die("relay connect (ventilator)");
  if (zmq_connect(push, to.c_str()) != 0) die("relay connect (sink)");
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  for (;;) {  // forwards until SIGTERM; the message is moved, never copied
    if (zmq_msg_recv(&msg, pull, 0) < 0) {
      if (zmq_errno() == EINTR) continue;
      die("relay recv");
    }
    while (zmq_msg_send(&msg, push, 0) < 0) {
      if (zmq_errno() != EINTR) die("relay send");
    }
  }
}

[[noreturn]] void run_ventilator(const Options& opt, int out_fd) {
  void* ctx = zmq_ctx_new();
  void* push = make_socket(ctx, ZMQ_PUSH, opt.hwm);
  // Wait until every relay has completed its handshake, or the first one would get everything
  // (the slow joiner).
  if (zmq_socket_monitor(push, "inproc://monitor", ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
    die("zmq_socket_monitor");
  }
  void* mon = zmq_socket(ctx, ZMQ_PAIR);
  if (zmq_connect(mon, "inproc://monitor") != 0) die("monitor connect");
  send_string(out_fd, bind_any(push));
  for (int joined = 0; joined < opt.relays;) {
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, 0) < 0) {
      if (zmq_errno() == EINTR) continue;
      die("monitor recv");
    }
    uint16_t event = 0;
    std::memcpy(&event, zmq_msg_data(&ev), sizeof event);
    const bool more = zmq_msg_more(&ev);
    zmq_msg_close(&ev);
    if (more) {  // second frame: the peer's address
      zmq_msg_init(&ev);
      zmq_msg_recv(&ev, mon, 0);
      zmq_msg_close(&ev);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++joined;
  }
  zmq_socket_monitor(push, nullptr, 0);
  zmq_close(mon);

  std::vector<char> buffer(opt.size, 'x');
  const int64_t t0 = now_ns();
  for (uint64_t i = 0; i < opt.messages; ++i) {
    zmq_msg_t msg;
    if (opt.zero_copy) {
      zmq_msg_init_data(&msg, buffer.data(), buffer.size(), nullptr, nullptr);
    } else {  // what a producer normally does: a fresh message with its own bytes
      zmq_msg_init_size(&msg, buffer.size());
      if (!buffer.empty()) std::memcpy(zmq_msg_data(&msg), buffer.data(), buffer.size());
    }
    while (zmq_msg_send(&msg, push, 0) < 0) {
      if (zmq_errno() != EINTR) die("ventilator send");
    }
  }
  write_all(out_fd, &t0, sizeof t0);
  zmq_close(push);  // linger -1: returns once everything is handed to the relays
  zmq_ctx_term(ctx);
  _exit(0);
}

// ---------------------------------------------------------------- parent

void usage() {
  std::fprintf(stderr,
               "usage: bare_pipeline [--messages N] [--size BYTES] [--relays N] [--hwm N] "
               "[--zero-copy]\n"
               "Ventilator PUSH -> N relay processes PULL->PUSH -> sink PULL over loopback TCP,\n"
               "raw messages, no serialization. Prints one JSON line.\n");
}

bool parse(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--zero-copy") {
      opt.zero_copy = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else if ((a == "--messages" || a == "--size" || a == "--relays" || a == "--hwm") &&
               (v = value())) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v, &end, 10);
      if (*v == '\0' || *end != '\0') return false;
      if (a == "--messages") opt.messages = n;
      if (a == "--size") opt.size = static_cast<size_t>(n);
      if (a == "--relays") opt.relays = static_cast<int>(n);
      if (a == "--hwm") opt.hwm = static_cast<int>(n);
    } else {
      return false;
    }
  }
  return opt.messages > 0 && opt.relays > 0 && opt.relays <= 64 && opt.hwm >= 0;
}

struct Child {
  pid_t pid = -1;
  long max_rss_kb = 0;
  double cpu_s = 0;  // user + system
  int status = 0;
};

void reap(Child& c) {
  rusage ru{};
  while (wait4(c.pid, &c.status, 0, &ru) < 0 && errno == EINTR) {
  }
  c.max_rss_kb = ru.ru_maxrss;  // kilobytes on Linux
  c.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) {
    usage();
    return 1;
  }
  int sink_pipe[2], vent_pipe[2];
  if (pipe(sink_pipe) != 0 || pipe(vent_pipe) != 0) return 1;

  // No ZeroMQ context exists in this process before the forks.
  Child sink, vent;
  std::vector<Child> relays(static_cast<size_t>(opt.relays));
  if ((sink.pid = fork()) == 0) run_sink(opt, sink_pipe[1]);
  const std::string sink_ep = read_string(sink_pipe[0]);
  if ((vent.pid = fork()) == 0) run_ventilator(opt, vent_pipe[1]);
  const std::string vent_ep = read_string(vent_pipe[0]);
  if (sink_ep.empty() || vent_ep.empty()) {
    std::fprintf(stderr, "bare_pipeline: a child failed to start\n");
    return 1;
  }
  for (auto& r : relays) {
    if ((r.pid = fork()) == 0) run_relay(opt, vent_ep, sink_ep);
  }

  SinkResult res;
  int64_t t0 = 0;
  const bool got_t0 = read_all(vent_pipe[0], &t0, sizeof t0);
  const bool got_res = read_all(sink_pipe[0], &res, sizeof res);
  reap(sink);
  reap(vent);
  for (auto& r : relays) kill(r.pid, SIGTERM);
  for (auto& r : relays) reap(r);
  if (!got_t0 || !got_res || res.messages != opt.messages) {
    std::fprintf(stderr, "bare_pipeline: incomplete run (%llu of %llu messages)\n",
                 static_cast<unsigned long long>(res.messages),
                 static_cast<unsigned long long>(opt.messages));
    return 1;
  }

  const double elapsed = static_cast<double>(res.last_ns - t0) * 1e-9;
  std::string relay_rss;
  double cpu = sink.cpu_s + vent.cpu_s;
  for (const auto& r : relays) {
    relay_rss += (relay_rss.empty() ? "" : ",") + std::to_string(r.max_rss_kb);
    cpu += r.cpu_s;
  }
  std::printf(
      "{\"messages\":%llu,\"size\":%zu,\"relays\":%d,\"hwm\":%d,\"zero_copy\":%s,"
      "\"elapsed_s\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.1f,\"cpu_s\":%.3f,"
      "\"rss_kb\":{\"ventilator\":%ld,\"sink\":%ld,\"relays\":[%s]}}\n",
      static_cast<unsigned long long>(res.messages), opt.size, opt.relays, opt.hwm,
      opt.zero_copy ? "true" : "false", elapsed, static_cast<double>(res.messages) / elapsed,
      static_cast<double>(res.bytes) / elapsed * 1e-6, cpu, vent.max_rss_kb, sink.max_rss_kb,
      relay_rss.c_str());
  return 0;
}
