// CurveZMQ with real processes and real keys: only authorized keys get in, each only where its
// role allows (workers take tasks and send results, clients submit and cancel, the head runs
// the ventilator and sink); bad key files, job files and flags are one-line errors.
#include <fcntl.h>
#include <sys/stat.h>
#include <zmq.hpp>

#include "common/security.h"
#include "farm.h"

namespace taskfarm::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Returns: whether `text` has a byte a terminal or log reader would act on (ESC, BEL, CR...).
bool has_control_bytes(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\n') || u == 0x7f;
  });
}

// Runs `args` to completion (5 s at most). Returns: the finished process.
Process run(Farm& farm, const std::vector<std::string>& args, const std::string& name) {
  Process p(args, farm.path(name));
  EXPECT_TRUE(p.wait_for(10s).has_value()) << name << " hung";
  return p;
}

// Expects exit code 1 with one line on stderr that contains `expect`.
#define EXPECT_ONE_LINE_ERROR(proc, expect)                                        \
  do {                                                                             \
    EXPECT_EQ((proc).wait_for(10s), std::optional<int>(1)) << (proc).err();        \
    const std::string _err = (proc).err();                                         \
    EXPECT_NE(_err.find(expect), std::string::npos) << _err;                       \
    EXPECT_EQ(std::count(_err.begin(), _err.end(), '\n'), 1) << _err;              \
    EXPECT_FALSE(has_control_bytes(_err)) << _err;                                 \
  } while (0)

// Keys made with `taskfarm keygen`, and an authorized-keys folder by role: the head key (sink
// and ventilator) in head/, worker keys in workers/, client keys in clients/. The intruder's key
// is in none.
struct Keys {
  explicit Keys(Farm& farm) : dir(farm.path("keys")), auth(farm.path("authorized")) {
    const std::vector<std::pair<std::string, std::string>> keys = {
        {"head", "head"}, {"good", "workers"}, {"alice", "clients"}, {"intruder", ""}};
    for (const auto& [name, role] : keys) {
      Process p({bin("taskfarm"), "keygen", name, "--dir", dir}, farm.path("keygen-" + name));
      EXPECT_EQ(p.wait_for(5s), std::optional<int>(0)) << p.err();
      if (role.empty()) continue;
      std::filesystem::create_directories(auth + "/" + role);
      std::filesystem::copy_file(dir + "/" + name + ".pub", auth + "/" + role + "/" + name + ".pub");
    }
  }
  std::vector<std::string> server() const {
    return {"--curve-secret", dir + "/head.key", "--authorized-keys", auth};
  }
  std::vector<std::string> client(const std::string& name) const {
    return {"--curve-secret", dir + "/" + name + ".key", "--server-key", dir + "/head.pub"};
  }
  // A raw CURVE socket with `name`'s key, connected to `endpoint`.
  zmq::socket_t raw(zmq::context_t& ctx, zmq::socket_type type, const std::string& name,
                    const std::string& endpoint) const {
    zmq::socket_t s(ctx, type);
    s.set(zmq::sockopt::linger, 1000);
    const std::string secret = load_secret_key(dir + "/" + name + ".key");
    char pub[41];
    EXPECT_EQ(zmq_curve_public(pub, secret.c_str()), 0);
    s.set(zmq::sockopt::curve_serverkey, load_public_key(dir + "/head.pub", "server key"));
    s.set(zmq::sockopt::curve_publickey, std::string(pub));
    s.set(zmq::sockopt::curve_secretkey, secret);
    s.connect(endpoint);
    return s;
  }
  std::string dir, auth;
};

