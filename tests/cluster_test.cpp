// Cluster tests: the launchers against the real cluster software, on this machine. A Slurm
// cluster (munged, slurmctld and slurmd from Debian's slurm-wlm) runs
// examples/slurm/taskfarm.sbatch; a real OpenSSH server runs scripts/launch_ssh.sh; the .deb made
// by cpack is installed with apt-get on a clean Debian 12 (debootstrap) and runs a batch with the
// installed programs, and the .tar.gz runs one on the same Debian without its libraries.
// Missing packages are installed (tests/cluster/ensure_packages.sh); a test skips, with the
// reason, only where that is impossible (not root, no package archive).
//
// Daemons run as the init of a private PID namespace (unshare --pid --kill-child): when the
// test ends, however it ends (failure, crash, ctest timeout), the kernel ends the daemons and
// everything they started. The programs are run from a private copy (`private_prefix`), so
// that the processes of a test are found by their executable's path whoever started them (sshd,
// slurmstepd).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <functional>
#include <map>
#include <set>

#include "farm.h"
#include "netns.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;
using netns::run_command;

const std::string kSource = TASKFARM_SOURCE_DIR;
const std::string kScripts = kSource + "/tests/cluster/";

// Returns: why `packages` cannot be had here, after installing those that are missing; nullopt
// when all are installed.
std::optional<std::string> unavailable(std::initializer_list<const char*> packages) {
  if (geteuid() != 0) return "needs root (daemons, packages)";
  std::string cmd = kScripts + "ensure_packages.sh";
  for (const char* p : packages) cmd += std::string(" ") + p;
  auto r = run_command(cmd + " 2>/dev/null");
  if (r.rc == 0) return std::nullopt;
  return r.output.empty() ? "cannot install " + cmd : r.output;
}

#define SKIP_UNLESS_PACKAGES(...)                                                     \
  do {                                                                                \
    if (auto _why = unavailable({__VA_ARGS__})) GTEST_SKIP() << "cluster: " << *_why; \
  } while (0)

// Returns: a TCP port on 127.0.0.1 that nothing listens on now (0 if none could be bound).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

bool port_free(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// Returns: P such that P .. P+n-1 are free (a farm's tasks, results, control, submit ports).
int free_port_base(int n = 3) {
  for (int i = 0; i < 100; ++i) {
    const int p = free_port();
    bool ok = p > 0 && p < 65000;
    for (int k = 1; ok && k < n; ++k) ok = port_free(p + k);
    if (ok) return p;
  }
  return 0;
}

// Copies the four programs to DIR/bin. Returns: DIR.
std::string private_prefix(const std::string& dir) {
  std::filesystem::create_directories(dir + "/bin");
  for (const char* p : {"taskfarm", "taskfarm-sink", "taskfarm-worker", "taskfarm-ventilator"}) {
    std::filesystem::copy_file(bin(p), dir + "/bin/" + p,
                               std::filesystem::copy_options::overwrite_existing);
  }
  return dir;
}

// Returns: "pid: command line" of every process whose executable is under `prefix`.
std::vector<std::string> processes_under(const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink(e.path() / "exe", ec).string();
    if (ec || exe.rfind(prefix + "/", 0) != 0) continue;
    std::string cmdline = read_file(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    out.push_back(pid + ": " + cmdline);
  }
  return out;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// Returns: true once `ready()` holds, false after `timeout`.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return ready();
}

std::optional<v1::Report> parse_report(const std::string& path) {
  const std::string json = read_file(path);
  v1::Report rep;
  if (json.empty() || !google::protobuf::util::JsonStringToMessage(json, &rep).ok()) {
    return std::nullopt;
  }
  return rep;
}

// argv that runs `argv` as the init of a new PID namespace (see the file comment).
// Flags before the program (e.g. "--mount") are unshare's.
std::vector<std::string> in_pid_namespace(std::vector<std::string> argv) {
  std::vector<std::string> out = {netns::find_program("unshare"), "--pid", "--fork", "--kill-child",
                                  "--mount-proc"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

constexpr const char* kJob = R"({ "name": "cluster", "tasks": [
  { "kernel": "saxpy", "count": 40, "size": 20000, "seed": 3 },
  { "kernel": "sort", "count": 20, "size": 5000, "seed": 4 },
  { "kernel": "sleep", "count": 40, "size": 50000 } ] })";

