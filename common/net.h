// Endpoint parsing and socket set-up shared by the three roles.
#pragma once

#include <zmq.hpp>

#include <cstdint>
#include <string>

namespace taskfarm {

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

}  // namespace taskfarm
