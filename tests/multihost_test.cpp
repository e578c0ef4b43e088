// Multi-host tests: the sink and ventilator on a "head" network namespace, workers on other
// namespaces with their own host names, joined by veth links over TCP (tests/netns.h). They
// check what a real cluster adds to the loopback tests: other hosts' addresses and host names,
// a slow and lossy network (100 ms delay and 10% loss each way, made with iptables and
// tests/netdelay.cpp: no netem needed), a worker cut off by a network partition, and
// scripts/launch_ssh.sh. Skipped with the reason when the machine cannot make namespaces (not
// root, no iproute2) or, for the delay/loss test, when iptables cannot be installed.
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "farm.h"
#include "netns.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

#define SKIP_WITHOUT_NAMESPACES()                                                       \
  do {                                                                                  \
    if (auto _why = netns::Lab::unavailable()) GTEST_SKIP() << "multihost: " << *_why; \
  } while (0)

constexpr const char* kWorkers[] = {"w1", "w2"};

// A farm spread over a Lab: sink and ventilator on "head", worker hosts w1 and w2 running as
// host names "node-w1" and "node-w2". `ports` empty means the default ports with plain
// `--sink HOST --ventilator HOST` and the head's one address, as on a real cluster; otherwise
// {tasks, results, control} ports and each worker's own link address of the head.
class MultiHostFarm {
 public:
  explicit MultiHostFarm(std::vector<int> ports = {}) : ports_(std::move(ports)) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("taskfarm-multihost-") + info->name() + "-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    for (const char* w : kWorkers) lab_.add_host(w);
  }
  ~MultiHostFarm() {
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
  }

  netns::Lab& lab() { return lab_; }

  // Gives the link to `host` `delay_ms` of delay and `loss_percent`% random loss in each
  // direction, as `tc qdisc ... netem delay D loss L` on both of its ends would, on kernels
  // without netem: in the host's namespace, iptables drops packets on eth0 at random (statistic
  // match) and queues the others (NFQUEUE) to netdelay, which holds each one for D ms.
  void impair(const std::string& host, int delay_ms, int loss_percent) {
    delayers_.emplace_back(lab_.exec(host, {TASKFARM_NETDELAY, "0", std::to_string(delay_ms)}),
                           path("netdelay-" + host));
    Process& delayer = delayers_.back();
    for (int i = 0; i < 500 && delayer.running() && delayer.out().empty(); ++i) {
      std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(delayer.out(), "ready\n") << delayer.err();
    const std::string iptables = "ip netns exec " + lab_.ns_name(host) + " " +
                                 netns::find_program("iptables");
    const std::string p = std::to_string(loss_percent / 100.0);
    for (const char* hook : {"OUTPUT -o", "INPUT -i"}) {
      for (const std::string& rule : {" eth0 -m statistic --mode random --probability " + p +
                                          " -j DROP",
                                      std::string(" eth0 -j NFQUEUE --queue-num 0")}) {
        auto r = netns::run_command(iptables + " -A " + hook + rule);
        ASSERT_EQ(r.rc, 0) << iptables << " -A " << hook << rule << ": " << r.output;
      }
    }
  }

  // Returns: {packets dropped, packets delayed} on `host`'s link so far (iptables counters).
  std::pair<uint64_t, uint64_t> impaired_packets(const std::string& host) const {
    auto r = netns::run_command("ip netns exec " + lab_.ns_name(host) + " " +
                                netns::find_program("iptables") + " -L -v -x -n");
    std::pair<uint64_t, uint64_t> counts{0, 0};
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      uint64_t packets = 0;
      std::string bytes, target;
      if (!(fields >> packets >> bytes >> target)) continue;
      if (target == "DROP") counts.first += packets;
      if (target == "NFQUEUE") counts.second += packets;
    }
    return counts;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }

  Process sink() {
    std::vector<std::string> args = {bin("taskfarm-sink"), "--report", path("report.json")};
    if (!ports_.empty()) {
      args.insert(args.end(), {"--bind", std::to_string(ports_[1]), "--control",
                               std::to_string(ports_[2])});
    }
    return Process(lab_.exec("head", args), path("sink"));
  }
  Process ventilator(std::vector<std::string> extra) {
    std::vector<std::string> args = {bin("taskfarm-ventilator")};
    if (ports_.empty()) {
      args.insert(args.end(), {"--sink", "127.0.0.1"});
    } else {
      args.insert(args.end(), {"--bind", std::to_string(ports_[0]), "--sink-results",
                               "127.0.0.1:" + std::to_string(ports_[1]), "--sink-control",
                               "127.0.0.1:" + std::to_string(ports_[2])});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Process(lab_.exec("head", args), path("ventilator"));
  }
  // Starts worker `host` (its id too) as host name node-<host>, pointed at the head.
  Process worker(const std::string& host, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {bin("taskfarm-worker"), "--id", host, "--device", "cpu"};
    if (ports_.empty()) {
      args.insert(args.end(), {"--ventilator", netns::Lab::kHeadAddress, "--sink",
                               netns::Lab::kHeadAddress});
    } else {
      const std::string head = lab_.head_address(host);
      args.insert(args.end(), {"--ventilator", head + ":" + std::to_string(ports_[0]),
                               "--sink-results", head + ":" + std::to_string(ports_[1]),
                               "--sink-control", head + ":" + std::to_string(ports_[2])});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Process(lab_.exec(host, args, "node-" + host), path("worker-" + host));
  }
  // Starts the sink and both workers, and waits until each worker has a TCP connection to the
  // sink, so that both take part from the first task.
  std::pair<Process, std::vector<Process>> sink_and_workers(std::vector<std::string> extra) {
    auto s = sink();
    std::vector<Process> ws;
    for (const char* w : kWorkers) ws.push_back(worker(w, extra));
    for (size_t i = 0; i < ws.size(); ++i) {
      EXPECT_TRUE(lab_.wait_connected(kWorkers[i], ports_.empty() ? 5558 : ports_[1], 20s,
                                      ports_.empty() ? netns::Lab::kHeadAddress : ""))
          << kWorkers[i] << " did not connect to the sink:\n" << ws[i].err();
    }
    return {std::move(s), std::move(ws)};
  }

  // Writes an executable ssh stand-in for scripts/launch_ssh.sh (TASKFARM_SSH): like ssh, it
  // fails for a host whose link is down; otherwise it runs the command in the host's namespace,
  // as that host (node-<host>), in a home folder of its own. Returns: its path.
  std::string ssh_stand_in() {
    const std::string ip = netns::find_program("ip"), unshare = netns::find_program("unshare");
    const std::string home = path("home-");
    const std::string script =
        "#!/bin/sh\n"
        "while [ $# -gt 0 ]; do\n"
        "  case $1 in -o|-p|-i) shift 2 ;; -*) shift ;; *) break ;; esac\n"
        "done\n"
        "host=$1; shift\n"
        "if [ \"$host\" != head ] && ! " + ip + " -n " + lab_.ns_name("head") +
        " link show dev \"to-$host\" 2>/dev/null | grep -q LOWER_UP; then\n"
        "  echo \"ssh: connect to host $host port 22: No route to host\" >&2; exit 255\n"
        "fi\n"
        "mkdir -p \"" + home + "$host\" && cd \"" + home + "$host\" || exit 255\n"
        "exec " + ip + " netns exec " + lab_.ns_name("") + "$host " + unshare +
        " --uts sh -c 'hostname \"node-$0\" && exec sh -c \"$1\"' \"$host\" \"$*\"\n";
    const std::string p = write("ssh", script);
    EXPECT_EQ(chmod(p.c_str(), 0755), 0);
    return p;
  }

  v1::Report report() const {
    v1::Report rep;
    const std::string json = read_file(path("report.json"));
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &rep).ok()) << json;
    return rep;
  }

 private:
  netns::Lab lab_;  // first member: destroyed last, after everything started in it
  std::vector<Process> delayers_;
  std::vector<int> ports_;
  std::filesystem::path dir_;
};

