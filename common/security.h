// CurveZMQ authentication and encryption, off unless a key is given.
//
// Servers (sink, ventilator) take their own key (--curve-secret) and a directory of authorized
// client public keys (--authorized-keys DIR/*.pub), checked by a ZAP handler; clients (workers,
// the ventilator towards the sink, `taskfarm`) take their own key and the servers' public key
// (--server-key). A peer without a key, or with an unknown one, cannot connect at all.
#pragma once

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>

namespace taskfarm {

struct CurveOptions {
  std::string secret_file;      // this process's secret key (Z85, from `taskfarm keygen`)
  std::string server_key_file;  // public key of the servers this process connects to
  std::string authorized_dir;   // servers: directory of authorized *.pub keys

  // Adds the flags a process needs: `server` for one that binds, `client` for one that connects.
  void add_flags(CLI::App& app, bool server, bool client);
  bool enabled() const { return !secret_file.empty(); }
};

// Writes DIR/NAME.key (secret, mode 600) and DIR/NAME.pub. Returns: the public key.
// Throws: SetupError when the files cannot be written.
std::string write_key_pair(const std::string& dir, const std::string& name);

class Curve {
 public:
  // Loads the keys and, for a server, starts the ZAP handler on `ctx`.
  // Throws: SetupError naming a missing, unreadable or malformed key file or directory.
  Curve(const CurveOptions& options, zmq::context_t& ctx);
  // Stops the ZAP handler. Destroy before the context and after the sockets that use it.
  ~Curve();
  Curve(const Curve&) = delete;
  Curve& operator=(const Curve&) = delete;

  bool enabled() const { return enabled_; }
  // Makes a bound socket a CURVE server that checks clients against the authorized keys.
  void make_server(zmq::socket_t& socket) const;
  // Makes a connecting socket a CURVE client of the servers' key.
  void make_client(zmq::socket_t& socket) const;

 private:
  void zap_loop();

  bool enabled_ = false;
  std::string public_, secret_, server_public_;
  std::set<std::string> authorized_;  // Z85 public keys
  std::unique_ptr<zmq::socket_t> zap_socket_;  // used by the zap_ thread only
  std::atomic<bool> stop_{false};
  std::thread zap_;
};

// Watches the handshakes of a connecting socket (libzmq's socket monitor), so that a client can
// say why a server does not answer ("the server refused our key") instead of waiting in silence.
// Declare it after the socket it watches: it must be destroyed first.
class HandshakeWatch {
 public:
  // Starts watching `socket`; `curve` says whether it is a CURVE client. Throws: zmq::error_t.
  HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& socket, bool curve);
  ~HandshakeWatch();
  HandshakeWatch(const HandshakeWatch&) = delete;
  HandshakeWatch& operator=(const HandshakeWatch&) = delete;

  // Reads the events so far (never blocks).
  // Returns: why the last handshake failed when none succeeded after it, or "" ("the server
  // refused our key (not authorized)", "the server's key does not match (check --server-key)").
  const std::string& failure();
  // Returns: how many handshakes failed so far.
  uint64_t failures() const { return failures_; }

  // Returns: the reason for a monitor event, or "" for events that are not failures.
  static std::string describe(int event, uint32_t value, bool curve);

 private:
  zmq::socket_t* watched_;
  zmq::socket_t events_;
  bool curve_;
  std::string failure_;
  uint64_t failures_ = 0;
};

}  // namespace taskfarm