// Long enough to be interrupted while every process runs: 2 x 1-slot workers, ~25 s.
constexpr const char* kLongJob = R"({ "name": "long", "tasks": [
  { "kernel": "sleep", "count": 100, "size": 500000 } ] })";

// ------------------------------------------------------------------------------------- Slurm

const std::string kSbatch = kSource + "/examples/slurm/taskfarm.sbatch";

// A two-node Slurm cluster of this test's own (tests/cluster/slurm_cluster.sh): slurmctld on the
// "head" network namespace, slurmd on nodes node-n1 and node-n2, each a namespace with its own
// address and host name, routed to each other through the head (tests/netns.h). Its folder has
// a short name: munge's socket path must fit in 108 bytes.
class SlurmCluster {
 public:
  static constexpr const char* kNodes[] = {"n1", "n2"};

  // `gpus`: stand-in GPUs per node (see slurm_cluster.sh).
  explicit SlurmCluster(const Farm& farm, int gpus = 0)
      : farm_(farm),
        dir_("/tmp/tfslurm-" + std::to_string(getpid()) + "-" + std::to_string(Farm::next_id())) {
    sweep_stale_folders();
    std::filesystem::remove_all(dir_);
    std::vector<std::string> args = {kScripts + "slurm_cluster.sh", dir_, lab_.ns_name("head"),
                                     netns::Lab::kHeadAddress,      "2",  std::to_string(gpus)};
    for (const char* n : kNodes) {
      lab_.add_host(n);
      args.push_back(lab_.ns_name(n) + "=node-" + n + "=" + lab_.host_address(n));
    }
    lab_.route_between_hosts();
    daemons_.emplace(in_pid_namespace(args), farm.path("slurm-daemons"));
  }
  ~SlurmCluster() {
    daemons_.reset();  // ends every daemon and job first
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Removes the folders of test processes that were killed (their daemons died with them).
  static void sweep_stale_folders() {
    for (const auto& e : std::filesystem::directory_iterator("/tmp")) {
      const std::string name = e.path().filename();
      if (name.rfind("tfslurm-", 0) != 0) continue;
      const pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + 8));
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove_all(e.path());
    }
  }

  // Returns: true once every node accepts jobs.
  bool wait_ready(std::chrono::milliseconds timeout) {
    return wait_until(
               [&] {
                 return !daemons_->running() ||
                        daemons_->out().find("slurm ready") != std::string::npos;
               },
               timeout) &&
           daemons_->running();
  }

  // Returns: `command` (a shell command line) run in farm's folder against this cluster.
  netns::CommandResult run(const std::string& command) const {
    return run_command(netns::find_program("ip") + " netns exec " + lab_.ns_name("head") +
                       " sh -c 'cd " + farm_.path("") + " && SLURM_CONF=" + dir_ + "/slurm.conf " +
                       command + "'");
  }

  // Returns: sbatch started in farm's folder with `args` and the programs from `prefix`.
  Process sbatch(const std::string& args, const std::string& prefix) const {
    return Process(
        lab_.exec("head", {"/bin/sh", "-c", "cd " + farm_.path("") + " && exec sbatch " + args}),
        farm_.path("sbatch"), {"SLURM_CONF=" + dir_ + "/slurm.conf", "TASKFARM_PREFIX=" + prefix});
  }

  // Returns: the daemons' output and the end of their logs, for failure messages.
  std::string logs() const {
    return daemons_->err() + daemons_->out() + run_command("tail -n 20 " + dir_ + "/*.log").output;
  }

 private:
  const Farm& farm_;
  std::string dir_;
  netns::Lab lab_;  // destroyed after the daemons
  std::optional<Process> daemons_;
};

#define SKIP_WITHOUT_SLURM()                                                         \
  do {                                                                               \
    if (auto _why = netns::Lab::unavailable()) GTEST_SKIP() << "cluster: " << *_why; \
    SKIP_UNLESS_PACKAGES("slurmctld", "slurmd", "slurm-client", "munge");            \
  } while (0)

