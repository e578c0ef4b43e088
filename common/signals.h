// SIGINT/SIGTERM handling: the handler only records the signal; event loops poll with short
// timeouts (and see EINTR) and check stop_requested().
#pragma once

namespace taskfarm {

// Installs handlers for SIGINT and SIGTERM (and ignores SIGPIPE).
void install_stop_handlers();
// Returns: whether a stop signal arrived.
bool stop_requested();
// Returns: how many stop signals arrived (a second one means "stop now, do not drain").
int stop_count();
// For tests and for components that want to stop their own loop.
void request_stop();

}  // namespace taskfarm
