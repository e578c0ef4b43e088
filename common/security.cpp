#include "common/security.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/errors.h"
#include "common/files.h"
#include "common/log.h"
#include "common/net.h"
#include "common/text.h"

namespace taskfarm {
namespace {

namespace fs = std::filesystem;

constexpr size_t kZ85KeyLength = 40;
constexpr size_t kMaxAuthorizedKeys = 65536;
constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

// The role subfolders of an authorized-keys directory.
struct RoleFolder {
  const char* name;
  CurveRole role;
};
constexpr RoleFolder kRoleFolders[] = {
    {"workers", kRoleWorker}, {"clients", kRoleClient}, {"head", kRoleHead}};

// Returns: "workers,head" (with sep ","): the folders of `roles`.
std::string role_names(unsigned roles, std::string_view sep = ",") {
  std::string out;
  for (const auto& f : kRoleFolders) {
    if (roles & f.role) out += (out.empty() ? "" : std::string(sep)) + std::string(f.name);
  }
  return out.empty() ? "none" : out;
}

bool is_z85_key(std::string_view s) {
  if (s.size() != kZ85KeyLength || s.find_first_not_of(kZ85Alphabet) != std::string_view::npos) {
    return false;
  }
  uint8_t raw[32];
  const std::string key(s);
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string z85(const void* raw32) {
  char out[kZ85KeyLength + 1];
  zmq_z85_encode(out, static_cast<const uint8_t*>(raw32), 32);
  return out;
}

// Creates `path` with `mode` and writes `text` to it; never follows a symlink at `path`.
// Without `replace` the file must not exist (O_EXCL); with it, a temporary file in the same
// folder is renamed over `path` (rename replaces a symlink, never its target).
// Throws: SetupError.
void write_private_file(const std::string& path, const std::string& text, mode_t mode,
                        bool replace) {
  const std::string target = replace ? fmt::format("{}.tmp-{:08x}", path, random_u64() & 0xffffffff)
                                     : path;
  const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST && !replace) {
      throw SetupError(fmt::format("'{}' already exists (give --force to replace the key pair)",
                                   path));
    }
    throw SetupError(fmt::format("cannot create '{}': {}", target, std::strerror(errno)));
  }
  // The umask may only have taken bits away; the modes are part of the contract.
  bool ok = ::fchmod(fd, mode) == 0;
  for (size_t done = 0; ok && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (ok && replace && ::rename(target.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(target.c_str());
    throw SetupError(fmt::format("cannot replace '{}': {}", path, std::strerror(rename_err)));
  }
  if (!ok) {
    ::unlink(target.c_str());
    throw SetupError(fmt::format("cannot write '{}': {}", target, std::strerror(err)));
  }
}

}  // namespace

std::string_view zap_domain(ServerSocket socket) {
  switch (socket) {
    case ServerSocket::kTasks: return "tasks";
    case ServerSocket::kSubmit: return "submit";
    case ServerSocket::kResults: return "results";
    case ServerSocket::kControl: return "control";
    case ServerSocket::kOutputs: return "outputs";
  }
  return "";
}

unsigned admitted_roles(ServerSocket socket) {
  switch (socket) {
    case ServerSocket::kTasks: return kRoleWorker;
    case ServerSocket::kSubmit:
    case ServerSocket::kOutputs: return kRoleClient | kRoleHead;
    case ServerSocket::kResults:
    case ServerSocket::kControl: return kRoleWorker | kRoleHead;
  }
  return 0;
}

void CurveOptions::add_flags(CLI::App& app, bool server, bool client) {
  app.add_option("--curve-secret", secret_file,
                 "enable CurveZMQ with this secret key file (NAME.key from `taskfarm keygen`)");
  if (server) {
    app.add_option("--authorized-keys", authorized_dir,
                   "with --curve-secret: directory of public keys allowed in, by role: "
                   "DIR/workers/*.pub, DIR/clients/*.pub, DIR/head/*.pub");
  }
  if (client) {
    app.add_option("--server-key", server_key_file,
                   "with --curve-secret: public key file of the sink/ventilator (NAME.pub)");
  }
}

KeyFile parse_key_file(std::string_view text, const std::string& path) {
  KeyFile k;
  const auto bad = [&](std::string_view why) {
    return SetupError(fmt::format("'{}' is not a CURVE key file ({}); make keys with "
                                  "`taskfarm keygen NAME`",
                                  path, why));
  };
  size_t bare_keys = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = trim(text.substr(0, eol));
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    // Z85 has '#' and '=': a bare key is recognised before comments and assignments.
    if (is_z85_key(line)) {
      ++bare_keys;
      k.public_key = std::string(line);
      continue;
    }
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      if (line == "metadata" || line == "curve") continue;  // zcert section names
      throw bad("unexpected text");
    }
    const std::string_view name = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (name == "public-key" || name == "secret-key") {
      if (!is_z85_key(value)) throw bad(fmt::format("{} is not 40 Z85 characters", name));
      (name == "public-key" ? k.public_key : k.secret_key) = std::string(value);
    }  // other `name = "value"` lines are zcert metadata
  }
  if (bare_keys > 0) {
    if (bare_keys > 1 || !k.secret_key.empty()) throw bad("more than one bare key");
    k.bare = true;
  } else if (k.public_key.empty() && k.secret_key.empty()) {
    throw bad("no key in it");
  }
  return k;
}