// sbatch --parsable prints "ID" or "ID;cluster".
std::string job_id(const Process& sbatch) {
  std::string out = trim(sbatch.out());
  return out.substr(0, out.find(';'));
}

TEST(Slurm, SbatchRunsABatchToCompletionAndTheReportIsWhereTheScriptSays) {
  SKIP_WITHOUT_SLURM();
  const std::string expected = clean_digest(kJob);
  Farm farm;
  SlurmCluster slurm(farm);
  ASSERT_TRUE(slurm.wait_ready(30s)) << slurm.logs();
  const std::string prefix = private_prefix(farm.path("prefix"));
  farm.write("job.json", kJob);
  auto sbatch = slurm.sbatch("--wait --parsable " + kSbatch + " job.json", prefix);
  EXPECT_EXIT_CODE(sbatch, 0, 90s);
  const std::string id = job_id(sbatch);
  ASSERT_FALSE(id.empty()) << sbatch.err();
  const std::string output = read_file(farm.path("taskfarm-" + id + ".out"));
  const auto report = parse_report(farm.path("taskfarm-" + id + ".json"));
  ASSERT_TRUE(report) << "no report taskfarm-" << id << ".json; job output:\n" << output;
  EXPECT_EQ(report->tasks_ok(), 100u) << output;
  EXPECT_EQ(report->tasks_failed(), 0u);
  EXPECT_EQ(report->result_digest(), expected);
  // A worker on each node (2 nodes: the script's default), the sink and ventilator on the
  // first. Both workers join; one may join after the other has run every task.
  EXPECT_NE(output.find("head node-n1 (10.77.1.2)"), std::string::npos) << output;
  for (const char* node : {"node-n1", "node-n2"}) {
    EXPECT_NE(output.find(std::string("worker ") + node + " joined (cpu on " + node),
              std::string::npos)
        << output;
  }
  for (const auto& w : report->workers()) {
    EXPECT_TRUE(w.host() == "node-n1" || w.host() == "node-n2") << w.host();
    EXPECT_EQ(w.id(), w.host());
  }
  EXPECT_NE(output.find("ventilator exit code 0"), std::string::npos) << output;
  EXPECT_TRUE(wait_until([&] { return processes_under(prefix).empty(); }, 10s))
      << join(processes_under(prefix));
}

// Slurm's GPUs here are stand-ins (no CUDA device): the worker the script starts is a wrapper that
// records the GPU Slurm bound it to (CUDA_VISIBLE_DEVICES) and its flags, then runs the real
// worker on the CPU. What is checked is the script's GPU path: one worker per GPU on every node,
// each bound to a GPU of its own.
TEST(Slurm, GpuNodesGetOneWorkerPerGpuEachBoundToItsOwnGpu) {
  SKIP_WITHOUT_SLURM();
  const std::string expected = clean_digest(kJob);
  Farm farm;
  SlurmCluster slurm(farm, /*gpus=*/2);
  ASSERT_TRUE(slurm.wait_ready(30s)) << slurm.logs();
  const std::string prefix = private_prefix(farm.path("prefix"));
  std::filesystem::rename(prefix + "/bin/taskfarm-worker", prefix + "/bin/taskfarm-worker-real");
  const std::string record = farm.path("gpu-workers.txt");
  const std::string wrapper = farm.write(
      "prefix/bin/taskfarm-worker",
      "#!/bin/bash\n"
      "echo \"$(hostname) ${CUDA_VISIBLE_DEVICES:-unset} $*\" >> " +
          record +
          "\n"
          "args=()\n"
          "while (($#)); do\n"
          "  if [ \"$1\" = --device ]; then args+=(--device cpu); shift 2; continue; fi\n"
          "  args+=(\"$1\"); shift\n"
          "done\n"
          "exec \"$(dirname \"$0\")/taskfarm-worker-real\" \"${args[@]}\"\n");
  ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
  farm.write("job.json", kJob);
  auto sbatch =
      slurm.sbatch("--wait --parsable --gpus-per-node=2 " + kSbatch + " job.json", prefix);
  EXPECT_EXIT_CODE(sbatch, 0, 90s);
  const std::string id = job_id(sbatch);
  const std::string output = read_file(farm.path("taskfarm-" + id + ".out"));
  EXPECT_NE(output.find("2 nodes, 2 GPUs per node"), std::string::npos) << output;
  const auto report = parse_report(farm.path("taskfarm-" + id + ".json"));
  ASSERT_TRUE(report) << output;
  EXPECT_EQ(report->tasks_ok(), 100u);
  EXPECT_EQ(report->result_digest(), expected);

  // "HOST GPU FLAGS..." per worker started: node-nX-gpu0 and -gpu1 on each node, on two GPUs.
  std::map<std::string, std::set<std::string>> gpus_of;
  std::set<std::string> ids;
  std::istringstream in(read_file(record));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string host, gpu, word, last;
    fields >> host >> gpu;
    bool cuda = false;
    while (fields >> word) {
      if (last == "--device") cuda = word == "cuda";
      if (last == "--id") ids.insert(word);
      last = word;
    }
    EXPECT_TRUE(cuda) << "worker not started with --device cuda: " << line;
    gpus_of[host].insert(gpu);
  }
  EXPECT_EQ(ids,
            (std::set<std::string>{"node-n1-gpu0", "node-n1-gpu1", "node-n2-gpu0", "node-n2-gpu1"}))
      << read_file(record);
  for (const char* node : {"node-n1", "node-n2"}) {
    EXPECT_EQ(gpus_of[node].size(), 2u) << node << " workers share a GPU:\n" << read_file(record);
    EXPECT_EQ(gpus_of[node].count("unset"), 0u) << read_file(record);
  }
  for (const auto& w : report->workers()) EXPECT_EQ(ids.count(w.id()), 1u) << w.id();
}

