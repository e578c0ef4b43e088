// netdelay: holds every packet of a netfilter queue for a fixed time before letting it go, so a
// test can give a link a real per-packet delay on kernels without sch_netem. Packets reach the
// queue through an iptables NFQUEUE rule (tests/multihost_test.cpp); it runs in the network
// namespace of those rules until SIGINT/SIGTERM.
//
// Usage: netdelay QUEUE_NUM DELAY_MS
// Prints "ready" on stdout once the queue is bound; exits 1 with one line on stderr when it
// cannot be (not root, no NFQUEUE support).
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

namespace {

using Clock = std::chrono::steady_clock;

struct Held {
  uint32_t id;
  Clock::time_point release;
};

// One thread: the callback runs inside nfq_handle_packet in the loop below.
std::deque<Held> g_held;  // in arrival order, which is release order (one fixed delay)
std::chrono::milliseconds g_delay{0};
volatile sig_atomic_t g_stop = 0;

extern "C" void on_signal(int) { g_stop = 1; }

int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* nfa, void*) {
  const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  if (ph) g_held.push_back({ntohl(ph->packet_id), Clock::now() + g_delay});
  return 0;
}

int fail(const char* what) {
  std::fprintf(stderr, "netdelay: %s: %s\n", what, std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: netdelay QUEUE_NUM DELAY_MS\n");
    return 1;
  }
  const int queue = std::atoi(argv[1]);
  g_delay = std::chrono::milliseconds(std::atoi(argv[2]));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  nfq_handle* h = nfq_open();
  if (!h) return fail("cannot open a netfilter queue handle");
  nfq_q_handle* qh = nfq_create_queue(h, static_cast<uint16_t>(queue), &on_packet, nullptr);
  if (!qh) return fail("cannot bind the netfilter queue");
  // Metadata only: the verdict needs the packet id, not its bytes.
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) return fail("cannot set the queue's copy mode");
  nfq_set_queue_maxlen(qh, 65536);
  const int fd = nfq_fd(h);
  const int rcvbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  std::printf("ready\n");
  std::fflush(stdout);

  alignas(16) static char buf[65536];
  while (!g_stop) {
    int timeout_ms = -1;
    if (!g_held.empty()) {
      const auto wait =
          std::chrono::ceil<std::chrono::milliseconds>(g_held.front().release - Clock::now());
      timeout_ms = static_cast<int>(std::max<long>(0, wait.count()));
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) > 0 && (p.revents & POLLIN)) {
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) nfq_handle_packet(h, buf, static_cast<int>(n));
      // ENOBUFS: the kernel dropped queue messages; those packets are lost, as on a full link.
    }
    const auto now = Clock::now();
    while (!g_held.empty() && g_held.front().release <= now) {
      nfq_set_verdict(qh, g_held.front().id, NF_ACCEPT, 0, nullptr);
      g_held.pop_front();
    }
  }
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
