// The ventilator: binds the task socket (ROUTER; workers are DEALERs that ask for work with
// credits), tells the sink about each batch, and hands out tasks under leases: a task held by
// a worker that goes silent is issued again, and the sink's acknowledgements close them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/protocol.h"
#include "ventilator/dispatcher.h"

namespace taskfarm::ventilator {

struct VentilatorOptions {
  std::string tasks_bind = "tcp://*:5557";
  std::string sink_results = "tcp://localhost:5558";  // PUSH: batch start, give-ups
  std::string sink_control = "tcp://localhost:5559";  // SUB: acks, batch end
  DispatchPolicy policy;
  int64_t heartbeat_ms = 500;
  int64_t sink_wait_ms = 0;  // give up when the sink does not answer for this long (0: never)
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  bool quiet = false;
};

class Ventilator {
 public:
  // Binds the task socket and connects to the sink. Throws: SetupError.
  explicit Ventilator(VentilatorOptions options, const Clock& clock = SystemClock::instance());
  ~Ventilator();

  const std::string& tasks_endpoint() const;

  // Runs one batch to completion (every task acknowledged by the sink).
  // Returns: 0 when all tasks succeeded, 2 when some failed, 1 when the sink never answered,
  // 130 when interrupted.
  int run_batch(v1::JobSpec spec);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskfarm::ventilator