std::string load_secret_key(const std::string& path) {
  const std::string text = read_file_capped(path, kMaxKeyFileBytes, "secret key file",
                                            FileKind::kRegular);
  KeyFile k = parse_key_file(text, path);
  if (k.secret_key.empty() && (!k.bare || ends_with(path, ".pub"))) {
    throw SetupError(fmt::format("'{}' is a public key; --curve-secret takes the secret key "
                                 "file (NAME.key, written next to NAME.pub by `taskfarm keygen`)",
                                 path));
  }
  if (k.bare) k.secret_key = std::move(k.public_key);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    throw SetupError(fmt::format("permissions {:04o} for '{}' are too open: a secret key must be "
                                 "readable by its owner only (chmod 600 '{}')",
                                 st.st_mode & 07777, path, path));
  }
  char pub[kZ85KeyLength + 1];
  if (zmq_curve_public(pub, k.secret_key.c_str()) != 0) {
    throw SetupError(fmt::format("'{}' does not hold a CURVE secret key", path));
  }
  if (!k.bare && !k.public_key.empty() && k.public_key != pub) {
    throw SetupError(fmt::format("'{}' is damaged: its public-key is not that of its secret-key",
                                 path));
  }
  return k.secret_key;
}

std::string load_public_key(const std::string& path, std::string_view what) {
  const std::string text = read_file_capped(path, kMaxKeyFileBytes, what, FileKind::kRegular);
  const KeyFile k = parse_key_file(text, path);
  if (!k.secret_key.empty() || (k.bare && ends_with(path, ".key"))) {
    throw SetupError(fmt::format("{} '{}' is a secret key; give the public key (NAME.pub) and "
                                 "keep NAME.key on its own machine",
                                 what, path));
  }
  return k.public_key;
}

std::map<std::string, unsigned> load_authorized_keys(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw SetupError(fmt::format("authorized keys directory '{}' not found", dir));
  }
  bool any_folder = false;
  std::vector<std::pair<fs::path, CurveRole>> folders;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code type_ec;  // a dangling link is no folder
    if (entry.is_directory(type_ec)) {
      const RoleFolder* folder = nullptr;
      for (const auto& f : kRoleFolders) {
        if (name == f.name) folder = &f;
      }
      if (folder != nullptr) {
        folders.emplace_back(entry.path(), folder->role);
        any_folder = true;
      } else if (name.front() != '.') {
        throw SetupError(fmt::format("authorized keys directory '{}' has an unknown subfolder "
                                     "'{}' (expected workers/, clients/ or head/)",
                                     dir, name));
      }
    } else if (entry.path().extension() == ".pub") {
      throw SetupError(fmt::format(
          "authorized keys directory '{0}' has keys at its top level ('{1}'), but keys are "
          "authorized by role: mkdir {0}/workers {0}/clients {0}/head and move each .pub into the "
          "folder of its role (the sink's and ventilator's own key into head/; README: Keys)",
          dir, name));
    }
  }
  if (ec) throw SetupError(fmt::format("cannot list '{}': {}", dir, ec.message()));
  if (!any_folder) {
    throw SetupError(fmt::format("authorized keys directory '{}' has no workers/, clients/ or "
                                 "head/ subfolder: keys are authorized by role (README: Keys)",
                                 dir));
  }
  std::map<std::string, unsigned> keys;
  size_t files = 0;
  for (const auto& [folder, role] : folders) {
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      if (entry.path().extension() != ".pub") continue;
      if (++files > kMaxAuthorizedKeys) {
        throw SetupError(fmt::format("authorized keys directory '{}' has more than {} keys", dir,
                                     kMaxAuthorizedKeys));
      }
      keys[load_public_key(entry.path().string(), "authorized key")] |= role;
    }
    if (ec) throw SetupError(fmt::format("cannot list '{}': {}", folder.string(), ec.message()));
  }
  return keys;
}

