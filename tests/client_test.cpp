// `taskfarm results` against a scripted results service on a real socket: a job the sink does
// not know yet (just submitted) is waited for while the job service still runs it.
#include <gtest/gtest.h>
#include <zmq.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/results.h"
#include "common/errors.h"
#include "common/protocol.h"

namespace taskfarm::client {
namespace {

namespace fs = std::filesystem;
constexpr const char* kJob = "00000000000000aa";

// Answers each request with the next of `replies` (the last one again when they run out).
class ScriptedSink {
 public:
  explicit ScriptedSink(std::vector<v1::ResultsReply> replies)
      : dir_(fs::temp_directory_path() /
             ("taskfarm-client-test-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter_++))),
        replies_(std::move(replies)) {
    fs::create_directories(dir_);
    endpoint_ = "ipc://" + (dir_ / "svc").string();
    socket_.bind(endpoint_);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedSink() {
    stop_ = true;
    thread_.join();
    fs::remove_all(dir_);
  }
  const std::string& endpoint() const { return endpoint_; }
  fs::path out() const { return dir_ / "out"; }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(20));
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      zmq::message_t peer, body;
      (void)socket_.recv(peer);
      (void)socket_.recv(body);
      const size_t i = std::min<size_t>(requests_++, replies_.size() - 1);
      v1::Envelope reply;
      *reply.mutable_results_reply() = replies_[i];
      socket_.send(peer, zmq::send_flags::sndmore);
      socket_.send(encode(reply), zmq::send_flags::none);
    }
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::vector<v1::ResultsReply> replies_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
};

v1::ResultsReply error_reply(const std::string& error) {
  v1::ResultsReply r;
  r.set_error(error);
  return r;
}

v1::ResultsReply one_output_reply() {
  v1::ResultsReply r;
  auto* item = r.add_items();
  item->set_index_line(R"({"task_id": 0, "status": "ok", "output": "outputs/0"})");
  item->set_output("hello");
  r.set_next_offset(60);
  r.set_complete(true);
  r.set_state(v1::JOB_DONE);
  return r;
}

FetchOptions options(const ScriptedSink& sink, std::function<bool()> pending) {
  FetchOptions f;
  f.endpoint = sink.endpoint();
  f.job_id = kJob;
  f.out_dir = sink.out().string();
  f.quiet = true;
  f.timeout_ms = 5000;
  f.pending = std::move(pending);
  return f;
}

const std::string kNotHere =
    std::string("no outputs of job ") + kJob + " here (not a job of this sink, or none)";

TEST(Results, AJobTheSinkDoesNotKnowYetIsWaitedForWhileTheServiceRunsIt) {
  ScriptedSink sink({error_reply(kNotHere), error_reply(kNotHere), one_output_reply()});
  int asked = 0;
  EXPECT_EQ(fetch_results(options(sink, [&] { return ++asked > 0; }), CurveOptions{}), 0);
  EXPECT_EQ(asked, 2);
  EXPECT_EQ(sink.requests(), 3);
  std::ifstream in(sink.out() / "outputs" / "0");
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_EQ(s.str(), "hello");
}

TEST(Results, AJobTheServiceNoLongerRunsIsAnErrorAtOnce) {
  ScriptedSink sink({error_reply(kNotHere)});
  int asked = 0;
  try {
    (void)fetch_results(options(sink, [&] { return ++asked == 0; }), CurveOptions{});
    ADD_FAILURE() << "no error";
  } catch (const SetupError& e) {
    EXPECT_EQ(std::string(e.what()), kNotHere);
  }
  EXPECT_EQ(asked, 1);
}

TEST(Results, AJobWhoseKernelsWriteNoOutputsIsNotWaitedFor) {
  // The sink has the job (it says its state) and no outputs of it.
  v1::ResultsReply running = error_reply(std::string("job ") + kJob + " returns no outputs (...)");
  running.set_state(v1::JOB_RUNNING);
  ScriptedSink sink({running});
  int asked = 0;
  EXPECT_THROW((void)fetch_results(options(sink, [&] { return ++asked > 0; }), CurveOptions{}),
               SetupError);
  EXPECT_EQ(asked, 0);
}

}  // namespace
}  // namespace taskfarm::client