// A farm in service mode over CURVE: sink and ventilator with the head key, one worker.
class CurveService {
 public:
  CurveService(Farm& farm, const Keys& keys)
      : farm_(farm), keys_(keys), submit_("ipc://" + farm.path("submit")) {
    sink_.emplace(farm.sink(std::vector<std::string>{"--serve", "--results-dir", farm.path("jobs"),
                                                     "--results-service", outputs()} +
                            keys.server()));
    vent_.emplace(farm.ventilator(std::vector<std::string>{"--serve", "--submit", submit_} +
                                  keys.server() +
                                  std::vector<std::string>{"--server-key", keys.dir + "/head.pub"}));
    worker_.emplace(farm.worker("good", std::vector<std::string>{"--threads", "2"} +
                                            keys.client("good")));
    EXPECT_TRUE(vent_->wait_for_log("serving jobs", 10s)) << vent_->err();
  }
  ~CurveService() {
    // The worker first: its last results still reach the sink (no 5 s linger at exit).
    worker_->signal(SIGTERM);
    EXPECT_EQ(worker_->wait_for(10s), std::optional<int>(0)) << worker_->err();
    for (auto* p : {&*vent_, &*sink_}) p->signal(SIGTERM);
    EXPECT_EQ(vent_->wait_for(10s), std::optional<int>(0)) << vent_->err();
    EXPECT_EQ(sink_->wait_for(10s), std::optional<int>(0)) << sink_->err();
  }
  // Runs `taskfarm` with `key`'s identity. Returns: the finished process.
  // A refused key gets no answer: `timeout` is how long it waits for one.
  Process client(const std::string& key, const std::vector<std::string>& args,
                 const std::string& name, const std::string& timeout = "5") {
    return run(farm_,
               std::vector<std::string>{bin("taskfarm"), "--server", submit_, "--timeout", timeout} +
                   keys_.client(key) + args,
               name);
  }
  // Returns: `taskfarm status [JOB] --json` run with `key`, parsed.
  v1::StatusReply status(const std::string& key, const std::string& job = "") {
    auto p = client(key, job.empty() ? std::vector<std::string>{"status", "--json"}
                                     : std::vector<std::string>{"status", job, "--json"},
                    "status");
    v1::StatusReply reply;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(p.out(), &reply).ok())
        << p.out() << p.err();
    return reply;
  }
  Process& sink() { return *sink_; }
  // The sink's results service (`taskfarm results`).
  std::string outputs() const { return "ipc://" + farm_.path("outputs"); }
  Process& vent() { return *vent_; }

 private:
  Farm& farm_;
  const Keys& keys_;
  std::string submit_;
  std::optional<Process> sink_, vent_, worker_;
};

std::string trimmed(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST(Security, AuthorizedWorkerGetsWorkOverCurve) {
  Farm farm;
  Keys keys(farm);
  auto sink = farm.sink(keys.server());
  auto w = farm.worker("good", keys.client("good"));
  auto vent = farm.ventilator(std::vector<std::string>{"--kernel", "saxpy", "--tasks", "40",
                                                       "--size", "1000"} +
                              keys.server() + std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_EXIT_CODE(w, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 40u);
}

TEST(Security, UnknownOrMissingKeysGetNothingAndCannotInjectResults) {
  Farm farm;
  Keys keys(farm);
  auto sink = farm.sink(keys.server());
  auto vent = farm.ventilator(std::vector<std::string>{"--kernel", "noop", "--tasks", "50"} +
                              keys.server() + std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  auto intruder = farm.worker("intruder", keys.client("intruder"));
  auto keyless = farm.worker("keyless");
  // A raw peer without CURVE tries to push a forged result batch to the sink.
  zmq::context_t ctx;
  zmq::socket_t forger(ctx, zmq::socket_type::push);
  forger.set(zmq::sockopt::linger, 0);
  forger.connect("ipc://" + farm.path("results"));
  v1::Envelope forged;
  forged.set_version(1);
  forged.mutable_results()->add_results()->set_task_id(0);
  (void)forger.send(zmq::buffer(forged.SerializeAsString()), zmq::send_flags::dontwait);
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(vent.running());  // nobody authorized has done anything yet
  EXPECT_TRUE(vent.err().find("joined") == std::string::npos) << vent.err();
  auto good = farm.worker("good", keys.client("good"));
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 50u);
  EXPECT_EQ(r.rejected_messages(), 0u) << "the forged frame never got past the handshake";
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).id(), "good");
  EXPECT_NE(vent.err().find("refused an unknown key"), std::string::npos) << vent.err();
}

