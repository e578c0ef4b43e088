#include "common/security.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "common/log.h"

namespace taskfarm {
namespace {

constexpr size_t kZ85KeyLength = 40;

// Returns: the Z85 key in `path` (first line, 40 characters). Throws: SetupError.
std::string read_key(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw SetupError(fmt::format("cannot read {} '{}'", what, path));
  std::string key;
  std::getline(in, key);
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
  uint8_t raw[32];
  if (key.size() != kZ85KeyLength || !zmq_z85_decode(raw, key.c_str())) {
    throw SetupError(fmt::format("{} '{}' is not a CURVE key (40 Z85 characters)", what, path));
  }
  return key;
}

}  // namespace

void CurveOptions::add_flags(CLI::App& app, bool server, bool client) {
  app.add_option("--curve-secret", secret_file,
                 "enable CurveZMQ with this secret key file (from `taskfarm keygen`)");
  if (server) {
    app.add_option("--authorized-keys", authorized_dir,
                   "with --curve-secret: directory of the clients' *.pub keys allowed in");
  }
  if (client) {
    app.add_option("--server-key", server_key_file,
                   "with --curve-secret: public key file of the sink/ventilator");
  }
}

std::string write_key_pair(const std::string& dir, const std::string& name) {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) throw SetupError("this libzmq has no CURVE support");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const auto base = std::filesystem::path(dir) / name;
  const std::string key_path = base.string() + ".key", pub_path = base.string() + ".pub";
  {
    const mode_t old = umask(077);  // the secret key is readable by its owner only
    std::ofstream out(key_path, std::ios::trunc);
    out << sec << '\n';
    umask(old);
    if (!out) throw SetupError(fmt::format("cannot write '{}'", key_path));
  }
  std::ofstream out(pub_path, std::ios::trunc);
  out << pub << '\n';
  if (!out) throw SetupError(fmt::format("cannot write '{}'", pub_path));
  return pub;
}

Curve::Curve(const CurveOptions& o, zmq::context_t& ctx) {
  if (!o.enabled()) {
    if (!o.server_key_file.empty() || !o.authorized_dir.empty()) {
      throw SetupError("--server-key and --authorized-keys need --curve-secret");
    }
    return;
  }
  if (!zmq_has("curve")) throw SetupError("this libzmq has no CURVE support");
  enabled_ = true;
  secret_ = read_key(o.secret_file, "secret key file");
  char pub[41];
  if (zmq_curve_public(pub, secret_.c_str()) != 0) {
    throw SetupError(fmt::format("secret key file '{}' is not a CURVE secret key", o.secret_file));
  }
  public_ = pub;
  if (!o.server_key_file.empty()) server_public_ = read_key(o.server_key_file, "server key file");
  if (!o.authorized_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(o.authorized_dir, ec)) {
      throw SetupError(fmt::format("authorized keys directory '{}' not found", o.authorized_dir));
    }
    for (const auto& entry : std::filesystem::directory_iterator(o.authorized_dir, ec)) {
      if (entry.path().extension() == ".pub") {
        authorized_.insert(read_key(entry.path().string(), "authorized key"));
      }
    }
    if (authorized_.empty()) {
      log::warn("no *.pub keys in '{}': every client will be refused", o.authorized_dir);
    }
    // ZAP (RFC 27): libzmq asks this handler about every CURVE handshake on this context.
    // Bound here, before any server socket exists, so that no handshake goes unchecked.
    zap_socket_ = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::rep);
    zap_socket_->set(zmq::sockopt::linger, 0);
    zap_socket_->bind("inproc://zeromq.zap.01");
    zap_ = std::thread(&Curve::zap_loop, this);  // the socket now belongs to that thread
  }
}

Curve::~Curve() {
  stop_ = true;
  if (zap_.joinable()) zap_.join();
}