// Returns: true once `proc`'s stderr contains every one of `needles`, false after `timeout`.
bool wait_for_log(const Process& proc, const std::vector<std::string>& needles,
                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string err = proc.err();
    if (std::all_of(needles.begin(), needles.end(),
                    [&](const std::string& n) { return err.find(n) != std::string::npos; })) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::multiset<std::string> hosts_of(const v1::Report& r) {
  std::multiset<std::string> hosts;
  for (const auto& w : r.workers()) hosts.insert(w.host());
  return hosts;
}

constexpr const char* kMixedJob = R"({ "name": "multihost-mixed", "tasks": [
  { "kernel": "sleep", "count": 30, "size": 100000 },
  { "kernel": "saxpy", "count": 20, "size": 20000, "seed": 5 },
  { "kernel": "sort", "count": 10, "size": 5000, "seed": 6 } ] })";

TEST(MultiHost, WorkersOnTwoHostsReportTheirHostNamesAndTheLoopbackDigest) {
  SKIP_WITHOUT_NAMESPACES();
  const std::string expected = clean_digest(kMixedJob);
  MultiHostFarm farm;  // default ports, `--sink HOST --ventilator HOST`
  auto [sink, workers] = farm.sink_and_workers({"--threads", "2"});
  auto vent = farm.ventilator({"--job", farm.write("job.json", kMixedJob)});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 60u);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_EQ(r.result_digest(), expected);
  EXPECT_EQ(hosts_of(r), (std::multiset<std::string>{"node-w1", "node-w2"}));
  for (const auto& w : r.workers()) EXPECT_GT(w.tasks(), 0u) << w.id();
}