TEST(Security, ClientKeyCannotTakeTasksOrSendResults) {
  Farm farm;
  Keys keys(farm);
  auto sink = farm.sink(keys.server());
  auto vent = farm.ventilator(std::vector<std::string>{"--kernel", "noop", "--tasks", "300"} +
                              keys.server() + std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  // A worker started with a client's key (authorized, but as a client).
  auto rogue = farm.worker("rogue", keys.client("alice"));
  // The same key, raw, pushing a result straight to the sink.
  zmq::context_t ctx;
  auto push = keys.raw(ctx, zmq::socket_type::push, "alice", "ipc://" + farm.path("results"));
  v1::Envelope forged;
  forged.set_version(1);
  forged.mutable_results()->add_results()->set_task_id(0);
  (void)push.send(zmq::buffer(forged.SerializeAsString()), zmq::send_flags::dontwait);
  EXPECT_TRUE(vent.wait_for_log("on the tasks socket", 10s)) << vent.err();
  EXPECT_TRUE(sink.wait_for_log("on the results socket", 10s)) << sink.err();
  EXPECT_TRUE(vent.running()) << "the client key took no task, so the batch cannot be over";
  auto good = farm.worker("good", keys.client("good"));
  EXPECT_EXIT_CODE(vent, 0, kBatchTimeout);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  const auto r = farm.report();
  EXPECT_EQ(r.tasks_ok(), 300u);
  EXPECT_EQ(r.rejected_messages(), 0u) << "nothing from the client key was read";
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).id(), "good");
  EXPECT_NE(vent.err().find("it is authorized as clients, and that socket admits workers"),
            std::string::npos)
      << vent.err();
}

TEST(Security, WorkerKeyCannotSubmitOrCancelButClientAndHeadCan) {
  Farm farm;
  Keys keys(farm);
  CurveService svc(farm, keys);
  const std::string job = farm.write(
      "job.json", R"({"name": "roles", "tasks": [{"kernel": "sleep", "count": 200, "size": 100000}]})");
  auto by_worker = svc.client("good", {"submit", job}, "submit-worker", "0.5");
  EXPECT_EQ(by_worker.wait_for(0s), std::optional<int>(1)) << by_worker.err();
  EXPECT_TRUE(by_worker.out().empty()) << by_worker.out();
  EXPECT_TRUE(svc.vent().wait_for_log("on the submit socket", 5s)) << svc.vent().err();
  auto by_intruder = svc.client("intruder", {"submit", job}, "submit-intruder", "0.5");
  EXPECT_EQ(by_intruder.wait_for(0s), std::optional<int>(1));

  auto by_client = svc.client("alice", {"submit", job}, "submit-client");
  ASSERT_EQ(by_client.wait_for(0s), std::optional<int>(0)) << by_client.err();
  const std::string id = trimmed(by_client.out());
  auto cancel_by_worker = svc.client("good", {"cancel", id}, "cancel-worker", "0.5");
  EXPECT_EQ(cancel_by_worker.wait_for(0s), std::optional<int>(1));
  EXPECT_EQ(svc.status("head", id).jobs(0).state(), v1::JOB_RUNNING) << "the worker key's cancel did nothing";
  auto cancel_by_client = svc.client("alice", {"cancel", id}, "cancel-client");
  EXPECT_EQ(cancel_by_client.wait_for(0s), std::optional<int>(0)) << cancel_by_client.err();
  EXPECT_EQ(svc.status("alice", id).jobs(0).state(), v1::JOB_CANCELLED);
  EXPECT_EQ(svc.status("alice").jobs_size(), 1) << "the worker key submitted nothing";
}

