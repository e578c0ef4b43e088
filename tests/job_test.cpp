// Job files: the JSON mapping of v1::JobSpec, validation with one-line errors, lazy task ids.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "common/errors.h"
#include "ventilator/job.h"

namespace taskfarm::ventilator {
namespace {

std::string error_of(const std::string& json) {
  try {
    parse_job_json(json, "job.json");
  } catch (const SetupError& e) {
    return e.what();
  }
  return "";
}

TEST(Job, ParsesTheDesignExample) {
  auto job = parse_job_json(R"({ "name": "mandel-4k",
    "tasks": [ { "kernel": "mandelbrot", "count": 256, "size": 4096, "seed": 1 },
               { "kernel": "saxpy", "count": 1000, "size": 1048576 } ] })");
  EXPECT_EQ(job.name(), "mandel-4k");
  ASSERT_EQ(job.tasks_size(), 2);
  EXPECT_EQ(job.tasks(0).count(), 256u);
  EXPECT_EQ(job.max_attempts(), 0u);  // not filled in: the ventilator's --max-attempts applies
  Job j(9, job);
  EXPECT_EQ(j.total(), 1256u);
  v1::Task t;
  j.fill(255, &t);
  EXPECT_EQ(t.kernel(), "mandelbrot");
  EXPECT_EQ(t.index(), 255u);
  EXPECT_EQ(t.count(), 256u);
  j.fill(256, &t);
  EXPECT_EQ(t.kernel(), "saxpy");
  EXPECT_EQ(t.index(), 0u);
  EXPECT_EQ(t.job_id(), 9u);
  EXPECT_EQ(t.task_id(), 256u);
}

TEST(Job, InlinePayloadIsBase64) {
  // saxpy payload: a=2, x={1}, y={3} -> 12 bytes
  auto job = parse_job_json(
      R"({"tasks": [{"kernel": "saxpy", "count": 1, "payload": "AAAAQAAAgD8AAEBA"}]})");
  EXPECT_EQ(job.tasks(0).payload().size(), 12u);
  EXPECT_EQ(job.name(), "saxpy");
}

TEST(Job, RejectsBadJobsWithOneLineMessages) {
  struct Case {
    const char* json;
    const char* expect;
  } cases[] = {
      {"{", "invalid job"},
      {R"({"tasks": []})", "no tasks"},
      {R"({"tasks": [{"kernel": "fft", "count": 1}]})", "unknown kernel 'fft'"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 0}]})", "count is 0"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "size": -5}]})", "-5"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "size": 1000000000000}]})", "1000000000000"},
      {R"({"tasks": [{"kernel": "saxpy", "count": -1}]})", "invalid job"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "colour": "red"}]})", "colour"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 4294967295}, {"kernel": "noop", "count": 5}]})",
       "more than"},
      {R"({"tasks": [{"kernel": "sleep", "count": 1, "payload": "AAAA"}]})", "sleep"},
  };
  for (const auto& c : cases) {
    const std::string err = error_of(c.json);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.json << " -> '" << err << "'";
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
}

TEST(Job, MissingFileNamesThePath) {
  try {
    load_job_file("/nonexistent/job.json");
    FAIL();
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/job.json"), std::string::npos);
  }
}

TEST(Job, NameDefaultsToTheFileName) {
  const std::string path = testing::TempDir() + "/sweep-7.json";
  std::ofstream(path) << R"({"tasks": [{"kernel": "noop", "count": 3}]})";
  EXPECT_EQ(load_job_file(path).name(), "sweep-7");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace taskfarm::ventilator
