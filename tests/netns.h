// A private multi-host network on one machine for integration tests: a "head" network
// namespace and one namespace per worker host, each joined to the head by a point-to-point veth
// pair (10.77.N.1 on the head side, 10.77.N.2 on the host side). The head also answers on
// 10.77.0.1 from every host (kHeadAddress, routed), as a cluster's head node has one name.
// Addresses exist only inside the namespaces made here, so no traffic reaches the machine's own
// network. Processes started with `Lab::exec` run inside a namespace, optionally with their own
// host name (`unshare --uts`).
//
// Every namespace is named tfmh-<pid>-<name>, so parallel test processes never collide, and is
// deleted (after killing whatever still runs in it) when the Lab goes out of scope, including
// when a test fails; namespaces left by a test process that was killed (ctest timeout) are swept
// by the next Lab. Needs root, iproute2 and veth support: `Lab::unavailable()` says why not.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace taskfarm::testing::netns {

struct CommandResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

// Returns: the exit status and output of `/bin/sh -c command` (the command is built here from
// fixed names, never from user input).
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 512> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == ' ')) {
    r.output.pop_back();
  }
  return r;
}

// Returns: the full path of program `name` (Process execs without a PATH search), looking in
// PATH and in the sbin folders where Debian keeps ip and iptables; empty when not found.
inline std::string find_program(const std::string& name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    const size_t end = std::min(path.find(':', begin), path.size());
    const std::string candidate = path.substr(begin, end - begin) + "/" + name;
    if (end > begin && access(candidate.c_str(), X_OK) == 0) return candidate;
    begin = end + 1;
  }
  return "";
}

inline std::string prefix_for(pid_t pid) { return "tfmh-" + std::to_string(pid) + "-"; }

// Deletes namespaces tfmh-<pid>-* whose test process no longer exists.
inline void sweep_stale(const std::string& ip) {
  DIR* d = opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("tfmh-", 0) != 0) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + 5));
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(d);
  for (const auto& ns : stale) {
    run_command("for p in $(" + ip + " netns pids " + ns + "); do kill -9 $p; done");
    run_command(ip + " netns del " + ns);
  }
}

class Lab {
 public:
  // The head's address that every host reaches through its own link.
  static constexpr const char* kHeadAddress = "10.77.0.1";

  // Returns: why namespaces cannot be used here (not root, no iproute2, no veth), or nullopt.
  static std::optional<std::string> unavailable() {
    if (geteuid() != 0) return "needs root to create network namespaces";
    const std::string ip = find_program("ip");
    if (ip.empty()) return "iproute2 (ip) is not installed";
    if (find_program("unshare").empty()) return "unshare (util-linux) is not installed";
    const std::string probe = prefix_for(getpid()) + "probe";
    auto add = run_command(ip + " netns add " + probe);
    if (add.rc != 0) return "cannot create a network namespace: " + add.output;
    auto veth =
        run_command(ip + " -n " + probe + " link add tfprobe0 type veth peer name tfprobe1");
    run_command(ip + " netns del " + probe);
    if (veth.rc != 0) return "cannot create a veth pair: " + veth.output;
    return std::nullopt;
  }

  // Makes the head namespace. Throws: std::runtime_error when a command fails.
  Lab() : ip_(find_program("ip")), prefix_(prefix_for(getpid())) {
    sweep_stale(ip_);
    for (const auto& ns : namespaces_now()) {  // left by an earlier test in this process
      run_command(ip_ + " netns del " + ns);
    }
    try {
      make_namespace("head");
      must(ip_ + " -n " + ns_name("head") + " addr add " + kHeadAddress + "/32 dev lo");
    } catch (...) {
      clean();  // no destructor runs for a constructor that throws
      throw;
    }
  }
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  ~Lab() { clean(); }