TEST(Security, WorkerKeyCannotStartOrCancelJobsAtTheSink) {
  Farm farm;
  Keys keys(farm);
  CurveService svc(farm, keys);
  auto submit = svc.client(
      "alice", {"submit", farm.write("job.json", R"({"name": "victim", "tasks": [{"kernel": "sleep",
                                                      "count": 150, "size": 20000}]})")},
      "submit");
  ASSERT_EQ(submit.wait_for(0s), std::optional<int>(0)) << submit.err();
  const std::string id = trimmed(submit.out());
  // Wait until the sink has the job and results flow, so that a cancel would hit it.
  for (int i = 0; i < 100; ++i) {
    const auto st = svc.status("alice", id);
    if (st.jobs_size() == 1 && st.jobs(0).state() == v1::JOB_RUNNING && st.jobs(0).done() > 0) break;
    std::this_thread::sleep_for(50ms);
  }
  // An authorized worker key pushes head messages to the sink's results socket.
  zmq::context_t ctx;
  auto push = keys.raw(ctx, zmq::socket_type::push, "good", "ipc://" + farm.path("results"));
  v1::Envelope cancel;
  cancel.set_version(1);
  cancel.mutable_cancel_job()->set_job_id(std::stoull(id, nullptr, 16));
  ASSERT_TRUE(push.send(zmq::buffer(cancel.SerializeAsString()), zmq::send_flags::none));
  v1::Envelope start;
  start.set_version(1);
  start.mutable_batch_start()->set_job_id(1);
  start.mutable_batch_start()->set_total(1);
  start.mutable_batch_start()->set_name("forged");
  ASSERT_TRUE(push.send(zmq::buffer(start.SerializeAsString()), zmq::send_flags::none));
  EXPECT_TRUE(svc.sink().wait_for_log("'batch_start' message from a key without the head role", 10s))
      << svc.sink().err();
  EXPECT_NE(svc.sink().err().find("'cancel_job' message from a key without the head role"),
            std::string::npos)
      << svc.sink().err();
  auto wait = run(farm,
                  std::vector<std::string>{bin("taskfarm"), "--server", "ipc://" + farm.path("submit")} +
                      keys.client("alice") +
                      std::vector<std::string>{"wait", id, "-q", "--report", farm.path("out.json")},
                  "wait");
  EXPECT_EQ(wait.wait_for(0s), std::optional<int>(0)) << wait.err();
  v1::Report r;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(read_file(farm.path("out.json")), &r).ok());
  EXPECT_EQ(r.state(), "done");
  EXPECT_EQ(r.tasks_ok(), 150u);
  EXPECT_FALSE(std::filesystem::exists(farm.path("jobs/0000000000000001")));
  // The sink's results service (`taskfarm results`): a client's key gets an answer, a worker's
  // key no handshake.
  for (const auto& [key, admitted] : {std::pair{"alice", true}, std::pair{"good", false}}) {
    auto dealer = keys.raw(ctx, zmq::socket_type::dealer, key, svc.outputs());
    v1::Envelope req;
    req.set_version(1);
    req.mutable_results_request()->set_job_id(id);
    ASSERT_TRUE(dealer.send(zmq::buffer(req.SerializeAsString()), zmq::send_flags::dontwait));
    zmq::pollitem_t items[] = {{dealer.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(admitted ? 5000 : 1000));
    EXPECT_EQ((items[0].revents & ZMQ_POLLIN) != 0, admitted) << key;
    dealer.set(zmq::sockopt::linger, 0);
  }
  EXPECT_TRUE(svc.sink().wait_for_log("on the outputs socket", 5s)) << svc.sink().err();
}

TEST(Security, BadKeyFilesAndLayoutsAreOneLineErrors) {
  Farm farm;
  Keys keys(farm);
  const std::string garbage = farm.write("garbage.key", "not a key\n");
  chmod(garbage.c_str(), 0600);
  const std::string open_key = farm.path("open.key");
  std::filesystem::copy_file(keys.dir + "/good.key", open_key);
  chmod(open_key.c_str(), 0644);
  const std::string flat = farm.path("flat");
  std::filesystem::create_directories(flat);
  std::filesystem::copy_file(keys.dir + "/good.pub", flat + "/good.pub");
  const std::string big = farm.path("big.key");
  std::filesystem::copy_file(keys.dir + "/good.key", big);
  std::filesystem::resize_file(big, 1 << 20);
  const std::string sink = bin("taskfarm-sink"), worker = bin("taskfarm-worker");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{sink, "--curve-secret", farm.path("none.key"), "--authorized-keys", keys.auth}, "none.key"},
      {{sink, "--curve-secret", garbage, "--authorized-keys", keys.auth}, "not a CURVE key file"},
      {{sink, "--curve-secret", keys.dir + "/head.key"}, "--authorized-keys"},
      {{sink, "--curve-secret", keys.dir + "/head.key", "--authorized-keys", farm.path("nodir")},
       "nodir"},
      {{sink, "--curve-secret", keys.dir + "/head.key", "--authorized-keys", flat},
       "has keys at its top level ('good.pub')"},
      {{sink, "--curve-secret", keys.dir + "/head.key", "--authorized-keys", keys.dir},
       "has keys at its top level"},
      {{sink, "--curve-secret", open_key, "--authorized-keys", keys.auth},
       "permissions 0644 for '" + open_key + "' are too open"},
      {{sink, "--curve-secret", keys.dir + "/head.pub", "--authorized-keys", keys.auth},
       "is a public key; --curve-secret takes the secret key file"},
      {{sink, "--curve-secret", "/dev/zero", "--authorized-keys", keys.auth},
       "'/dev/zero' is not a regular file"},
      {{sink, "--curve-secret", big, "--authorized-keys", keys.auth}, "larger than the 4 KiB limit"},
      {{worker, "--device", "cpu", "--curve-secret", keys.dir + "/good.key"}, "--server-key"},
      {{worker, "--device", "cpu", "--server-key", keys.dir + "/head.pub"}, "--curve-secret"},
      {{worker, "--device", "cpu", "--curve-secret", keys.dir + "/good.key", "--server-key",
        keys.dir + "/head.key"},
       "is a secret key; give the public key"},
  };
  int n = 0;
  for (const auto& [args, expect] : cases) {
    Process p(args, farm.path("p" + std::to_string(n++)));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_ONE_LINE_ERROR(p, expect);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << expect;
  }
}