TEST(Slurm, ScancelStopsEveryTaskfarmProcessOfTheJob) {
  SKIP_WITHOUT_SLURM();
  Farm farm;
  SlurmCluster slurm(farm);
  ASSERT_TRUE(slurm.wait_ready(30s)) << slurm.logs();
  const std::string prefix = private_prefix(farm.path("prefix"));
  farm.write("job.json", kLongJob);
  auto sbatch = slurm.sbatch("--parsable " + kSbatch + " job.json", prefix);
  EXPECT_EXIT_CODE(sbatch, 0, 20s);
  const std::string id = job_id(sbatch);
  ASSERT_FALSE(id.empty()) << sbatch.err();
  // The sink, the ventilator and a worker on each node, in job steps.
  ASSERT_TRUE(wait_until([&] { return processes_under(prefix).size() >= 4; }, 30s))
      << join(processes_under(prefix)) << read_file(farm.path("taskfarm-" + id + ".out"))
      << slurm.logs();
  std::this_thread::sleep_for(1s);  // tasks running
  const auto scancel = slurm.run("scancel " + id);
  EXPECT_EQ(scancel.rc, 0) << scancel.output;
  EXPECT_TRUE(wait_until([&] { return processes_under(prefix).empty(); }, 20s))
      << "left running after scancel:\n"
      << join(processes_under(prefix));
  EXPECT_TRUE(wait_until([&] { return trim(slurm.run("squeue -h -j " + id).output).empty(); }, 20s))
      << slurm.run("squeue").output;
}

TEST(Slurm, JobArrayRunsOneBatchPerJobFile) {
  SKIP_WITHOUT_SLURM();
  Farm farm;
  SlurmCluster slurm(farm);
  ASSERT_TRUE(slurm.wait_ready(30s)) << slurm.logs();
  const std::string prefix = private_prefix(farm.path("prefix"));
  const int counts[] = {10, 20, 30};
  std::string files;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "sweep-" + std::to_string(i);
    farm.write(name + ".json",
               R"({ "name": ")" + name + R"(", "tasks": [ { "kernel": "saxpy", "count": )" +
                   std::to_string(counts[i]) + R"(, "size": 10000, "seed": 1 } ] })");
    files += " " + name + ".json";
  }
  auto sbatch = slurm.sbatch("--wait --parsable --array=0-2 " + kSbatch + files, prefix);
  EXPECT_EXIT_CODE(sbatch, 0, 120s);
  const std::string id = job_id(sbatch);
  ASSERT_FALSE(id.empty()) << sbatch.err();
  for (int i = 0; i < 3; ++i) {
    const std::string base = "taskfarm-" + id + "_" + std::to_string(i);
    const auto report = parse_report(farm.path(base + ".json"));
    ASSERT_TRUE(report) << base << ".json missing:\n"
                        << join(processes_under(prefix))
                        << slurm.run("cat " + farm.path("taskfarm-*.out")).output;
    EXPECT_EQ(report->job(), "sweep-" + std::to_string(i));
    EXPECT_EQ(report->tasks_ok(), static_cast<uint64_t>(counts[i]));
    EXPECT_EQ(report->tasks_failed(), 0u);
  }
}

