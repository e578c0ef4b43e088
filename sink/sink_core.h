// The sink's state machine without sockets: frames from the results socket go in, acks and
// control messages come out through a callback, reports and artifacts go to files. The socket
// loop (sink.cpp), the unit tests and the fuzzers all drive this one class, so what they test is
// what runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/protocol.h"
#include "sink/sink.h"

namespace taskfarm::sink {

class SinkCore {
 public:
  // Sends [topic][envelope] on the control socket.
  using Publish = std::function<void(std::string_view topic, v1::Envelope& envelope)>;

  // With options.state_dir, opens the journal there and continues the jobs it holds.
  // Throws: SetupError when the state folder or its journal cannot be used.
  SinkCore(const SinkOptions& options, const Clock& clock, Publish publish);
  ~SinkCore();
  SinkCore(const SinkCore&) = delete;
  SinkCore& operator=(const SinkCore&) = delete;

  // Handles one frame of the results socket (`more`: it is part of a multipart message;
  // `from_head`: its sender's key has the head role, always true without CURVE: workers share
  // the socket, and job starts and cancels are taken from the head only).
  // Never throws: a frame it cannot use is counted as rejected and dropped.
  // `peer` names the sender for the log when the frame is rejected (may be empty).
  void on_frame(const void* data, size_t size, bool more,
                const std::function<std::string()>& peer = {}, bool from_head = true);

  // Commits the journal (with --state), then publishes the acknowledgements gathered since
  // the last call (one message per job). While the journal cannot be written, the acks wait;
  // with `now` false they also wait for options.min_commit_gap_ms since the last commit.
  void flush_acks(bool now = true);
  // Returns: how long the event loop may wait for messages before the next flush_acks(false)
  // (short while acks wait for the commit gap), in ms.
  int64_t wait_ms() const;

  // Publishes the sink's heartbeat (its epoch, and any journal error) four times a second.
  void heartbeat();

  // Reports every complete job. Returns: in one-shot mode, the exit code once its batch is over
  // (complete or interrupted); nullopt otherwise.
  std::optional<int> finish_complete_jobs();

  // Logs progress of the active jobs (at most every 5 s).
  void progress();

  // Publishes the sink's totals for the ventilator's /metrics (issue 16), twice a second.
  void publish_stats();

  // Stops: in one-shot mode the active batch gets a partial report (state "interrupted"),
  // which is also published so that the ventilator and the workers end it too.
  // Returns: the exit code (130 for an interrupted one-shot batch, 0 in serve mode).
  int stop();

  // Answers a client of the results service (`taskfarm results`). Never throws.
  // Returns: the reply (without a body for a request it does not serve).
  v1::Envelope on_client_request(const v1::Envelope& request);

  // Returns: frames rejected since start (undecodable, out of place, invalid fields).
  uint64_t rejected() const;
  // Returns: jobs being aggregated now.
  size_t active_jobs() const;
  // Returns: this process's epoch (random; a restarted sink has another one).
  uint64_t epoch() const;
  // Returns: why the journal cannot be written now ("" when it can, or without one).
  const std::string& journal_error() const;
  // Returns: transactions committed to the journal (0 without one).
  uint64_t journal_commits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskfarm::sink