std::string write_key_pair(const std::string& dir, const std::string& name, bool force) {
  static constexpr std::string_view kNameChars =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
  if (name.empty() || name.size() > 128 || name.front() == '.' ||
      name.find_first_not_of(kNameChars) != std::string::npos) {
    throw SetupError(fmt::format("key name '{}' must be 1 to 128 letters, digits, '.', '_' or '-' "
                                 "and not start with '.' (use --dir for the folder)",
                                 printable(name, 64)));
  }
  char pub[kZ85KeyLength + 1], sec[kZ85KeyLength + 1];
  if (zmq_curve_keypair(pub, sec) != 0) throw SetupError("this libzmq has no CURVE support");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw SetupError(fmt::format("cannot create '{}': {}", dir, ec.message()));
  const std::string base = (fs::path(dir) / name).string();
  const std::string key_path = base + ".key", pub_path = base + ".pub";
  if (!force) {
    for (const auto& p : {key_path, pub_path}) {
      struct stat st {};
      if (::lstat(p.c_str(), &st) == 0) {
        throw SetupError(fmt::format("'{}' already exists (give --force to replace the key pair; "
                                     "every farm using the old key must then get the new one)",
                                     p));
      }
    }
  }
  const std::string header = "#   ****  Generated by taskfarm keygen  ****\n";
  write_private_file(key_path,
                     header + "#   ZeroMQ CURVE **Secret** Certificate\n"
                              "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its "
                              "permissions.\n\nmetadata\ncurve\n" +
                         fmt::format("    public-key = \"{}\"\n", pub) +
                         fmt::format("    secret-key = \"{}\"\n", sec),
                     0600, force);
  try {
    write_private_file(pub_path,
                       header + "#   ZeroMQ CURVE Public Certificate\n"
                                "#   Give this file to the servers that should admit this key.\n"
                                "\nmetadata\ncurve\n" +
                           fmt::format("    public-key = \"{}\"\n", pub),
                       0644, force);
  } catch (...) {
    if (!force) ::unlink(key_path.c_str());  // no half pair
    throw;
  }
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
  secret_ = load_secret_key(o.secret_file);
  char pub[kZ85KeyLength + 1];
  if (zmq_curve_public(pub, secret_.c_str()) != 0) {
    throw SetupError(fmt::format("'{}' does not hold a CURVE secret key", o.secret_file));
  }
  public_ = pub;
  if (!o.server_key_file.empty()) {
    server_public_ = load_public_key(o.server_key_file, "server key file");
  }
  if (!o.authorized_dir.empty()) {
    authorized_ = load_authorized_keys(o.authorized_dir);
    if (authorized_.empty()) {
      log::warn("no *.pub keys in '{}/{{workers,clients,head}}': every peer will be refused",
                o.authorized_dir);
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
  // Refusals logged per key and socket at the 1st, 10th, 100th...: a refused peer retries
  // every few hundred milliseconds.
  std::map<std::string, uint64_t> refusals;
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
    std::string user_id;
    const std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
    if (frames.size() >= 7 && frames[0].to_string() == "1.0" && frames[5].to_string() == "CURVE" &&
        frames[6].size() == 32) {
      const std::string domain = frames[2].to_string(), key = z85(frames[6].data());
      unsigned admits = 0;
      for (const auto s : {ServerSocket::kTasks, ServerSocket::kSubmit, ServerSocket::kResults,
                           ServerSocket::kControl, ServerSocket::kOutputs}) {
        if (zap_domain(s) == domain) admits = admitted_roles(s);
      }
      const auto it = authorized_.find(key);
      const unsigned roles = it == authorized_.end() ? 0 : it->second;
      ok = (roles & admits) != 0;
      user_id = role_names(roles);
      if (!ok) {
        if (refusals.size() > 10000) refusals.clear();
        const uint64_t n = ++refusals[domain + key];
        if (n == 1 || n == 10 || n == 100 || n % 1000 == 0) {
          const std::string times = n == 1 ? "" : fmt::format(" ({} times)", n);
          if (roles == 0) {
            log::warn("refused an unknown key {} from {} on the {} socket{}", key,
                      frames[3].to_string(), domain, times);
          } else {
            log::warn("refused key {} from {} on the {} socket{}: it is authorized as {}, and "
                      "that socket admits {}",
                      key, frames[3].to_string(), domain, times, role_names(roles, " and "),
                      role_names(admits, " or "));
          }
        }
      }
    }
    // The user id (the key's roles) travels with every message as its "User-Id" property.
    const std::string reply[] = {"1.0", request_id, ok ? "200" : "400",
                                 ok ? "OK" : "key not authorized for this socket",
                                 ok ? user_id : "", ""};
    for (size_t i = 0; i < 6; ++i) {
      sock.send(zmq::buffer(reply[i]), i < 5 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
}

void Curve::make_server(zmq::socket_t& socket, ServerSocket which) const {
  if (!enabled_) return;
  if (!zap_socket_) throw SetupError("--curve-secret on a server needs --authorized-keys DIR");
  socket.set(zmq::sockopt::zap_domain, std::string(zap_domain(which)));
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

bool Curve::sent_by(const zmq::message_t& frame, CurveRole role) const {
  if (!enabled_) return true;
  const char* user = zmq_msg_gets(frame.handle(), "User-Id");
  if (user == nullptr) return false;
  for (const auto& f : kRoleFolders) {
    if (f.role != role) continue;
    const std::string_view roles(user), name(f.name);
    for (size_t pos = 0; pos <= roles.size();) {
      const size_t comma = std::min(roles.find(',', pos), roles.size());
      if (roles.substr(pos, comma - pos) == name) return true;
      pos = comma + 1;
    }
  }
  return false;
}

}  // namespace taskfarm