// --------------------------------------------------------------------------------------- ssh

const std::string kLaunch = kSource + "/scripts/launch_ssh.sh";

// An OpenSSH server of this test's own on 127.0.0.1 (tests/cluster/sshd.sh).
class SshServer {
 public:
  explicit SshServer(const Farm& farm)
      : dir_(farm.path("sshd")),
        port_(free_port()),
        daemon_(in_pid_namespace({kScripts + "sshd.sh", dir_, std::to_string(port_)}),
                farm.path("sshd")) {}

  // Returns: true once a login with the test's key works.
  bool wait_ready(std::chrono::milliseconds timeout) {
    return wait_until(
        [&] {
          return daemon_.running() &&
                 run_command("ssh -F " + config() + " -p " + std::to_string(port_) +
                             " 127.0.0.1 true </dev/null")
                         .rc == 0;
        },
        timeout);
  }
  std::string config() const { return dir_ + "/ssh_config"; }
  int port() const { return port_; }
  std::string logs() const { return daemon_.err(); }

 private:
  std::string dir_;
  int port_;
  Process daemon_;
};

#define SKIP_WITHOUT_SSHD() SKIP_UNLESS_PACKAGES("openssh-server", "openssh-client")

// A launch of scripts/launch_ssh.sh against `ssh`: HOSTS_FILE first, then launcher options and
// ventilator flags mixed, as a user types them.
struct Launch {
  const Farm& farm;
  std::string prefix;
  int port_base = free_port_base();

