#include "client/job_client.h"

#include <fmt/core.h>

#include "common/errors.h"
#include "common/net.h"

namespace taskfarm::client {

JobClient::JobClient(std::string endpoint, int64_t timeout_ms, const CurveOptions& curve)
    : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms), curve_(curve, ctx_) {
  connect();
}

void JobClient::connect() {
  configure_socket(socket_, kMaxControlMessageBytes);
  curve_.make_client(socket_);
  connect_socket(socket_, endpoint_, "job service");
}

v1::Envelope JobClient::call(v1::Envelope& request) {
  socket_.send(encode(request), zmq::send_flags::none);  // queued until connected
  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, 1, std::chrono::milliseconds(timeout_ms_));
  zmq::message_t frame;
  if (!(items[0].revents & ZMQ_POLLIN) || !socket_.recv(frame, zmq::recv_flags::dontwait)) {
    // A reply to this request may still come: on a fresh socket it is never read.
    socket_ = zmq::socket_t(ctx_, zmq::socket_type::dealer);
    connect();
    throw NoAnswer(fmt::format(
        "no answer from the job service at {} within {:.1f} s (is taskfarm-ventilator --serve "
        "running?)",
        endpoint_, static_cast<double>(timeout_ms_) * 1e-3));
  }
  Decoded d = decode(frame);
  if (!d) throw SetupError(fmt::format("bad reply from {}: {}", endpoint_, d.error));
  return std::move(*d.envelope);
}

std::string JobClient::submit(const v1::JobSpec& job) {
  v1::Envelope req;
  *req.mutable_submit()->mutable_job() = job;
  const size_t bytes = req.ByteSizeLong();
  if (bytes > kSmallRequestBytes) {
    // The service drops a connection that sends more than its limit: ask for it first, so a
    // big job is a clear error rather than a silence.
    v1::Envelope info_req;
    info_req.mutable_service_info_request();
    const v1::Envelope info = call(info_req);
    if (info.has_service_info() && bytes > info.service_info().max_job_bytes()) {
      throw SetupError(fmt::format(
          "the job is {:.1f} MiB, above the job service's limit of {:.1f} MiB "
          "(taskfarm-ventilator --max-job-mb)",
          static_cast<double>(bytes) / (1 << 20),
          static_cast<double>(info.service_info().max_job_bytes()) / (1 << 20)));
    }
  }
  const v1::Envelope rep = call(req);
  if (!rep.has_submit_reply()) throw SetupError("unexpected reply to submit");
  if (!rep.submit_reply().error().empty()) throw SetupError(rep.submit_reply().error());
  return rep.submit_reply().job_id();
}

v1::StatusReply JobClient::status(const std::string& job) {
  v1::Envelope req;
  req.mutable_status()->set_job(job);
  v1::Envelope rep = call(req);
  if (!rep.has_status_reply()) throw SetupError("unexpected reply to status");
  if (!rep.status_reply().error().empty()) throw SetupError(rep.status_reply().error());
  return std::move(*rep.mutable_status_reply());
}

std::string JobClient::cancel(const std::string& job) {
  v1::Envelope req;
  req.mutable_cancel()->set_job(job);
  const v1::Envelope rep = call(req);
  if (!rep.has_cancel_reply()) throw SetupError("unexpected reply to cancel");
  if (!rep.cancel_reply().error().empty()) throw SetupError(rep.cancel_reply().error());
  return rep.cancel_reply().job_id();
}

}  // namespace taskfarm::client
