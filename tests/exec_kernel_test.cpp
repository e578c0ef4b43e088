// The `exec` kernel's working folders, with real commands: every task starts in an empty folder
// that no running task shares, whatever the tasks before it left there; nothing stays in the
// worker's --exec-dir afterwards.
#include "worker/exec_kernel.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "worker/exec_runner.h"

namespace {

namespace fs = std::filesystem;
using taskfarm::kernels::KernelDef;
using taskfarm::kernels::TaskInput;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "exec-kernel-test-XXXXXX").string();
    path = mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs one shell command as task `task_id`. Returns: its stdout.
std::string run(const KernelDef& def, const std::string& script, uint64_t task_id = 0) {
  const std::vector<std::string> argv = {script};
  TaskInput in;
  in.task_id = task_id;
  in.command.argv = &argv;
  in.command.shell = true;
  std::string out;
  in.output = &out;
  def.native(in);
  return out;
}

TEST(ExecKernel, EachTaskStartsInAnEmptyFolderWhateverTheTaskBeforeLeft) {
  TempDir dir;
  const KernelDef def = taskfarm::worker::exec_kernel(
      std::make_shared<taskfarm::worker::ExecRunner>(), dir.path.string());
  const std::string first = run(def,
                                "pwd; touch a .hidden; mkdir -p sub/deeper; echo x > sub/deeper/f; "
                                "ln -s / root-link");
  ASSERT_FALSE(first.empty());
  const std::string folder = first.substr(0, first.size() - 1);
  EXPECT_EQ(fs::path(folder).parent_path(), dir.path);
  for (int i = 0; i < 3; ++i) {
    // The same folder again (one task at a time), empty.
    EXPECT_EQ(run(def, "pwd; ls -A"), folder + "\n");
  }
  EXPECT_TRUE(fs::exists("/bin/sh"));  // the symlink was removed, not followed
}

TEST(ExecKernel, AFolderATaskRemovedIsReplacedByANewOne) {
  TempDir dir;
  const KernelDef def = taskfarm::worker::exec_kernel(
      std::make_shared<taskfarm::worker::ExecRunner>(), dir.path.string());
  const std::string gone = run(def, "pwd; cd /; rmdir \"$OLDPWD\"");
  const std::string next = run(def, "pwd; ls -A");
  EXPECT_NE(next, gone);
  EXPECT_TRUE(fs::is_directory(next.substr(0, next.size() - 1)));
  EXPECT_FALSE(fs::exists(gone.substr(0, gone.size() - 1)));
}

TEST(ExecKernel, ConcurrentTasksNeverShareAFolderAndNothingIsLeftBehind8threads) {
  TempDir dir;
  std::set<std::string> folders;
  {
    const KernelDef def = taskfarm::worker::exec_kernel(
        std::make_shared<taskfarm::worker::ExecRunner>(), dir.path.string());
    std::vector<std::thread> threads;
    std::vector<std::vector<std::string>> seen(8);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (uint64_t i = 0; i < 15; ++i) {
          const uint64_t id = static_cast<uint64_t>(t) * 100 + i;
          // noclobber: a folder two running tasks shared would fail the second's write.
          const std::string script =
              "set -C; ls -A; echo $TASKFARM_TASK_ID > owner && sleep 0.01 && cat owner; pwd";
          seen[static_cast<size_t>(t)].push_back(run(def, script, id) + "|" + std::to_string(id));
        }
      });
    }
    for (auto& th : threads) th.join();
    for (const auto& outs : seen) {
      for (const auto& s : outs) {
        const auto bar = s.rfind('|');
        const std::string id = s.substr(bar + 1);
        const std::string out = s.substr(0, bar);
        // Empty at the start (ls printed nothing), then its own id back.
        ASSERT_EQ(out.rfind(id + "\n", 0), 0u) << out;
        folders.insert(out.substr(id.size() + 1));
      }
    }
    EXPECT_LE(folders.size(), 8u);  // reused: at most one per task running at once
  }
  // Destroying the kernel removes its folders; a shared --exec-dir keeps nothing of ours.
  EXPECT_TRUE(fs::is_empty(dir.path)) << fs::directory_iterator(dir.path)->path();
}

}  // namespace
