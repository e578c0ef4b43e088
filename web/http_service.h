// The job service's web side (issue 16): a dashboard, Prometheus metrics and a JSON API,
// served by cpp-httplib on its own threads from the latest FarmSnapshot. The ventilator's
// event loop publishes snapshots and drains commands (cancel); HTTP threads never touch it.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "web/snapshot.h"

namespace taskfarm::web {

struct HttpOptions {
  std::string bind = "127.0.0.1";  // loopback unless opened on purpose
  int port = 8080;                 // 0: any free port
  std::string token;               // when set, every request must carry it
  int threads = 4;
};

// A request from an HTTP thread for the event loop.
struct Command {
  enum class Kind { kCancel };
  Kind kind = Kind::kCancel;
  std::string job;  // id or name
  // Filled by the event loop: an HTTP status (200, 404, 409) and a one-line message.
  std::promise<std::pair<int, std::string>> reply;
};

class HttpService {
 public:
  // Binds and starts serving. Throws: SetupError when the address cannot be bound.
  explicit HttpService(HttpOptions options);
  // Stops serving; a command still waiting gets no reply (its HTTP request times out to 503).
  ~HttpService();
  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  int port() const { return port_; }
  // Returns: the dashboard's address, with the token when one is required.
  std::string url() const;

  // Replaces what is served. Thread-safe; called by the event loop a few times a second.
  void publish(FarmSnapshot snapshot);
  // Returns: the commands received since the last call. Thread-safe.
  std::vector<std::unique_ptr<Command>> take_commands();

 private:
  struct State;
  HttpOptions opt_;
  int port_ = 0;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// Returns: a random token (32 hex digits) for --http-token when none is given.
std::string random_token();

}  // namespace taskfarm::web