// Returns: why worker links cannot be given delay and loss here, or nullopt (iptables is
// installed when missing).
std::optional<std::string> impairment_unavailable() {
  if (auto why = netns::Lab::unavailable()) return why;
  if (std::string(TASKFARM_NETDELAY).empty()) {
    return "tests/netdelay was not built: libnetfilter-queue-dev is missing (scripts/deps.sh)";
  }
  auto r = netns::run_command(std::string(TASKFARM_SOURCE_DIR) +
                              "/tests/cluster/ensure_packages.sh iptables 2>/dev/null");
  if (r.rc != 0) return r.output;
  return std::nullopt;
}

TEST(MultiHost, BatchCompletesOver100msDelayAnd10PercentLossOnWorkerLinks) {
  SKIP_WITHOUT_NAMESPACES();
  if (auto why = impairment_unavailable()) GTEST_SKIP() << "multihost: " << *why;
  const std::string expected = clean_digest(kMixedJob);
  MultiHostFarm farm({16557, 16558, 16559});
  // Both directions of each worker link: 200 ms round trips, ~19% of round trips lose a packet.
  for (const char* w : kWorkers) farm.impair(w, 100, 10);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  // A lost segment stalls its TCP stream for one or more retransmission timeouts (0.4 s, then
  // doubling), so heartbeats can be seconds late: timeouts sized for such a link, as a WAN
  // deployment would set them, so that the test is about delivery and not about false alarms.
  auto [sink, workers] = farm.sink_and_workers({"--threads", "2", "--peer-timeout", "10"});
  auto vent = farm.ventilator(
      {"--job", farm.write("job.json", kMixedJob), "--worker-timeout", "10"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_total(), 60u);
  EXPECT_EQ(r.tasks_ok(), 60u);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_EQ(r.result_digest(), expected);
  EXPECT_EQ(hosts_of(r), (std::multiset<std::string>{"node-w1", "node-w2"}));
  EXPECT_GT(r.latency_us().p50(), 100000) << "delay not applied?";
  for (const char* w : kWorkers) {
    // Each packet is dropped with probability 0.1 before it is queued. A batch is 100-200
    // packets a link, so the share dropped varies: no drop at all has odds of ~1e-6, a third
    // (a wrong probability) far less.
    const auto [dropped, delayed] = farm.impaired_packets(w);
    EXPECT_GT(delayed, 50u) << w;
    EXPECT_GT(dropped, 0u) << w << ": " << delayed << " delayed";
    EXPECT_LT(dropped * 3, dropped + delayed)
        << w << ": " << dropped << " dropped, " << delayed << " delayed";
    std::cout << w << ": " << dropped << " packets dropped, " << delayed << " delayed 100 ms\n";
  }
}

constexpr const char* kSleepJob = R"({ "name": "multihost-partition", "tasks": [
  { "kernel": "sleep", "count": 80, "size": 200000 },
  { "kernel": "saxpy", "count": 20, "size": 20000, "seed": 9 } ] })";