void Curve::zap_loop() {
  zmq::socket_t& sock = *zap_socket_;
  while (!stop_) {
    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t&) {
      continue;  // EINTR
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> frames;
    zmq::message_t frame;
    do {
      if (!sock.recv(frame, zmq::recv_flags::none)) break;
      frames.push_back(std::move(frame));
    } while (frames.back().more());
    // version, request id, domain, address, routing id, mechanism, credentials...
    bool ok = false;
    std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
    if (frames.size() >= 7 && frames[0].to_string() == "1.0" && frames[5].to_string() == "CURVE" &&
        frames[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
      ok = authorized_.count(z85) > 0;
      if (!ok) log::warn("refused a peer from {} with unknown key {}", frames[3].to_string(), z85);
    }
    const std::string reply[] = {"1.0", request_id, ok ? "200" : "400",
                                 ok ? "OK" : "unknown key", "", ""};
    for (size_t i = 0; i < 6; ++i) {
      sock.send(zmq::buffer(reply[i]), i < 5 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
}

void Curve::make_server(zmq::socket_t& socket) const {
  if (!enabled_) return;
  if (!zap_socket_) throw SetupError("--curve-secret on a server needs --authorized-keys DIR");
  socket.set(zmq::sockopt::zap_domain, "taskfarm");
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, secret_);
}

void Curve::make_client(zmq::socket_t& socket) const {
  if (!enabled_) return;
  if (server_public_.empty()) throw SetupError("--curve-secret needs --server-key FILE");
  socket.set(zmq::sockopt::curve_serverkey, server_public_);
  socket.set(zmq::sockopt::curve_publickey, public_);
  socket.set(zmq::sockopt::curve_secretkey, secret_);
}

HandshakeWatch::HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& socket, bool curve)
    : watched_(&socket), events_(ctx, zmq::socket_type::pair), curve_(curve) {
  static std::atomic<uint64_t> next{0};
  const std::string endpoint =
      fmt::format("inproc://taskfarm-handshakes-{}-{}", fmt::ptr(&socket), next++);
  constexpr int kEvents = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), kEvents) != 0) throw zmq::error_t();
  events_.set(zmq::sockopt::linger, 0);
  events_.connect(endpoint);
}

HandshakeWatch::~HandshakeWatch() {
  (void)zmq_socket_monitor(watched_->handle(), nullptr, 0);
}

std::string HandshakeWatch::describe(int event, uint32_t value, bool curve) {
  switch (event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:  // the server's ZAP handler said no (status 400)
      return "the server refused our key (not authorized)";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
        return curve ? "the server does not use CurveZMQ keys (leave out --curve-secret)"
                     : "the server requires CurveZMQ keys (give --curve-secret and --server-key)";
      }
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
        return "the server's key does not match (check --server-key)";
      }
      return fmt::format("handshake protocol error 0x{:x}", value);
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      // The server closed the connection mid-handshake: a CURVE server that cannot decrypt our
      // HELLO (we used another server key) does that, and so does one that sees a mechanism
      // mismatch before we do.
      return curve ? "the server's key does not match (check --server-key; or the server does "
                     "not use CurveZMQ keys)"
                   : "the server closed the connection during the handshake: it probably "
                     "requires CurveZMQ keys (give --curve-secret and --server-key)";
    default:
      return "";
  }
}

const std::string& HandshakeWatch::failure() {
  zmq::message_t head, address;
  for (;;) {
    try {
      if (!events_.recv(head, zmq::recv_flags::dontwait)) break;
      if (head.more()) (void)events_.recv(address, zmq::recv_flags::none);
    } catch (const zmq::error_t&) {
      break;  // EINTR: read the rest next time
    }
    if (head.size() < 6) continue;
    uint16_t event;
    uint32_t value;
    std::memcpy(&event, head.data(), sizeof event);
    std::memcpy(&value, static_cast<const char*>(head.data()) + 2, sizeof value);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      failure_.clear();
    } else {
      failure_ = describe(event, value, curve_);
      ++failures_;
    }
  }
  return failure_;
}

}  // namespace taskfarm
