// Endpoint parsing and socket set-up shared by the three roles.
#pragma once

#include <zmq.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace taskfarm {

// Returns: the port a program uses for `standard` (5557 ... 5561, 8080) when none is given:
// with TASKFARM_PORT_BASE=B in the environment, all of them move by B - 5557 (6557 gives 6557
// ... 6561 and 9080), so a second farm on the same hosts takes other ports with one variable.
// Throws: SetupError when TASKFARM_PORT_BASE is not a port that leaves room for the others.
int default_port(int standard);

// Returns: an endpoint to connect to. "host" -> tcp://host:default_port, "host:port" ->
// tcp://host:port, anything with "://" (tcp://, ipc://, inproc://) unchanged.
// Throws: SetupError for an empty or malformed value.
std::string connect_endpoint(const std::string& spec, int default_port);

// Returns: an endpoint to bind. "" -> tcp://*:default_port, "PORT" -> tcp://*:PORT,
// "host:port" -> tcp://host:port, full endpoints unchanged (tcp://127.0.0.1:0 picks a free port).
std::string bind_endpoint(const std::string& spec, int default_port);

// Applies the options every taskfarm socket uses: no linger beyond `linger_ms`, a maximum
// message size, reconnect back-off (100 ms doubling up to kReconnectMaxMs) so a missing peer
// never spins the CPU and a restarted one is found again within about a second.
// TASKFARM_RECONNECT_MAX_MS overrides it, for bench/reconnect.sh's baseline only.
inline constexpr int kReconnectMaxMs = 1000;
void configure_socket(zmq::socket_t& socket, int64_t max_message_bytes, int linger_ms = 0);

// Binds `socket` and returns the actual endpoint (the chosen port for ":0"/":*").
// Throws: SetupError naming the endpoint when the address is in use or invalid.
std::string bind_socket(zmq::socket_t& socket, const std::string& endpoint, const char* what);

// Connects `socket`. Throws: SetupError for an invalid endpoint.
void connect_socket(zmq::socket_t& socket, const std::string& endpoint, const char* what);

// Returns: this machine's host name.
std::string host_name();

// Returns: a random 64-bit number (job ids, epochs, routing-id suffixes); never shared between
// processes that start at the same moment (seeded with the pid).
uint64_t random_u64();

// Sends one message without blocking; on a ROUTER, `routing_id` names the peer first.
// Returns: false when the peer cannot take it now (EAGAIN: queue full or not connected;
// EHOSTUNREACH: unknown peer on a ROUTER with router_mandatory; EINTR); `message` is then left
// as it was, to send later. Throws: zmq::error_t for anything else.
bool try_send(zmq::socket_t& socket, zmq::message_t& message);
bool try_send_to(zmq::socket_t& router, std::string_view routing_id, zmq::message_t& message);
inline bool try_send(zmq::socket_t& socket, zmq::message_t&& message) {
  return try_send(socket, message);
}
inline bool try_send_to(zmq::socket_t& router, std::string_view routing_id,
                        zmq::message_t&& message) {
  return try_send_to(router, routing_id, message);
}

// How the messages of a socket are framed: [body], [routing id][body] (ROUTER) or
// [topic][body] (SUB).
enum class Framing { kBody, kRoutingId, kTopic };

// Reads up to `max` queued messages without blocking. Calls handle(prefix, body) for every
// well-formed message (`prefix` is the routing id or topic; empty for kBody) and counts the
// others in `rejects` (missing prefix, extra frames). Returns: messages read.
template <typename Handler>
int drain_socket(zmq::socket_t& socket, Framing framing, RejectCounter& rejects, Handler&& handle,
                 int max = 1000) {
  zmq::message_t prefix, body;
  int n = 0;
  for (; n < max; ++n) {
    try {
      if (!socket.recv(framing == Framing::kBody ? body : prefix, zmq::recv_flags::dontwait)) {
        break;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) break;
      throw;
    }
    if (framing != Framing::kBody) {
      if (!prefix.more()) {
        rejects.reject(framing == Framing::kTopic ? "message without a topic"
                                                  : "frame without routing id",
                       peer_of(prefix));
        continue;
      }
      (void)socket.recv(body, zmq::recv_flags::none);  // the rest of a message is there at once
    }
    if (body.more()) {
      while (body.more()) (void)socket.recv(body, zmq::recv_flags::none);
      rejects.reject("multipart message", peer_of(body, prefix.to_string_view()));
      continue;
    }
    handle(framing == Framing::kBody ? std::string_view{} : prefix.to_string_view(), body);
  }
  return n;
}

}  // namespace taskfarm
