#include "common/net.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdlib>
#include <random>

#include "common/errors.h"

namespace taskfarm {
namespace {

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

void check_port(const std::string& spec, const std::string& port) {
  if (!all_digits(port) || port.size() > 5 || std::stoi(port) > 65535) {
    throw SetupError(fmt::format("invalid port in '{}'", spec));
  }
}

}  // namespace

int default_port(int standard) {
  const char* env = std::getenv("TASKFARM_PORT_BASE");
  if (env == nullptr || *env == '\0') return standard;
  const std::string base = env;
  const int highest = 8080 - 5557;  // the HTTP port is the furthest from the base
  const int value = all_digits(base) && base.size() <= 5 ? std::stoi(base) : -1;
  if (value < 1024 || value + highest > 65535) {
    throw SetupError(fmt::format("TASKFARM_PORT_BASE='{}' is not a port from 1024 to {}", base,
                                 65535 - highest));
  }
  return standard + value - 5557;
}

std::string connect_endpoint(const std::string& spec, int default_port) {
  if (spec.empty()) throw SetupError("empty endpoint");
  if (spec.find("://") != std::string::npos) return spec;
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) {
    return fmt::format("tcp://{}:{}", spec, taskfarm::default_port(default_port));
  }
  if (colon == 0) throw SetupError(fmt::format("missing host in '{}'", spec));
  check_port(spec, spec.substr(colon + 1));
  return "tcp://" + spec;
}

std::string bind_endpoint(const std::string& spec, int default_port) {
  if (spec.empty()) return fmt::format("tcp://*:{}", taskfarm::default_port(default_port));
  if (spec.find("://") != std::string::npos) return spec;
  if (all_digits(spec)) {
    check_port(spec, spec);
    return "tcp://*:" + spec;
  }
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) {
    return fmt::format("tcp://{}:{}", spec, taskfarm::default_port(default_port));
  }
  check_port(spec, spec.substr(colon + 1));
  return "tcp://" + spec;
}

void configure_socket(zmq::socket_t& socket, int64_t max_message_bytes, int linger_ms) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  // A sink or ventilator restart is expected (job service): cap the back-off at a second rather
  // than libzmq's usual seconds, so reconnecting takes at most about that long.
  static const int reconnect_max_ms = [] {
    const char* env = std::getenv("TASKFARM_RECONNECT_MAX_MS");
    const int v = env ? std::atoi(env) : 0;
    return v > 0 ? v : kReconnectMaxMs;
  }();
  socket.set(zmq::sockopt::reconnect_ivl_max, reconnect_max_ms);
  socket.set(zmq::sockopt::tcp_keepalive, 1);
}

std::string bind_socket(zmq::socket_t& socket, const std::string& endpoint, const char* what) {
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    if (e.num() == EADDRINUSE) {
      throw SetupError(fmt::format("cannot bind {} socket to {}: address already in use (another "
                                   "farm on this host? give all of this farm's programs "
                                   "TASKFARM_PORT_BASE=6557, say, or choose ports with --bind)",
                                   what, endpoint));
    }
    throw SetupError(fmt::format("cannot bind {} socket to {}: {}", what, endpoint, e.what()));
  }
  return socket.get(zmq::sockopt::last_endpoint);
}

void connect_socket(zmq::socket_t& socket, const std::string& endpoint, const char* what) {
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw SetupError(fmt::format("cannot connect {} socket to {}: {}", what, endpoint, e.what()));
  }
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

uint64_t random_u64() {
  static thread_local std::mt19937_64 gen{std::random_device{}() ^
                                          (static_cast<uint64_t>(getpid()) << 32)};
  return gen();
}

bool try_send(zmq::socket_t& socket, zmq::message_t& message) {
  try {
    return socket.send(message, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() == EAGAIN || e.num() == EHOSTUNREACH || e.num() == EINTR) return false;
    throw;
  }
}

bool try_send_to(zmq::socket_t& router, std::string_view routing_id, zmq::message_t& message) {
  try {
    if (!router.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return false;
    }
    // The routing frame is queued: the body goes with it (ZeroMQ queues whole messages).
    (void)router.send(message, zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() == EAGAIN || e.num() == EHOSTUNREACH || e.num() == EINTR) return false;
    throw;
  }
}

}  // namespace taskfarm
