#include "common/signals.h"

#include <csignal>

namespace taskfarm {
namespace {
volatile std::sig_atomic_t g_stops = 0;
extern "C" void on_stop_signal(int) { g_stops = g_stops + 1; }
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR so loops notice at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return g_stops > 0; }
int stop_count() { return g_stops; }
void request_stop() { g_stops = g_stops + 1; }

}  // namespace taskfarm