TEST(Security, KeygenNeverOverwritesFollowsLinksOrEscapesItsFolder) {
  Farm farm;
  const std::string dir = farm.path("keys");
  auto keygen = [&](std::vector<std::string> extra, const std::string& name) {
    return run(farm, std::vector<std::string>{bin("taskfarm"), "keygen"} + extra, name);
  };
  auto first = keygen({"node", "--dir", dir}, "k1");
  ASSERT_EQ(first.wait_for(0s), std::optional<int>(0)) << first.err();
  const std::string secret = read_file(dir + "/node.key");
  auto again = keygen({"node", "--dir", dir}, "k2");
  EXPECT_ONE_LINE_ERROR(again, "already exists (give --force");
  EXPECT_EQ(read_file(dir + "/node.key"), secret);
  // The secret was world-readable: --force writes a fresh 0600 file instead of reusing it.
  chmod((dir + "/node.key").c_str(), 0644);
  auto forced = keygen({"node", "--dir", dir, "--force"}, "k3");
  ASSERT_EQ(forced.wait_for(0s), std::optional<int>(0)) << forced.err();
  EXPECT_NE(read_file(dir + "/node.key"), secret);
  EXPECT_NE(read_file(dir + "/node.pub").find(trimmed(forced.out())), std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat((dir + "/node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir + "/node.pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // A symlink planted where the secret goes.
  const std::string victim = farm.write("victim.txt", "precious\n");
  std::filesystem::create_symlink(victim, dir + "/link.key");
  auto linked = keygen({"link", "--dir", dir}, "k4");
  EXPECT_ONE_LINE_ERROR(linked, "already exists");
  auto linked_force = keygen({"link", "--dir", dir, "--force"}, "k5");
  EXPECT_EQ(linked_force.wait_for(0s), std::optional<int>(0)) << linked_force.err();
  EXPECT_EQ(read_file(victim), "precious\n");
  EXPECT_FALSE(std::filesystem::is_symlink(dir + "/link.key"));
  // Names that would leave --dir.
  for (const char* bad : {"../../escaped", "sub/name", "..", "/abs"}) {
    auto p = keygen({bad, "--dir", dir}, "bad");
    EXPECT_ONE_LINE_ERROR(p, "must be 1 to 128 letters, digits");
  }
  EXPECT_FALSE(std::filesystem::exists(farm.path("escaped.key")));
}

TEST(Robustness, HugeEndlessOrDeviceInputFilesAreRefusedAtOnce) {
  Farm farm;
  const std::string big = farm.path("big.json");
  { std::ofstream(big) << "{}"; }
  std::filesystem::resize_file(big, (uint64_t{64} << 20) + 1);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{bin("taskfarm"), "--server", "ipc://" + farm.path("none"), "submit", "/dev/zero"},
       "job file '/dev/zero' is not a regular file"},
      {{bin("taskfarm-ventilator"), "--job", "/dev/zero"}, "not a regular file"},
      {{bin("taskfarm"), "--server", "ipc://" + farm.path("none"), "submit", big},
       "is larger than the 64 MiB limit"},
      {{bin("taskfarm-ventilator"), "--job", big}, "is larger than the 64 MiB limit"},
      {{bin("taskfarm-ventilator"), "--job", farm.path("")}, "is a directory"},
      // --max-job-mb sets the cap (here below the file's 64 MiB + 1 byte).
      {{bin("taskfarm"), "--server", "ipc://" + farm.path("none"), "submit", big, "--max-job-mb", "1"},
       "is larger than the 1 MiB limit"},
      {{bin("taskfarm-ventilator"), "--job", big, "--max-job-mb", "1"}, "larger than the 1 MiB limit"},
      {{bin("taskfarm-ventilator"), "--serve", "--submit", "ipc://" + farm.path("submit"), "--bind",
        "ipc://" + farm.path("tasks"), "--http", "0", "--http-token-file", "/dev/zero"},
       "--http-token-file '/dev/zero' is not a regular file"},
  };
  int n = 0;
  for (const auto& [args, expect] : cases) {
    Process p(args, farm.path("p" + std::to_string(n++)));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_ONE_LINE_ERROR(p, expect);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << expect;
  }
}

TEST(Robustness, SigtermWhileReadingASilentPipeEndsTheProcess) {
  Farm farm;
  const std::string fifo = farm.path("job.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int writer = open(fifo.c_str(), O_RDWR);  // a writer that never writes
  ASSERT_GE(writer, 0);
  auto vent = farm.ventilator({"--job", fifo});
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(vent.running()) << vent.err();
  vent.signal(SIGTERM);
  EXPECT_ONE_LINE_ERROR(vent, "interrupted");
  close(writer);
}

TEST(Robustness, DuplicateKeysQuotedNumbersAndControlCharactersInJobFiles) {
  Farm farm;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"name": "a", "name": "b", "tasks": [{"kernel": "noop", "count": 1}]})",
       "invalid job: duplicate key 'name'"},
      {R"({"tasks": [{"kernel": "noop", "count": 3}], "tasks": [{"kernel": "noop", "count": 5}]})",
       "invalid job: duplicate key 'tasks'"},
      {R"({"tasks": [{"kernel": "noop", "count": "7"}]})",
       "invalid job: 'count' in tasks[0] must be a number, not a string (\"7\")"},
      {"{\"name\": \"fake\\ninfo: all done\\u001b[2J\", \"tasks\": [{\"kernel\": \"noop\", \"count\": 1}]}",
       "job name 'fake\\x0ainfo: all done\\x1b[2J' contains the control character \\x0a"},
      {"{\"name\": \"" + std::string(100000, 'n') + "\", \"tasks\": [{\"kernel\": \"noop\", \"count\": 1}]}",
       "is 100000 bytes long"},
  };
  int n = 0;
  for (const auto& [json, expect] : cases) {
    const std::string file = farm.write("job" + std::to_string(n) + ".json", json);
    Process vent({bin("taskfarm-ventilator"), "--job", file}, farm.path("v" + std::to_string(n)));
    EXPECT_ONE_LINE_ERROR(vent, expect);
    Process submit({bin("taskfarm"), "--server", "ipc://" + farm.path("none"), "submit", file},
                   farm.path("s" + std::to_string(n++)));
    EXPECT_ONE_LINE_ERROR(submit, expect);
  }
}