TEST(MultiHost, PartitionedWorkerIsReplacedWithinWorkerTimeoutAndNothingIsLost) {
  SKIP_WITHOUT_NAMESPACES();
  const std::string expected = clean_digest(kSleepJob);
  MultiHostFarm farm({16557, 16558, 16559});
  auto [sink, workers] = farm.sink_and_workers({"--threads", "2"});
  auto vent = farm.ventilator(
      {"--job", farm.write("job.json", kSleepJob), "--worker-timeout", "1"});
  // Cut w2 off once it has run tasks for a second (~10 of them, two more held).
  ASSERT_TRUE(wait_for_log(vent, {"worker w1 joined", "worker w2 joined", "dispatching"}, 20s))
      << vent.err();
  std::this_thread::sleep_for(1s);
  farm.lab().set_link("w2", false);
  std::this_thread::sleep_for(3s);
  farm.lab().set_link("w2", true);
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 100u);
  EXPECT_EQ(r.tasks_failed(), 0u);
  EXPECT_GE(r.retried(), 1u) << "w2's tasks should have been re-issued to w1";
  EXPECT_EQ(r.result_digest(), expected);
  EXPECT_NE(vent.err().find("worker w2 lost"), std::string::npos) << vent.err();
  EXPECT_EQ(hosts_of(r), (std::multiset<std::string>{"node-w1", "node-w2"}));
}

TEST(MultiHost, LaunchSshRunsABatchOnTheHostsOfAHostsFile) {
  SKIP_WITHOUT_NAMESPACES();
  const std::string expected = clean_digest(kMixedJob);
  MultiHostFarm farm;
  const std::string ssh = farm.ssh_stand_in();
  const std::string hosts = farm.write("hosts", "head   # sink and ventilator\nw1\nw2 2\n");
  const std::string prefix = std::filesystem::path(TASKFARM_BIN_DIR).parent_path().string();
  Process launch({"/bin/bash", std::string(TASKFARM_SOURCE_DIR) + "/scripts/launch_ssh.sh",
                  "--prefix", prefix, "--head-address", netns::Lab::kHeadAddress,
                  "--report", farm.path("report.json"), "--log-dir", farm.path("logs"),
                  "--worker-args", "--threads 1", hosts, "--job",
                  farm.write("job.json", kMixedJob)},
                 farm.path("launch"), {"TASKFARM_SSH=" + ssh});
  EXPECT_EXIT_CODE(launch, 0, kBatchTimeout);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 60u) << launch.err();
  EXPECT_EQ(r.result_digest(), expected);
  std::set<std::string> ids;
  for (const auto& w : r.workers()) {
    ids.insert(w.id());
    EXPECT_EQ(w.host(), "node-" + w.id().substr(0, 2)) << w.id();
  }
  // Every worker started; one may have joined after the others had run every task.
  EXPECT_TRUE(std::includes(std::set<std::string>{"w1-0", "w2-0", "w2-1"}.begin(),
                            std::set<std::string>{"w1-0", "w2-0", "w2-1"}.end(), ids.begin(),
                            ids.end()));
  for (const char* log : {"logs/worker-w1-0.log", "logs/worker-w2-0.log", "logs/worker-w2-1.log"}) {
    EXPECT_NE(read_file(farm.path(log)).find("registered"), std::string::npos) << log;
  }
}

TEST(MultiHost, LaunchSshNamesAnUnreachableHostInOneLine) {
  SKIP_WITHOUT_NAMESPACES();
  MultiHostFarm farm;
  const std::string ssh = farm.ssh_stand_in();
  farm.lab().set_link("w2", false);
  const std::string hosts = farm.write("hosts", "head\nw1\nw2\n");
  Process launch({"/bin/bash", std::string(TASKFARM_SOURCE_DIR) + "/scripts/launch_ssh.sh", hosts,
                  "--kernel", "noop", "--tasks", "10"},
                 farm.path("launch"), {"TASKFARM_SSH=" + ssh});
  EXPECT_EXIT_CODE(launch, 1, 30s);
  const std::string err = launch.err();
  EXPECT_NE(err.find("cannot reach host 'w2'"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace
}  // namespace taskfarm::testing
