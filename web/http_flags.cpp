#include "web/http_flags.h"

#include <fmt/core.h>

#include <cctype>

#include "common/errors.h"
#include "common/files.h"
#include "common/net.h"

namespace taskfarm::web {
namespace {

// Returns: the first line of `path` (at most 4 KiB), trimmed. Throws: SetupError when missing,
// not a file, too large or empty.
std::string read_token_file(const std::string& path) {
  const std::string text = read_file_capped(path, kMaxKeyFileBytes, "--http-token-file");
  std::string token = text.substr(0, text.find('\n'));
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw SetupError(fmt::format("--http-token-file {} is empty", path));
  return token;
}

}  // namespace

void HttpFlags::add_flags(CLI::App& app) {
  app.add_option("--http", port,
                 "serve the dashboard, /metrics and /api on this port (0: any free port; off: "
                 "none; default 8080 with --serve, off otherwise)");
  app.add_option("--http-bind", bind, "address for --http (0.0.0.0 opens it to the network)")
      ->capture_default_str();
  auto* token_opt = app.add_option("--http-token", token,
                                   "require this token on every HTTP request (a random one is "
                                   "made when CurveZMQ keys are set)");
  app.add_option("--http-token-file", token_file, "read the HTTP token from this file")
      ->excludes(token_opt);
}

std::optional<HttpOptions> HttpFlags::resolve(bool serving, bool curve, bool* optional) const {
  const std::string p =
      port.empty() ? (serving ? std::to_string(default_port(8080)) : "off") : port;
  *optional = port.empty();
  if (p == "off") return std::nullopt;
  HttpOptions o;
  size_t used = 0;
  int n = -1;
  try {
    n = std::stoi(p, &used);
  } catch (const std::exception&) {
  }
  if (n < 0 || n > 65535 || used != p.size()) {
    throw SetupError(fmt::format("--http: '{}' is not a port", p));
  }
  o.port = n;
  o.bind = bind;
  if (!token_file.empty()) {
    o.token = read_token_file(token_file);
  } else if (!token.empty()) {
    o.token = token;
  } else if (curve) {
    o.token = random_token();  // a browser cannot do CURVE: the page needs a secret of its own
  }
  return o;
}

}  // namespace taskfarm::web
