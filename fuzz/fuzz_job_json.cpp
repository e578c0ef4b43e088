// libFuzzer target: a job file (taskfarm-ventilator --job FILE). parse_job_json must either
// return a valid job or throw SetupError with a message; any other exception, crash or sanitizer
// report is a finding. A job it accepts must expand into tasks that every worker accepts (the
// ventilator checks sizes so that workers never see impossible tasks).
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <string>

#include "common/errors.h"
#include "job_checks.h"

// protobuf logs some parse problems at ERROR level: noise at fuzzing speed.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskfarm;
  const std::string json(reinterpret_cast<const char*>(data), size);
  v1::JobSpec spec;
  try {
    spec = jobs::parse_job_json(json, "fuzz.json", "fuzz");
  } catch (const SetupError& e) {
    if (std::string(e.what()).empty()) fuzz::fail("SetupError without a message");
    return 0;
  }
  fuzz::check_accepted_job(spec);
  return 0;
}
