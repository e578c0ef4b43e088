// Job files: the JSON mapping of v1::JobSpec, validation with one-line errors, lazy task ids.
#include <gtest/gtest.h>

#include <set>

#include <cstdio>
#include <fstream>

#include "common/errors.h"
#include "jobs/job.h"

namespace taskfarm::jobs {
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
      {R"({"tasks": [{"kernel": "f/t", "count": 1}]})", "'f/t' is not a kernel name"},
      {R"({"tasks": [{"kernel": "", "count": 1}]})", "is not a kernel name"},
      {R"({"tasks": [{"kernel": "fft", "count": 1, "size": -1}]})", "negative size -1"},
      {R"({"tasks": [{"kernel": "fft", "count": 1, "argv": ["x"]}]})", "for the exec kernel"},
      {R"({"tasks": [{"kernel": "exec", "count": 1}]})", "exec needs argv"},
      {R"({"tasks": [{"kernel": "exec", "count": 1, "argv": ["a", "{nope}"]}]})",
       "unknown placeholder {nope}"},
      {R"({"tasks": [{"kernel": "exec", "count": 1, "argv": ["a", "{index"]}]})", "unclosed"},
      {R"({"tasks": [{"kernel": "exec", "count": 1, "argv": ["a"], "timeout_s": -1}]})",
       "timeout_s"},
      {R"({"tasks": [{"kernel": "noop", "count": 3, "params": [{"x": 1}]}]})",
       "count 3 but params has 1 points"},
      {R"({"tasks": [{"kernel": "noop", "params": [{"x": [1]}]}]})", "number, a string or a boolean"},
      {R"({"tasks": [{"kernel": "noop", "params": [{"1x": 1}]}]})", "not a parameter name"},
      {R"({"tasks": [{"kernel": "noop", "params": {"grid": {"x": []}}}]})", "non-empty list"},
      {R"({"tasks": [{"kernel": "noop", "params": {"x": [1]}}]})", "expected a list of points"},
      {R"({"tasks": [{"kernel": "noop", "params": 5}]})", "expected a list of points"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 0}]})", "count is 0"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "size": -5}]})", "-5"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "size": 1000000000000}]})", "1000000000000"},
      {R"({"tasks": [{"kernel": "saxpy", "count": -1}]})", "invalid job"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 1, "colour": "red"}]})", "colour"},
      {R"({"tasks": [{"kernel": "saxpy", "count": 4294967295, "size": 8}, {"kernel": "noop", "count": 5}]})",
       "more than"},
      // A missing size is 0 in JSON: an error for every kernel but noop, unless a payload gives it.
      {R"({"tasks": [{"kernel": "saxpy", "count": 10}]})", "entry 1 (saxpy): needs a size (elements n)"},
      {R"({"tasks": [{"kernel": "noop", "count": 1}, {"kernel": "sleep", "count": 1, "size": 0}]})",
       "entry 2 (sleep): needs a size"},
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

// A kernel the ventilator does not know is a plugin's: its job is accepted (the workers that
// load the plugin check its tasks) and waits for one of them.
TEST(Job, AcceptsPluginKernelsByName) {
  auto job = parse_job_json(R"({"tasks": [{"kernel": "blackscholes.price", "count": 4,
                                             "size": 1000, "payload": "AAAA"}]})");
  EXPECT_EQ(job.tasks(0).kernel(), "blackscholes.price");
  EXPECT_EQ(job.name(), "blackscholes.price");
}

TEST(Job, SweepsExpandIntoOneTaskPerPoint) {
  auto list = parse_job_json(R"({"tasks": [{"kernel": "exec", "argv": ["sim", "{x}", "{mode}"],
      "params": [{"x": 1, "mode": "fast"}, {"x": 2.5, "mode": "slow"}, {"x": -3, "mode": "a b"}]}]})");
  ASSERT_EQ(list.tasks(0).count(), 3u);
  Job lj(1, list);
  v1::Task t;
  lj.fill(1, &t);
  ASSERT_EQ(t.params_size(), 2);
  EXPECT_EQ(t.params(0).key(), "mode");  // keys in alphabetical order
  EXPECT_EQ(t.params(0).value(), "slow");
  EXPECT_EQ(t.params(1).key(), "x");
  EXPECT_EQ(t.params(1).value(), "2.5");
  ASSERT_EQ(t.argv_size(), 3);
  EXPECT_EQ(t.argv(1), "{x}");  // expanded by the worker, which knows the attempt too

  auto grid = parse_job_json(R"({"tasks": [{"kernel": "noop",
      "params": {"grid": {"y": ["a", "b", "c"], "x": [1, 2], "flag": [true]}}}]})");
  ASSERT_EQ(grid.tasks(0).count(), 6u);
  Job gj(2, grid);
  std::set<std::string> points;
  for (uint64_t i = 0; i < 6; ++i) {
    v1::Task g;
    gj.fill(i, &g);
    ASSERT_EQ(g.params_size(), 3);
    EXPECT_EQ(g.params(0).value(), "true");
    points.insert(g.params(1).value() + g.params(2).value());
  }
  EXPECT_EQ(points, (std::set<std::string>{"1a", "1b", "1c", "2a", "2b", "2c"}));
  v1::Task last;
  gj.fill(5, &last);  // the last key varies fastest
  EXPECT_EQ(last.params(1).value() + last.params(2).value(), "2c");
  v1::Task second;
  gj.fill(1, &second);
  EXPECT_EQ(second.params(1).value() + second.params(2).value(), "1b");
}

}  // namespace
}  // namespace taskfarm::jobs