  // Adds host `name` (at most 8 characters) linked to the head; the head-side interface is
  // "to-<name>" and the host's is "eth0". Returns: the head's address as seen from that host.
  std::string add_host(const std::string& name) {
    const int n = static_cast<int>(hosts_.size()) + 1;
    const std::string ns = make_namespace(name), head = ns_name("head");
    const std::string head_if = "to-" + name;
    const std::string net = "10.77." + std::to_string(n) + ".";
    must(ip_ + " -n " + head + " link add " + head_if + " type veth peer name eth0 netns " + ns);
    must(ip_ + " -n " + head + " addr add " + net + "1/24 dev " + head_if);
    must(ip_ + " -n " + ns + " addr add " + net + "2/24 dev eth0");
    must(ip_ + " -n " + head + " link set dev " + head_if + " up");
    must(ip_ + " -n " + ns + " link set dev eth0 up");
    hosts_[name] = net + "1";
    // The link carries traffic once both ends report carrier (LOWER_UP).
    must("for i in $(seq 100); do " + ip_ + " -n " + ns +
         " link show dev eth0 | grep -q LOWER_UP && " + ip_ + " -n " + head + " link show dev " +
         head_if + " | grep -q LOWER_UP && exit 0; sleep 0.05; done; echo no carrier on " +
         head_if + "; exit 1");
    must(ip_ + " -n " + ns + " route add default via " + net + "1 dev eth0");
    return hosts_[name];
  }

  // Returns: the head's address on the link to `host`.
  const std::string& head_address(const std::string& host) const { return hosts_.at(host); }

  // Returns: `host`'s own address (the far end of its link).
  std::string host_address(const std::string& host) const {
    const std::string& head = hosts_.at(host);
    return head.substr(0, head.size() - 1) + "2";
  }

  // Lets hosts reach each other through the head (IPv4 forwarding on), as the nodes of one
  // cluster network do. Throws: std::runtime_error when it cannot be set.
  void route_between_hosts() {
    must(ip_ + " netns exec " + ns_name("head") +
         " sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'");
  }

  // Returns: argv that runs `argv` in namespace `name`, with host name `hostname` if not empty.
  std::vector<std::string> exec(const std::string& name, std::vector<std::string> argv,
                                const std::string& hostname = "") const {
    std::vector<std::string> out = {ip_, "netns", "exec", ns_name(name)};
    if (!hostname.empty()) {
      // sh sets the host name in the new UTS namespace, then becomes the program (same pid).
      out.insert(out.end(), {find_program("unshare"), "--uts", "/bin/sh", "-c",
                             "hostname \"$0\" && exec \"$@\"", hostname});
    }
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  // Cuts (false) or restores (true) the link to `host` from the head side.
  void set_link(const std::string& host, bool up) {
    must(ip_ + " -n " + ns_name("head") + " link set dev to-" + host + (up ? " up" : " down"));
  }

  // Returns: true once a TCP connection from `host` to `address:port` on the head is
  // established (the program in `host` has connected), false after `timeout`. `address`
  // defaults to the head's end of the host's link.
  bool wait_connected(const std::string& host, int port, std::chrono::milliseconds timeout,
                      const std::string& address = "") const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::string cmd = ip_ + " netns exec " + ns_name(host) +
                            " ss -Htn state established dst " +
                            (address.empty() ? hosts_.at(host) : address) + ":" +
                            std::to_string(port);
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = run_command(cmd);
      if (r.rc == 0 && !r.output.empty()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Returns: the namespace name of `name` ("head" or a host).
  std::string ns_name(const std::string& name) const { return prefix_ + name; }

 private:
  // Kills whatever still runs in our namespaces, then deletes them (and their veths).
  void clean() {
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
      run_command("for p in $(" + ip_ + " netns pids " + *it + "); do kill -9 $p; done");
      run_command(ip_ + " netns del " + *it);
    }
    made_.clear();
  }

  std::string make_namespace(const std::string& name) {
    const std::string ns = ns_name(name);
    must(ip_ + " netns add " + ns);
    made_.push_back(ns);
    must(ip_ + " -n " + ns + " link set dev lo up");
    return ns;
  }

  std::vector<std::string> namespaces_now() const {
    std::vector<std::string> out;
    if (DIR* d = opendir("/run/netns")) {
      while (dirent* e = readdir(d)) {
        if (std::string(e->d_name).rfind(prefix_, 0) == 0) out.push_back(e->d_name);
      }
      closedir(d);
    }
    return out;
  }

  static void must(const std::string& command) {
    auto r = run_command(command);
    if (r.rc != 0) throw std::runtime_error("`" + command + "` failed: " + r.output);
  }

  std::string ip_, prefix_;
  std::vector<std::string> made_;
  std::map<std::string, std::string> hosts_;
};

}  // namespace taskfarm::testing::netns
