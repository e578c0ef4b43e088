// libFuzzer target: a job file (taskfarm-ventilator --job FILE, taskfarm submit FILE).
// parse_job_json must either return a valid job or throw SetupError with a one-line message; any
// other exception, crash or sanitizer report is a finding. A job it accepts must expand into
// tasks that every worker accepts, and must be what the JSON says: checked against nlohmann's
// DOM parser, an oracle independent of the strict pre-pass (common/strict_json.h), no key given
// twice in one object and no number written as a string.
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/errors.h"
#include "job_checks.h"

namespace {

using Json = nlohmann::json;

// Returns: whether some object in `json` has a key twice. protobuf names a field by its proto
// name or its JSON name: the two JobSpec fields where they differ count as one key.
bool has_duplicate_keys(const std::string& json) {
  std::vector<std::set<std::string>> objects;
  bool duplicate = false;
  const Json::parser_callback_t seen = [&](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) objects.emplace_back();
    if (event == Json::parse_event_t::object_end && !objects.empty()) objects.pop_back();
    if (event == Json::parse_event_t::key && !objects.empty()) {
      std::string key = parsed.get<std::string>();
      if (key == "maxAttempts") key = "max_attempts";
      if (key == "keepOutput") key = "keep_output";
      duplicate |= !objects.back().insert(key).second;
    }
    return true;
  };
  (void)Json::parse(json, seen, /*allow_exceptions=*/false);
  return duplicate;
}

// Fails unless `value`, when present, is a JSON number (or null, protobuf's default).
void expect_number(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return;
  const Json& v = object.at(key);
  if (!v.is_number() && !v.is_null()) taskfarm::fuzz::fail("accepted a non-number for", key);
}

// Checks an accepted job against the JSON it came from.
void check_against_dom(const std::string& json, const taskfarm::v1::JobSpec& spec) {
  using taskfarm::fuzz::fail;
  if (has_duplicate_keys(json)) fail("accepted a job with a key given twice");
  const Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) fail("accepted a job that is not a JSON object");
  for (const char* key : {"max_attempts", "maxAttempts", "priority"}) expect_number(doc, key);
  const auto tasks = doc.find("tasks");
  const size_t entries = tasks == doc.end() || tasks->is_null() ? 0 : tasks->size();
  if (entries != static_cast<size_t>(spec.tasks_size())) {
    fail("accepted job's entries differ from its JSON array", std::to_string(entries));
  }
  for (size_t i = 0; i < entries; ++i) {
    const Json& entry = (*tasks)[i];
    for (const char* key : {"count", "size", "seed"}) expect_number(entry, key);
    const auto count = entry.find("count");
    // A count of 0 with a sweep becomes the number of points.
    if (count != entry.end() && count->is_number_unsigned() && count->get<uint64_t>() != 0 &&
        count->get<uint64_t>() != spec.tasks(static_cast<int>(i)).count()) {
      fail("accepted job's count differs from its JSON");
    }
  }
  const auto name = doc.find("name");
  if (name != doc.end() && name->is_string() && !name->get<std::string>().empty() &&
      name->get<std::string>() != spec.name()) {
    fail("accepted job's name differs from its JSON");
  }
}

}  // namespace

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
    const std::string what = e.what();
    if (what.empty()) fuzz::fail("SetupError without a message");
    for (const char c : what) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) fuzz::fail("error message with a control character", what);
    }
    return 0;
  }
  check_against_dom(json, spec);
  fuzz::check_accepted_job(spec);
  return 0;
}
