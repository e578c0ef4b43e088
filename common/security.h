// CurveZMQ authentication and encryption, off unless a key is given.
//
// Servers (sink, ventilator) take their own key (--curve-secret) and a directory of authorized
// public keys sorted by role (--authorized-keys DIR with workers/, clients/ and head/), checked
// by a ZAP handler per socket: the task socket admits workers, the submission socket clients and
// the head, the sink's results and control sockets workers and the head (the ventilator is the
// sink's client with the head key). Clients (workers, the ventilator towards the sink,
// `taskfarm`) take their own key and the servers' public key (--server-key). A peer without a
// key, with an unknown key, or with a key of another role cannot connect at all.
#pragma once

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

namespace taskfarm {

struct CurveOptions {
  std::string secret_file;      // this process's secret key (from `taskfarm keygen`)
  std::string server_key_file;  // public key of the servers this process connects to
  std::string authorized_dir;   // servers: workers/, clients/ and head/ folders of *.pub keys

  // Adds the flags a process needs: `server` for one that binds, `client` for one that connects.
  void add_flags(CLI::App& app, bool server, bool client);
  bool enabled() const { return !secret_file.empty(); }
};

// Roles a key can be authorized for: the subfolder of the authorized-keys directory it is in.
enum CurveRole : unsigned { kRoleWorker = 1, kRoleClient = 2, kRoleHead = 4 };

// The bound sockets, each a ZAP domain that admits some roles.
enum class ServerSocket {
  kTasks,    // ventilator task socket: workers
  kSubmit,   // ventilator job service: clients and the head
  kResults,  // sink results: workers and the head (BatchStart, cancels)
  kControl,  // sink control PUB: workers and the head
  kOutputs,  // sink results service (`taskfarm results`): clients and the head
};

// Returns: the ZAP domain of a server socket ("tasks", "submit", "results", "control",
// "outputs").
std::string_view zap_domain(ServerSocket socket);
// Returns: the roles a server socket admits (CurveRole bits).
unsigned admitted_roles(ServerSocket socket);

// Writes DIR/NAME.key (secret, mode 600) and DIR/NAME.pub (mode 644), never following a symlink.
// Without `force`, existing files are refused; with it, each is replaced by a renamed temporary
// file. Returns: the public key. Throws: SetupError for a NAME that is not letters, digits,
// '.', '_' and '-' (no path separators, no leading '.'), an existing file, or a write failure.
std::string write_key_pair(const std::string& dir, const std::string& name, bool force = false);

// A key file's contents. keygen writes ZeroMQ's certificate format (CZMQ's zcert, which
// pyzmq's zmq.auth.load_certificate reads): `public-key = "..."` in NAME.pub, `public-key` and
// `secret-key` in NAME.key; files of earlier versions hold the bare 40-character key.
struct KeyFile {
  std::string public_key, secret_key;  // Z85; either may be empty
  bool bare = false;                   // an old file: one bare key, kind unknown
};
// Returns: the keys in `text`. Throws: SetupError ("'PATH' is not a CURVE key file").
KeyFile parse_key_file(std::string_view text, const std::string& path);
// Returns: the Z85 secret key in `path`. Throws: SetupError for a missing, oversized or
// malformed file, a file group or others can read ("permissions 0644 for 'x.key' are too
// open"), or a public key file.
std::string load_secret_key(const std::string& path);
// Returns: the Z85 public key in `path`; `what` names it in errors. Throws: SetupError for a
// missing, oversized or malformed file, or a secret key file.
std::string load_public_key(const std::string& path, std::string_view what);
// Returns: Z85 public key -> CurveRole bits, from DIR/workers, DIR/clients and DIR/head.
// Throws: SetupError for a missing directory, keys at its top level (the layout before roles),
// an unknown subfolder, no role subfolder at all, or a bad key file.
std::map<std::string, unsigned> load_authorized_keys(const std::string& dir);

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
  // Makes a bound socket a CURVE server that admits the keys of the roles `which` admits.
  void make_server(zmq::socket_t& socket, ServerSocket which) const;
  // Makes a connecting socket a CURVE client of the servers' key.
  void make_client(zmq::socket_t& socket) const;
  // Returns: whether `frame`, received on a server socket, came from a key authorized for
  // `role` (always true without CURVE). Lets a socket shared by two roles (the sink's results
  // socket) take head-only messages from the head only.
  bool sent_by(const zmq::message_t& frame, CurveRole role) const;

 private:
  void zap_loop();

  bool enabled_ = false;
  std::string public_, secret_, server_public_;
  std::map<std::string, unsigned> authorized_;  // Z85 public key -> CurveRole bits
  std::unique_ptr<zmq::socket_t> zap_socket_;   // used by the zap_ thread only
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