  std::vector<std::string> argv(const std::string& hosts, const SshServer& ssh,
                                std::vector<std::string> extra) const {
    std::vector<std::string> args = {"/bin/bash",
                                     kLaunch,
                                     hosts,
                                     "--job",
                                     farm.path("job.json"),
                                     "--prefix",
                                     prefix,
                                     "--remote-dir",
                                     farm.path("remote"),
                                     "--log-dir",
                                     farm.path("logs"),
                                     "--ssh-option",
                                     "-F " + ssh.config(),
                                     "--port-base",
                                     std::to_string(port_base),
                                     "--worker-args",
                                     "--threads 1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

TEST(Ssh, LaunchSshRunsABatchThroughARealSshd) {
  SKIP_WITHOUT_SSHD();
  const std::string expected = clean_digest(kJob);
  Farm farm;
  SshServer ssh(farm);
  ASSERT_TRUE(ssh.wait_ready(20s)) << ssh.logs();
  Launch launch{farm, private_prefix(farm.path("prefix"))};
  farm.write("job.json", kJob);
  const std::string p = std::to_string(ssh.port());
  const std::string hosts = farm.write(
      "hosts.txt", "127.0.0.1:" + p + "   # head: sink and ventilator\nlocalhost:" + p + " 2\n");
  Process proc(launch.argv(hosts, ssh, {}), farm.path("launch"));
  EXPECT_EXIT_CODE(proc, 0, kBatchTimeout);
  // The report stays on the head (in --remote-dir) and is copied back next to the logs.
  const auto report = parse_report(farm.path("logs/report.json"));
  ASSERT_TRUE(report) << proc.err() << proc.out();
  EXPECT_EQ(read_file(farm.path("logs/report.json")),
            read_file(farm.path("remote/taskfarm-report.json")));
  EXPECT_EQ(report->tasks_ok(), 100u);
  EXPECT_EQ(report->result_digest(), expected);
  std::set<std::string> ids;
  for (const auto& w : report->workers()) ids.insert(w.id());
  EXPECT_TRUE(std::includes(std::set<std::string>{"localhost-0", "localhost-1"}.begin(),
                            std::set<std::string>{"localhost-0", "localhost-1"}.end(), ids.begin(),
                            ids.end()))
      << *ids.begin();
  // The uploaded job file is removed, and nothing runs on after the batch.
  for (const auto& e : std::filesystem::directory_iterator(farm.path("remote"))) {
    EXPECT_EQ(e.path().filename().string().rfind("taskfarm-job-", 0), std::string::npos)
        << e.path();
  }
  EXPECT_TRUE(wait_until([&] { return processes_under(launch.prefix).empty(); }, 10s))
      << join(processes_under(launch.prefix));
}

TEST(Ssh, PerGpuStartsCpuWorkersOnAHostWithoutGpus) {
  SKIP_WITHOUT_SSHD();
  if (run_command("nvidia-smi -L 2>/dev/null | grep -c '^GPU '").output != "0") {
    GTEST_SKIP() << "cluster: this machine has GPUs (the test needs a host without)";
  }
  Farm farm;
  SshServer ssh(farm);
  ASSERT_TRUE(ssh.wait_ready(20s)) << ssh.logs();
  Launch launch{farm, private_prefix(farm.path("prefix"))};
  farm.write("job.json", kJob);
  const std::string p = std::to_string(ssh.port());
  const std::string hosts = farm.write("hosts.txt", "127.0.0.1:" + p + "\nlocalhost:" + p + " 2\n");
  Process proc(launch.argv(hosts, ssh, {"--per-gpu"}), farm.path("launch"));
  EXPECT_EXIT_CODE(proc, 0, kBatchTimeout);
  EXPECT_NE(proc.err().find("localhost:" + p + " has no GPU"), std::string::npos) << proc.err();
  const auto report = parse_report(farm.path("logs/report.json"));
  ASSERT_TRUE(report) << proc.err();
  EXPECT_EQ(report->tasks_ok(), 100u);
  for (const auto& w : report->workers()) EXPECT_EQ(w.device(), "cpu") << w.id();
  for (const char* log : {"logs/worker-localhost-0.log", "logs/worker-localhost-1.log"}) {
    EXPECT_NE(read_file(farm.path(log)).find("registered"), std::string::npos) << log;
  }
}

TEST(Ssh, AnUnreachableHostIsAOneLineErrorAndNothingStarts) {
  SKIP_WITHOUT_SSHD();
  Farm farm;
  SshServer ssh(farm);
  ASSERT_TRUE(ssh.wait_ready(20s)) << ssh.logs();
  Launch launch{farm, private_prefix(farm.path("prefix"))};
  farm.write("job.json", kJob);
  const std::string closed = std::to_string(free_port());
  const std::string hosts = farm.write(
      "hosts.txt", "127.0.0.1:" + std::to_string(ssh.port()) + "\n127.0.0.1:" + closed + "\n");
  Process proc(launch.argv(hosts, ssh, {}), farm.path("launch"));
  EXPECT_EXIT_CODE(proc, 1, 30s);
  const std::string err = proc.err();
  EXPECT_NE(err.find("cannot reach host '127.0.0.1:" + closed + "'"), std::string::npos) << err;
  EXPECT_NE(err.find("Connection refused"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_TRUE(processes_under(launch.prefix).empty()) << join(processes_under(launch.prefix));
}

// Starts a long batch through `launch` under its own process group (as a terminal's foreground
// job), waits until the sink, the ventilator and both workers run, sends `sig` to the launcher
// (`group`: to its whole process group, as Ctrl-C does), and checks that every remote process
// stops.
void interrupt_launch(int sig, bool group) {
  Farm farm;
  SshServer ssh(farm);
  ASSERT_TRUE(ssh.wait_ready(20s)) << ssh.logs();
  Launch launch{farm, private_prefix(farm.path("prefix"))};
  farm.write("job.json", kLongJob);
  const std::string p = std::to_string(ssh.port());
  const std::string hosts = farm.write("hosts.txt", "127.0.0.1:" + p + "\nlocalhost:" + p + " 2\n");
  auto argv = launch.argv(hosts, ssh, {});
  argv.insert(argv.begin(), netns::find_program("setsid"));  // pid == process group id
  Process proc(argv, farm.path("launch"));
  ASSERT_TRUE(wait_until([&] { return processes_under(launch.prefix).size() == 4; }, 30s))
      << join(processes_under(launch.prefix)) << proc.err();
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(farm.path("logs/worker-localhost-0.log")).find("registered") !=
                   std::string::npos &&
               read_file(farm.path("logs/worker-localhost-1.log")).find("registered") !=
                   std::string::npos;
      },
      20s));
  std::this_thread::sleep_for(500ms);
  kill(group ? -proc.pid() : proc.pid(), sig);
  EXPECT_EXIT_CODE(proc, 130, 15s);
  EXPECT_NE(proc.err().find("interrupted"), std::string::npos) << proc.err();
  EXPECT_TRUE(wait_until([&] { return processes_under(launch.prefix).empty(); }, 10s))
      << "left running:\n"
      << join(processes_under(launch.prefix));
}

TEST(Ssh, CtrlCOfTheLauncherStopsEveryRemoteProcess) {
  SKIP_WITHOUT_SSHD();
  interrupt_launch(SIGINT, /*group=*/true);
}

TEST(Ssh, SigtermOfTheLauncherAloneStopsEveryRemoteProcess) {
  SKIP_WITHOUT_SSHD();
  interrupt_launch(SIGTERM, /*group=*/false);
}

// An ssh stand-in that records every call in RECORD; a remote `nvidia-smi -L` query is answered
// with 2 GPUs on hosts named gpu*, none elsewhere.
std::string recording_ssh(const Farm& farm) {
  const std::string record = farm.path("ssh-calls");
  const std::string script =
      "#!/bin/sh\n"
      "while [ $# -gt 0 ]; do\n"
      "  case $1 in -o|-p|-i|-F) shift 2 ;; -*) shift ;; *) break ;; esac\n"
      "done\n"
      "echo \"$1: $2\" >> " +
      record +
      "\n"
      "case $2 in *nvidia-smi*) case $1 in gpu*) echo 2 ;; *) echo 0 ;; esac ;; esac\n";
  const std::string p = farm.write("ssh", script);
  EXPECT_EQ(chmod(p.c_str(), 0755), 0);
  return p;
}

TEST(LaunchSsh, DryRunAfterTheHostsFileConnectsToNothing) {
  Farm farm;
  const std::string ssh = recording_ssh(farm);
  const std::string hosts = farm.write("hosts.txt", "head\ngpu1\ncpu1 2\n");
  Process proc({"/bin/bash", kLaunch, hosts, "--job", kSource + "/examples/demo.json", "--dry-run",
                "--per-gpu"},
               farm.path("launch"), {"TASKFARM_SSH=" + ssh});
  EXPECT_EXIT_CODE(proc, 0, 10s);
  EXPECT_FALSE(std::filesystem::exists(farm.path("ssh-calls")))
      << read_file(farm.path("ssh-calls"));
  const std::string out = proc.out();
  EXPECT_NE(out.find("taskfarm-sink"), std::string::npos) << out;
  EXPECT_NE(out.find("taskfarm-ventilator"), std::string::npos) << out;
  EXPECT_EQ(out.find("--dry-run"), std::string::npos) << "passed on to a program:\n" << out;
  EXPECT_NE(out.find("nvidia-smi -L"), std::string::npos) << out;
}

TEST(LaunchSsh, PerGpuAsksEachHostAndStartsOneWorkerPerGpuOrCpuWorkers) {
  Farm farm;
  const std::string ssh = recording_ssh(farm);
  const std::string hosts = farm.write("hosts.txt", "head\ngpu1\ncpu1 2\n");
  Process proc({"/bin/bash", kLaunch, hosts, "--kernel", "noop", "--tasks", "10", "--per-gpu",
                "--log-dir", farm.path("logs")},
               farm.path("launch"), {"TASKFARM_SSH=" + ssh});
  EXPECT_EXIT_CODE(proc, 0, 20s);
  const std::string calls = read_file(farm.path("ssh-calls"));
  auto workers_on = [&](const std::string& host) {
    std::vector<std::string> found;
    std::istringstream in(calls);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(host + ": ", 0) == 0 && line.find("taskfarm-worker") != std::string::npos) {
        found.push_back(line);
      }
    }
    std::sort(found.begin(), found.end());  // started in parallel: recorded in any order
    return found;
  };
  const auto gpu = workers_on("gpu1"), cpu = workers_on("cpu1");
  ASSERT_EQ(gpu.size(), 2u) << calls;
  EXPECT_NE(gpu[0].find("--device cuda:0 --id gpu1-gpu0"), std::string::npos) << gpu[0];
  EXPECT_NE(gpu[1].find("--device cuda:1 --id gpu1-gpu1"), std::string::npos) << gpu[1];
  ASSERT_EQ(cpu.size(), 2u) << calls;
  for (const auto& c : cpu) EXPECT_NE(c.find("--device cpu"), std::string::npos) << c;
  EXPECT_NE(proc.err().find("cpu1 has no GPU"), std::string::npos) << proc.err();
}

