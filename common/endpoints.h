// The flags that say where the sink is, shared by the ventilator and the worker:
// --sink HOST (both sink ports on HOST) or --sink-results / --sink-control endpoints.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "common/net.h"
#include "common/protocol.h"

namespace taskfarm {

struct SinkEndpoints {
  std::string host = "localhost";
  std::string results;  // overrides host
  std::string control;  // overrides host

  void add_flags(CLI::App& app) {
    app.add_option("--sink", host, "host of the sink (results port 5558, control port 5559)")
        ->capture_default_str();
    app.add_option("--sink-results", results, "sink results endpoint (overrides --sink)");
    app.add_option("--sink-control", control, "sink control endpoint (overrides --sink)");
  }
  std::string results_endpoint() const {
    return connect_endpoint(results.empty() ? host : results, kResultsPort);
  }
  std::string control_endpoint() const {
    return connect_endpoint(control.empty() ? host : control, kControlPort);
  }
};

}  // namespace taskfarm