TEST(Robustness, ServiceRefusesControlCharactersInSubmittedNamesAndLogsNone) {
  Farm farm;
  const std::string submit_ep = "ipc://" + farm.path("submit");
  auto sink = farm.sink({"--serve", "--results-service", "off"});
  auto vent = farm.ventilator({"--serve", "--submit", submit_ep});
  ASSERT_TRUE(vent.wait_for_log("serving jobs", 10s)) << vent.err();
  // A client that skips the job file: a SubmitJob whose name holds ESC and a newline.
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::rcvtimeo, 5000);
  dealer.connect(submit_ep);
  v1::Envelope env;
  env.set_version(1);
  auto* job = env.mutable_submit()->mutable_job();
  job->set_name("x\x1b[2J\ninfo: job 'y' done");
  auto* t = job->add_tasks();
  t->set_kernel("noop\x1b[31m");
  t->set_count(1);
  ASSERT_TRUE(dealer.send(zmq::buffer(env.SerializeAsString()), zmq::send_flags::none));
  zmq::message_t reply;
  ASSERT_TRUE(dealer.recv(reply, zmq::recv_flags::none));
  v1::Envelope rep;
  ASSERT_TRUE(rep.ParseFromArray(reply.data(), static_cast<int>(reply.size())));
  EXPECT_TRUE(rep.submit_reply().job_id().empty());
  EXPECT_NE(rep.submit_reply().error().find("'noop\\x1b[31m'"), std::string::npos)
      << rep.submit_reply().error();
  t->set_kernel("noop");
  ASSERT_TRUE(dealer.send(zmq::buffer(env.SerializeAsString()), zmq::send_flags::none));
  ASSERT_TRUE(dealer.recv(reply, zmq::recv_flags::none));
  ASSERT_TRUE(rep.ParseFromArray(reply.data(), static_cast<int>(reply.size())));
  EXPECT_TRUE(rep.submit_reply().job_id().empty());
  EXPECT_NE(rep.submit_reply().error().find("contains the control character \\x1b"),
            std::string::npos)
      << rep.submit_reply().error();
  vent.signal(SIGTERM);
  sink.signal(SIGTERM);
  EXPECT_EXIT_CODE(vent, 0, 10s);
  EXPECT_EXIT_CODE(sink, 0, 10s);
  EXPECT_FALSE(has_control_bytes(vent.err())) << vent.err();
  std::istringstream lines(vent.err());
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line.rfind("taskfarm-ventilator ", 0), 0u) << "a faked log line: " << line;
  }
}

