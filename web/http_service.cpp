#include "web/http_service.h"

#include <fmt/core.h>
#include <httplib.h>

#include <chrono>
#include <random>

#include "common/errors.h"
#include "common/log.h"
#include "web/assets.h"
#include "web/render.h"

namespace taskfarm::web {
namespace {

constexpr const char* kCookie = "taskfarm_token";

// Compares without an early exit, so response times do not leak the token.
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Returns: the value of cookie `name` in a Cookie header, or "".
std::string cookie(const std::string& header, std::string_view name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string_view part(header.data() + pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
    pos = end + 1;
  }
  return {};
}

void send_json(httplib::Response& res, const nlohmann::json& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(), "application/json");
}

std::string content_type(const Asset& a) { return std::string(a.content_type) + "; charset=utf-8"; }

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, {{"error", message}}, status);
}

}  // namespace

std::string random_token() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

struct HttpService::State {
  std::mutex mu;  // guards everything below but `server`
  std::shared_ptr<const FarmSnapshot> snapshot = std::make_shared<FarmSnapshot>();
  History history;
  std::vector<std::unique_ptr<Command>> commands;
  bool stopping = false;
  httplib::Server server;  // thread-safe on its own
};

HttpService::HttpService(HttpOptions options)
    : opt_(std::move(options)), state_(std::make_shared<State>()) {
  auto& server = state_->server;
  const int threads = std::max(1, opt_.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Dashboards poll: a kept-alive connection would hold one of the few threads between polls.
  server.set_keep_alive_max_count(1);
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_payload_max_length(64 << 10);
  // httplib's default is SO_REUSEPORT, which lets a second ventilator share the port and
  // split the requests with the first: a port in use must be an error instead.
  server.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  State* st = state_.get();
  const std::string token = opt_.token;

  // Returns: whether the request may proceed (otherwise the response is a 401).
  auto authorized = [token](const httplib::Request& req, httplib::Response& res) {
    if (token.empty()) return true;
    std::string given;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) given = auth.substr(7);
    if (given.empty() && req.has_param("token")) given = req.get_param_value("token");
    if (given.empty()) given = cookie(req.get_header_value("Cookie"), kCookie);
    if (same_secret(given, token)) return true;
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer realm=\"taskfarm\"");
    res.set_content(
        "token required: open the address the ventilator logged (it carries ?token=), or send "
        "'Authorization: Bearer TOKEN' (--http-token / --http-token-file)\n",
        "text/plain");
    return false;
  };
  server.Get("/", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    if (!token.empty() && req.has_param("token")) {
      // The browser keeps the token for the page's own requests; never sent cross-site.
      res.set_header("Set-Cookie", fmt::format("{}={}; Path=/; HttpOnly; SameSite=Strict",
                                               kCookie, token));
    }
    const Asset* a = find_asset("/");
    res.set_header("Cache-Control", "no-store");
    res.set_content(a->data.data(), a->data.size(), content_type(*a));
  });
  server.Get(R"(/assets/[A-Za-z0-9._-]+)", [](const httplib::Request& req, httplib::Response& res) {
    const Asset* a = find_asset(req.path);
    if (!a) {
      res.status = 404;
      res.set_content("not found\n", "text/plain");
      return;
    }
    res.set_header("Cache-Control", "max-age=3600");
    res.set_content(a->data.data(), a->data.size(), content_type(*a));
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server.Get("/metrics", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    std::lock_guard lock(st->mu);
    res.set_content(prometheus_text(*st->snapshot, st->history),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/api/state", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    std::lock_guard lock(st->mu);
    send_json(res, dashboard_json(*st->snapshot, st->history, !token.empty()));
  });
  server.Get("/api/jobs", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    std::lock_guard lock(st->mu);
    nlohmann::json jobs = nlohmann::json::array();
    for (const auto& j : st->snapshot->jobs) jobs.push_back(job_json(j, st->history, false));
    send_json(res, {{"jobs", std::move(jobs)}});
  });
  server.Get(R"(/api/jobs/([^/]+))", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const std::string key = req.matches[1];
    std::lock_guard lock(st->mu);
    for (const auto& j : st->snapshot->jobs) {  // newest first: a name means its newest job
      if (j.id == key || j.name == key) return send_json(res, job_json(j, st->history, true));
    }
    send_error(res, 404, fmt::format("unknown job '{}'", key));
  });
  server.Get("/api/workers", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    std::lock_guard lock(st->mu);
    nlohmann::json workers = nlohmann::json::array();
    for (const auto& w : st->snapshot->workers) workers.push_back(worker_json(w, st->history));
    send_json(res, {{"workers", std::move(workers)}});
  });
  server.Post(R"(/api/jobs/([^/]+)/cancel)", [=](const httplib::Request& req,
                                                 httplib::Response& res) {
    if (!authorized(req, res)) return;
    // A page of another site may make the user's browser POST here: refuse other origins.
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty() && origin != "http://" + req.get_header_value("Host")) {
      return send_error(res, 403, fmt::format("cross-origin request from {} refused", origin));
    }
    auto cmd = std::make_unique<Command>();
    cmd->kind = Command::Kind::kCancel;
    cmd->job = req.matches[1];
    auto reply = cmd->reply.get_future();
    {
      std::lock_guard lock(st->mu);
      if (st->stopping) return send_error(res, 503, "the job service is stopping");
      st->commands.push_back(std::move(cmd));
    }
    if (reply.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      return send_error(res, 503, "the job service did not answer");
    }
    try {
      auto [status, message] = reply.get();
      if (status == 200) {
        send_json(res, {{"job_id", message}, {"state", "cancelled"}});
      } else {
        send_error(res, status, message);
      }
    } catch (const std::future_error&) {
      send_error(res, 503, "the job service is stopping");
    }
  });
  port_ = opt_.port == 0 ? server.bind_to_any_port(opt_.bind) : opt_.port;
  if (opt_.port != 0 && !server.bind_to_port(opt_.bind, opt_.port)) port_ = -1;
  if (port_ <= 0) {
    throw SetupError(fmt::format("cannot serve HTTP on {}:{} (address in use or not local)",
                                 opt_.bind, opt_.port));
  }
  thread_ = std::thread([st] { st->server.listen_after_bind(); });
  // stop() is a no-op before the listen loop runs: wait for it, so the destructor cannot hang.
  for (int i = 0; i < 5000 && !server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

HttpService::~HttpService() {
  {
    // Commands nobody will run: their requests answer 503 at once instead of holding stop().
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    state_->commands.clear();
  }
  state_->server.stop();
  if (thread_.joinable()) thread_.join();
}

std::string HttpService::url() const {
  const std::string host = opt_.bind == "0.0.0.0" || opt_.bind.empty() ? "localhost" : opt_.bind;
  std::string u = fmt::format("http://{}:{}/", host.find(':') != std::string::npos
                                                   ? "[" + host + "]" : host, port_);
  if (!opt_.token.empty()) u += "?token=" + opt_.token;
  return u;
}

void HttpService::publish(FarmSnapshot snapshot) {
  auto s = std::make_shared<const FarmSnapshot>(std::move(snapshot));
  std::lock_guard lock(state_->mu);
  state_->history.add(*s);
  state_->snapshot = std::move(s);
}

std::vector<std::unique_ptr<Command>> HttpService::take_commands() {
  std::lock_guard lock(state_->mu);
  return std::exchange(state_->commands, {});
}

}  // namespace taskfarm::web