// ---------------------------------------------------------------------------------- packages

struct Installed {
  std::optional<v1::Report> report;
  std::string skip;  // why no Debian could be made here (no archive reachable), if so
};

// Runs tests/cluster/package_chroot.sh MODE (deb or tgz): the package made by cpack, installed on
// a clean Debian 12, runs kJob. Returns: its report (nullopt after a test failure), or why it
// could not run.
Installed install_and_run(const Farm& farm, const std::string& mode) {
  const std::string build = std::filesystem::path(TASKFARM_BIN_DIR).parent_path().string();
  Process proc(
      in_pid_namespace({"--mount", kScripts + "package_chroot.sh", mode, build, farm.path("chroot"),
                        farm.write("job.json", kJob), std::to_string(free_port_base(4))}),
      farm.path("package-chroot"));
  // The first run on a machine also makes the Debian 12 (debootstrap): a minute or two.
  const auto rc = proc.wait_for(220s);
  if (rc == std::optional<int>(77)) return {std::nullopt, trim(proc.out())};
  EXPECT_EQ(rc, std::optional<int>(0)) << proc.err();
  auto report = parse_report(farm.path("chroot/report.json"));
  EXPECT_TRUE(report) << proc.err();
  return {report, ""};
}

#define SKIP_WITHOUT_DEBOOTSTRAP() SKIP_UNLESS_PACKAGES("debootstrap", "dpkg-dev")

