#include "client/results.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/errors.h"
#include "common/net.h"
#include "common/protocol.h"
#include "common/signals.h"
#include "common/text.h"

namespace taskfarm::client {
namespace {

namespace fs = std::filesystem;

// Returns: the size of the index copy, cut back to its last whole line (a fetch interrupted
// while appending leaves no half line behind).
uint64_t resume_offset(const fs::path& index) {
  std::error_code ec;
  const uint64_t size = fs::file_size(index, ec);
  if (ec || size == 0) return 0;
  std::ifstream in(index, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t last = text.rfind('\n');
  const uint64_t whole = last == std::string::npos ? 0 : last + 1;
  if (whole != size) fs::resize_file(index, whole, ec);
  return whole;
}

void write_file(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = path.string() + ".part";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw SetupError(fmt::format("cannot write {}", tmp.string()));
  }
  fs::rename(tmp, path);
}

}  // namespace

std::string results_endpoint_near(const std::string& server) {
  if (server.find("://") != std::string::npos && server.rfind("tcp://", 0) != 0) return "";
  std::string host = server.rfind("tcp://", 0) == 0 ? server.substr(6) : server;
  const auto colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') == std::string::npos) host.resize(colon);
  if (colon != std::string::npos && host.find(']') != std::string::npos &&
      host.rfind(']') < colon) {
    host.resize(colon);
  }
  return fmt::format("tcp://{}:{}", host, default_port(kResultsServicePort));
}

int fetch_results(const FetchOptions& opt, const CurveOptions& curve_options) {
  const fs::path dir = opt.out_dir;
  std::error_code ec;
  fs::create_directories(dir / "outputs", ec);
  if (ec) {
    throw SetupError(fmt::format("cannot create {}: {}", (dir / "outputs").string(), ec.message()));
  }
  const fs::path index_path = dir / "index.jsonl";
  uint64_t offset = resume_offset(index_path);
  std::ofstream index(index_path, std::ios::binary | std::ios::app);
  if (!index) throw SetupError(fmt::format("cannot write {}", index_path.string()));

  zmq::context_t ctx{1};
  Curve curve(curve_options, ctx);
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  configure_socket(socket, kDefaultMaxMessageBytes);
  curve.make_client(socket);
  connect_socket(socket, opt.endpoint, "results service");

  uint64_t fetched = 0, bytes = 0;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  for (;;) {
    if (stop_requested()) {
      fmt::print(stderr, "taskfarm: interrupted; run the same command again to resume\n");
      return kExitInterrupted;
    }
    v1::Envelope req;
    req.mutable_results_request()->set_job_id(opt.job_id);
    req.mutable_results_request()->set_offset(offset);
    req.mutable_results_request()->set_max_bytes(uint64_t{16} << 20);
    socket.send(encode(req), zmq::send_flags::none);
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    // Wait in short steps, so that Ctrl-C is seen at once.
    zmq::message_t frame;
    bool got = false;
    for (int64_t waited = 0; waited < opt.timeout_ms && !got && !stop_requested(); waited += 100) {
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      got = (items[0].revents & ZMQ_POLLIN) && socket.recv(frame, zmq::recv_flags::dontwait);
    }
    if (!got) {
      if (stop_requested()) continue;
      throw SetupError(fmt::format("no answer from the results service at {} within {:.1f} s "
                                   "(is taskfarm-sink --serve running there? --sink HOST)",
                                   opt.endpoint, static_cast<double>(opt.timeout_ms) * 1e-3));
    }
    Decoded d = decode(frame);
    if (!d || !d.envelope->has_results_reply()) {
      throw SetupError(fmt::format("bad reply from {}", opt.endpoint));
    }
    const auto& reply = d.envelope->results_reply();
    if (!reply.error().empty()) {
      // Just submitted, the job may not have reached the sink: wait while the service runs it
      // (not when the sink knows the job, and so the state, and has no outputs of it).
      const bool sink_has_it = reply.state() != v1::JOB_STATE_UNSPECIFIED;
      if (opt.wait && !sink_has_it && opt.pending && opt.pending()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      throw SetupError(reply.error());
    }
    for (const auto& item : reply.items()) {
      // The output first, then its index line: a resumed fetch never has a line without it.
      const auto line = nlohmann::json::parse(item.index_line(), nullptr, false);
      if (line.is_object() && line.contains("output") && line.contains("task_id") &&
          line["task_id"].is_number_unsigned()) {
        write_file(dir / "outputs" / std::to_string(line["task_id"].get<uint64_t>()),
                   item.output());
        bytes += item.output().size();
      }
      index << item.index_line() << '\n';
      ++fetched;
    }
    index.flush();
    if (!index) throw SetupError(fmt::format("cannot write {}", index_path.string()));
    offset = reply.next_offset();
    state = reply.state();
    if (reply.complete()) break;
    if (reply.items_size() == 0) {
      if (!opt.wait) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (!opt.quiet) {
    fmt::print("{} index lines, {:.1f} MB of outputs in {}{}\n", fetched,
               static_cast<double>(bytes) * 1e-6, dir.string(),
               opt.wait ? "" : " (so far)");
  }
  if (!opt.wait) return kExitOk;
  return state == v1::JOB_DONE ? kExitOk : kExitTasksFailed;
}

}  // namespace taskfarm::client
