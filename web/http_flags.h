// The command-line flags of the HTTP service (--http, --http-bind, --http-token[-file]), so that
// a program adds them in two lines.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "web/http_service.h"

namespace taskfarm::web {

struct HttpFlags {
  std::string port;  // a number, "off", or empty for the default
  std::string bind = "127.0.0.1";
  std::string token, token_file;

  void add_flags(CLI::App& app);
  // Returns: the options, or nullopt when HTTP is off; `*optional` tells whether the port is the
  // default one (in use: a warning) rather than one the user chose (in use: an error).
  // The default is 8080 when `serving`, off otherwise; with `curve` and no token, a random token
  // is required. Throws: SetupError for a bad port or an unreadable token file.
  std::optional<HttpOptions> resolve(bool serving, bool curve, bool* optional) const;
};

}  // namespace taskfarm::web