TEST(Robustness, WorkerIdsAreCheckedBeforeAnythingStarts) {
  Farm farm;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {std::string(300, 'w'), "worker id 'wwww"},
      {"w\x1b[2J", "worker id 'w\\x1b[2J' contains the control character \\x1b"},
      {"two words", "worker id 'two words' contains a space"},
      {"", "worker id '' is empty"},
  };
  for (const auto& [id, expect] : cases) {
    Process p({bin("taskfarm-worker"), "--device", "cpu", "--ventilator", "ipc://" + farm.path("v"),
               "--id", id},
              farm.path("w"));
    EXPECT_ONE_LINE_ERROR(p, expect);
    EXPECT_NE(p.err().find("--id"), std::string::npos) << p.err();
  }
}

// A refused client or worker says why at once instead of "no answer" or a silent wait.
TEST(Security, RefusedClientsAndWorkersSayWhy) {
  Farm farm;
  Keys keys(farm);
  const std::string submit = "ipc://" + farm.path("submit");
  // No TCP ports: tests run side by side.
  auto sink = farm.sink(keys.server() +
                        std::vector<std::string>{"--serve", "--results-service", "off"});
  auto vent = farm.ventilator(std::vector<std::string>{"--serve", "--submit", submit, "--http", "off"} +
                              keys.server() +
                              std::vector<std::string>{"--server-key", keys.dir + "/head.pub"});
  ASSERT_TRUE(vent.wait_for_log("serving jobs", 10s)) << vent.err();
  auto client = [&](const std::vector<std::string>& key_args, const std::string& name) {
    // A long --timeout: the reason must come from the handshake, not from the timeout.
    Process p(std::vector<std::string>{bin("taskfarm"), "--server", submit, "--timeout", "60"} +
                  key_args + std::vector<std::string>{"status"},
              farm.path(name));
    EXPECT_TRUE(p.wait_for(20s).has_value()) << name << " waited for its timeout";
    return p;
  };
  auto intruder = client(keys.client("intruder"), "intruder");
  EXPECT_EQ(intruder.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(intruder.err().find("the server refused our key (not authorized)"), std::string::npos)
      << intruder.err();
  auto wrong_server = client({"--curve-secret", keys.dir + "/good.key", "--server-key",
                              keys.dir + "/intruder.pub"},
                             "wrong-server-key");
  EXPECT_EQ(wrong_server.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(wrong_server.err().find("the server's key does not match"), std::string::npos)
      << wrong_server.err();
  auto keyless = client({}, "keyless");
  EXPECT_EQ(keyless.wait_for(0s), std::optional<int>(1));
  EXPECT_NE(keyless.err().find("requires CurveZMQ keys"), std::string::npos)
      << keyless.err();
  auto good = client(keys.client("alice"), "alice");  // a client's key
  EXPECT_EQ(good.wait_for(0s), std::optional<int>(0)) << good.err();

  auto w = farm.worker("intruder", keys.client("intruder"));
  EXPECT_TRUE(w.wait_for_log("cannot register with the ventilator at", 10s)) << w.err();
  EXPECT_NE(w.err().find("the server refused our key (not authorized)"), std::string::npos)
      << w.err();
  w.signal(SIGTERM);
  EXPECT_EXIT_CODE(w, 0, 10s);
  vent.signal(SIGTERM);
  sink.signal(SIGTERM);
  EXPECT_EXIT_CODE(vent, 0, 10s);
  EXPECT_EXIT_CODE(sink, 0, 10s);
}

}  // namespace
}  // namespace taskfarm::testing