TEST(Packages, DebInstallsWithAptOnACleanDebianAndItsUnitsRunABatch) {
  SKIP_WITHOUT_DEBOOTSTRAP();
  const std::string expected = clean_digest(kJob);
  Farm farm;
  const auto [report, skip] = install_and_run(farm, "deb");
  if (!skip.empty()) GTEST_SKIP() << "cluster: " << skip;
  ASSERT_TRUE(report);
  EXPECT_EQ(report->tasks_ok(), 100u);
  EXPECT_EQ(report->tasks_failed(), 0u);
  EXPECT_EQ(report->result_digest(), expected);
  ASSERT_EQ(report->workers_size(), 1);
  EXPECT_EQ(report->workers(0).device(), "cpu");
  // The sink service keeps one report per job in TASKFARM_RESULTS_DIR.
  EXPECT_EQ(trim(read_file(farm.path("chroot/results.txt"))), report->job_id());
}

TEST(Packages, TgzRunsABatchOnACleanDebianWithoutTheLibrariesInstalled) {
  SKIP_WITHOUT_DEBOOTSTRAP();
  const std::string expected = clean_digest(kJob);
  Farm farm;
  const auto [report, skip] = install_and_run(farm, "tgz");
  if (!skip.empty()) GTEST_SKIP() << "cluster: " << skip;
  ASSERT_TRUE(report);
  EXPECT_EQ(report->tasks_ok(), 100u);
  EXPECT_EQ(report->result_digest(), expected);
}

}  // namespace
}  // namespace taskfarm::testing
