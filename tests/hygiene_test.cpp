// Untrusted input in files and text: size caps on every file read, the strict JSON pre-pass of
// job files, job name and worker id rules, escaping of peer text, key files and key roles.
#include <fcntl.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/errors.h"
#include "common/files.h"
#include "common/security.h"
#include "common/strict_json.h"
#include "common/text.h"
#include "jobs/job.h"

namespace taskfarm {
namespace {

namespace fs = std::filesystem;

// A private folder, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            (std::string("taskfarm-hygiene-") + info->name() + "-" + std::to_string(getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string path(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    const std::string p = path(name);
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p, std::ios::trunc) << text;
    chmod(p.c_str(), mode);
    return p;
  }

 private:
  fs::path path_;
};

// Returns: the SetupError message of `f()`, or "" when it does not throw one.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const SetupError& e) {
    return e.what();
  }
  return "";
}

bool one_line(const std::string& s) { return s.find('\n') == std::string::npos; }

// ------------------------------------------------------------------------------ file caps

TEST(ReadFileCapped, ReadsUpToTheCapAndRefusesOneByteMore) {
  TempDir d;
  const std::string at_cap = d.write("at", std::string(1024, 'a'));
  EXPECT_EQ(read_file_capped(at_cap, 1024, "job file").size(), 1024u);
  const std::string over = d.write("over", std::string(1025, 'a'));
  const std::string err = error_of([&] { read_file_capped(over, 1024, "job file"); });
  EXPECT_EQ(err, "job file '" + over + "' is larger than the 1 KiB limit");
}

TEST(ReadFileCapped, RefusesASparseHugeFileWithoutReadingIt) {
  TempDir d;
  const std::string p = d.path("huge");
  { std::ofstream(p) << "x"; }
  fs::resize_file(p, uint64_t{64} << 30);  // 64 GiB of holes
  const auto start = std::chrono::steady_clock::now();
  const std::string err = error_of([&] { read_file_capped(p, 64 * kMiB, "job file"); });
  EXPECT_NE(err.find("larger than the 64 MiB limit"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ReadFileCapped, RefusesDevicesDirectoriesAndMissingFiles) {
  TempDir d;
  EXPECT_EQ(error_of([] { read_file_capped("/dev/zero", 1024, "job file"); }),
            "job file '/dev/zero' is not a regular file");
  EXPECT_EQ(error_of([] { read_file_capped("/dev/zero", 1024, "secret key file",
                                           FileKind::kRegular); }),
            "secret key file '/dev/zero' is not a regular file");
  EXPECT_EQ(error_of([&] { read_file_capped(d.path(""), 1024, "job file"); }),
            "job file '" + d.path("") + "' is a directory");
  const std::string missing = error_of([&] { read_file_capped(d.path("none"), 10, "job file"); });
  EXPECT_EQ(missing, "cannot read job file '" + d.path("none") + "': No such file or directory");
}

TEST(ReadFileCapped, StopsReadingAnEndlessPipeAtTheCap) {
  signal(SIGPIPE, SIG_IGN);  // the writer sees EPIPE once the reader gives up
  TempDir d;
  const std::string fifo = d.path("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    const std::string chunk(65536, '{');
    while (written < (uint64_t{1} << 30)) {  // gives up after 1 GiB: the reader must stop first
      const ssize_t n = write(fd, chunk.data(), chunk.size());
      if (n <= 0) break;  // EPIPE: the reader closed
      written += static_cast<uint64_t>(n);
    }
    close(fd);
  });
  // The reader opens without blocking; wait until the writer is there.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string err = error_of([&] { read_file_capped(fifo, kMiB, "job file"); });
  writer.join();
  EXPECT_EQ(err, "job file '" + fifo + "' is larger than the 1 MiB limit");
  EXPECT_LT(written.load(), uint64_t{16} << 20) << "the reader went on past its cap";
}

TEST(ReadFileCapped, ReadsAPipeThatEndsBelowTheCap) {
  TempDir d;
  const std::string fifo = d.path("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    (void)!write(fd, "{}", 2);
    close(fd);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(read_file_capped(fifo, 1024, "job file"), "{}");
  writer.join();
}

TEST(FormatSize, NamesUnits) {
  EXPECT_EQ(format_size(64 * kMiB), "64 MiB");
  EXPECT_EQ(format_size(4096), "4 KiB");
  EXPECT_EQ(format_size(1000), "1000 bytes");
}

// ------------------------------------------------------------------------------ printable text

TEST(Printable, EscapesControlCharactersAndKeepsUnicode) {
  EXPECT_EQ(printable("plain name-1"), "plain name-1");
  EXPECT_EQ(printable("r\xc3\xa9seau \xe2\x9c\x93"), "r\xc3\xa9seau \xe2\x9c\x93");  // réseau ✓
  EXPECT_EQ(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(printable("line\nfake: log"), "line\\x0afake: log");
  EXPECT_EQ(printable("bell\a\r\t\x7f"), "bell\\x07\\x0d\\x09\\x7f");
  EXPECT_EQ(printable(std::string_view("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(printable("c1 \xc2\x9b"), "c1 \\u{9b}");                 // U+009B CSI
  EXPECT_EQ(printable("abc\xe2\x80\xae" "cba"), "abc\\u{202e}cba");  // right-to-left override
  EXPECT_EQ(printable("ls\xe2\x80\xa8x"), "ls\\u{2028}x");           // line separator
  EXPECT_EQ(printable("bad \xff\xc3"), "bad \\xff\\xc3");             // not UTF-8
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");                     // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");            // a surrogate
}

TEST(Printable, CutsLongTextAtACharacterBoundary) {
  EXPECT_EQ(printable(std::string(10'000'000, 'x'), 16), std::string(16, 'x') + "...");
  const std::string cut = printable(std::string(100, '\x1b'), 20);
  EXPECT_LE(cut.size(), 20u + 4 + 3);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
  std::string e_acute;
  for (int i = 0; i < 20; ++i) e_acute += "\xc3\xa9";
  const std::string u = printable(e_acute, 5);  // never splits a character
  EXPECT_EQ(u, "\xc3\xa9\xc3\xa9\xc3\xa9...");
}

TEST(Printable, NeverLetsAControlByteThroughOnRandomBytes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string s(1 + rng() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    const std::string out = printable(s, 1000);
    for (unsigned char c : out) ASSERT_TRUE(c >= 0x20 && c != 0x7f) << "byte " << int(c);
    EXPECT_EQ(name_problem(out, 100000, true), std::nullopt) << out;  // output is a valid name
    if (!name_problem(s, 1000, true)) {
      EXPECT_EQ(out, s);  // valid names come back unchanged
    }
  }
}

TEST(NameProblem, NamesTheRuleBroken) {
  EXPECT_EQ(name_problem("mandel-4k", 128, false), std::nullopt);
  EXPECT_EQ(name_problem("sweep 7 \xc3\xa9t\xc3\xa9", 128, true), std::nullopt);
  EXPECT_EQ(name_problem("", 128, true), "is empty");
  EXPECT_EQ(name_problem(std::string(129, 'x'), 128, true), "is 129 bytes long");
  EXPECT_EQ(name_problem(std::string(128, 'x'), 128, true), std::nullopt);
  EXPECT_EQ(name_problem("a\x1b" "b", 128, true), "contains the control character \\x1b");
  EXPECT_EQ(name_problem("a\nb", 128, true), "contains the control character \\x0a");
  EXPECT_EQ(name_problem("a\xe2\x80\xae", 128, true), "contains the control character \\u{202e}");
  EXPECT_EQ(name_problem("a\xff", 128, true), "is not valid UTF-8");
  EXPECT_EQ(name_problem("a b", 128, false), "contains a space");
  EXPECT_EQ(name_problem("a\xc2\xa0" "b", 128, false), "contains a space");  // no-break space
}

// ------------------------------------------------------------------------------ strict JSON

std::optional<std::string> job_problem(const std::string& json) {
  return strict_json_problem(json, *v1::JobSpec::descriptor());
}

TEST(StrictJson, AcceptsAPlainJob) {
  EXPECT_EQ(job_problem(R"({ "name": "mandel-4k", "max_attempts": 3, "priority": -2,
    "keep_output": true, "tasks": [ { "kernel": "mandelbrot", "count": 256, "size": 4096, "seed": 1 },
    { "kernel": "reduce", "count": 1, "payload": "AACAPwAAAEA=", "seed": 18446744073709551615 } ] })"),
            std::nullopt);
  EXPECT_EQ(job_problem(R"({"maxAttempts": 2, "keepOutput": false, "tasks": []})"), std::nullopt);
  EXPECT_EQ(job_problem(R"({"name": null, "tasks": null})"), std::nullopt);  // protobuf: defaults
}

TEST(StrictJson, RefusesDuplicateKeysNamingThem) {
  EXPECT_EQ(job_problem(R"({"name": "a", "name": "b", "tasks": []})"), "duplicate key 'name'");
  EXPECT_EQ(job_problem(R"({"tasks": [{"kernel": "noop", "count": 3}],
                            "tasks": [{"kernel": "noop", "count": 5}]})"),
            "duplicate key 'tasks'");
  EXPECT_EQ(job_problem(R"({"tasks": [{"kernel": "noop", "count": 1},
                                      {"kernel": "noop", "count": 1, "count": 2}]})"),
            "duplicate key 'count' in tasks[1]");
  EXPECT_EQ(job_problem(R"({"max_attempts": 2, "maxAttempts": 3})"),
            "duplicate key 'maxAttempts' (the same field as 'max_attempts')");
  // An escaped key is the same key once decoded, as protobuf reads it.
  EXPECT_EQ(job_problem(R"({"name": "a", "na\u006de": "b"})"), "duplicate key 'name'");
  // Inside unknown fields too (protobuf refuses the field; the duplicate is named first).
  EXPECT_EQ(job_problem(R"({"extra": {"k": 1, "k": 2}})"), "duplicate key 'k' in extra");
  // The same key in two different objects is fine.
  EXPECT_EQ(job_problem(R"({"tasks": [{"kernel": "a", "count": 1}, {"kernel": "b", "count": 2}]})"),
            std::nullopt);
}

TEST(StrictJson, RefusesNumbersWrittenAsStrings) {
  EXPECT_EQ(job_problem(R"({"tasks": [{"kernel": "noop", "count": "7"}]})"),
            "'count' in tasks[0] must be a number, not a string (\"7\")");
  EXPECT_EQ(job_problem(R"({"max_attempts": "3"})"),
            "'max_attempts' must be a number, not a string (\"3\")");
  EXPECT_EQ(job_problem(R"({"priority": "1"})"), "'priority' must be a number, not a string (\"1\")");
  EXPECT_EQ(job_problem(R"({"tasks": [{"size": "100"}]})"),
            "'size' in tasks[0] must be a number, not a string (\"100\")");
  EXPECT_EQ(job_problem(R"({"tasks": [{"seed": "18446744073709551615"}]})"),
            "'seed' in tasks[0] must be a number, not a string (\"18446744073709551615\")");
  EXPECT_EQ(job_problem(R"({"keep_output": "true"})"),
            "'keep_output' must be true or false, not a string (\"true\")");
  EXPECT_EQ(job_problem(R"({"name": 5})"), "'name' must be a string, not a number");
  EXPECT_EQ(job_problem(R"({"tasks": {"kernel": "noop"}})"),
            "'tasks' must be an array, not an object");
  EXPECT_EQ(job_problem(R"({"tasks": [1]})"), "tasks[0] must be an object, not a number");
  // Floating fields may be the strings protobuf writes for non-finite values.
  EXPECT_EQ(strict_json_problem(R"({"p50": "NaN", "p90": "Infinity", "max": 1.5})",
                                *v1::Latency::descriptor()),
            std::nullopt);
  EXPECT_EQ(strict_json_problem(R"({"p50": "1.5"})", *v1::Latency::descriptor()),
            "'p50' must be a number, not a string (\"1.5\")");
}

TEST(StrictJson, RefusesWhatIsNotStrictJson) {
  for (const char* bad : {"", "{", "{'name': 'x'}", "{name: \"x\"}", "{\"tasks\": [],}",
                          "{} {}", "{\"a\": 1} x", "/* c */ {}", "{\"a\": 01}", "[]", "7",
                          "\"s\"", "{\"a\": \"\xff\"}"}) {
    const auto why = job_problem(bad);
    ASSERT_TRUE(why.has_value()) << bad;
    EXPECT_TRUE(one_line(*why)) << *why;
  }
  EXPECT_EQ(job_problem("[]"), "the top level must be an object, not an array");
}

TEST(StrictJson, RefusesDeepNestingWithoutRecursing) {
  const std::string deep = std::string(100000, '[');
  EXPECT_EQ(job_problem(R"({"x": )" + deep), "nested more than 32 levels deep");
  std::string objects;
  for (int i = 0; i < 40; ++i) objects += R"({"a": )";
  EXPECT_EQ(job_problem(objects + "1" + std::string(40, '}')), "nested more than 32 levels deep");
}

TEST(StrictJson, MessagesAreOneLineAndEscaped) {
  const auto why = job_problem("{\"a\\n\\u001b[2J\": 1, \"a\\n\\u001b[2J\": 2}");
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(*why, "duplicate key 'a\\x0a\\x1b[2J'");
}

// ------------------------------------------------------------------------------ job files

std::string job_error(const std::string& json) {
  return error_of([&] { jobs::parse_job_json(json, "job.json"); });
}

TEST(JobJson, DuplicateKeysAndQuotedNumbersAreOneLineErrors) {
  EXPECT_EQ(job_error(R"({"name": "a", "name": "b", "tasks": [{"kernel": "noop", "count": 1}]})"),
            "job.json: invalid job: duplicate key 'name'");
  EXPECT_EQ(job_error(R"({"tasks": [{"kernel": "noop", "count": 3}],
                          "tasks": [{"kernel": "noop", "count": 5}]})"),
            "job.json: invalid job: duplicate key 'tasks'");
  EXPECT_EQ(job_error(R"({"tasks": [{"kernel": "noop", "count": "7"}]})"),
            "job.json: invalid job: 'count' in tasks[0] must be a number, not a string (\"7\")");
  // What protobuf alone accepted: last wins / arrays joined.
  const auto ok = jobs::parse_job_json(R"({"tasks": [{"kernel": "noop", "count": 3},
                                                           {"kernel": "noop", "count": 5}]})");
  EXPECT_EQ(ok.tasks_size(), 2);
}

TEST(JobJson, NamesArePrintableAndShort) {
  const std::string tasks = R"("tasks": [{"kernel": "noop", "count": 1}])";
  EXPECT_EQ(jobs::parse_job_json("{\"name\": \"" + std::string(128, 'n') + "\", " + tasks + "}")
                .name()
                .size(),
            128u);
  EXPECT_EQ(jobs::parse_job_json("{\"name\": \"sweep \xc3\xa9t\xc3\xa9\", " + tasks + "}").name(),
            "sweep \xc3\xa9t\xc3\xa9");
  const std::string long_name =
      job_error("{\"name\": \"" + std::string(10 * 1000 * 1000, 'n') + "\", " + tasks + "}");
  EXPECT_NE(long_name.find("job name 'nnnn"), std::string::npos) << long_name.substr(0, 200);
  EXPECT_NE(long_name.find("is 10000000 bytes long"), std::string::npos);
  EXPECT_LT(long_name.size(), 300u);
  for (const char* bad : {"a\\u001b[31mred", "fake\\ninfo: job done", "bell\\u0007", "\\u202eevil"}) {
    const std::string err = job_error(std::string("{\"name\": \"") + bad + "\", " + tasks + "}");
    EXPECT_NE(err.find("contains the control character"), std::string::npos) << bad << ": " << err;
    EXPECT_TRUE(one_line(err)) << err;
    for (unsigned char c : err) EXPECT_TRUE(c >= 0x20 && c != 0x7f) << err;
  }
}

TEST(JobJson, ValidateRefusesBadNamesFromAnySource) {
  v1::JobSpec spec;
  auto* t = spec.add_tasks();
  t->set_kernel("noop");
  t->set_count(1);
  spec.set_name("ok\x1b]0;title\x07");
  const std::string err = error_of([&] { jobs::validate_job(spec, "submission"); });
  EXPECT_EQ(err, "submission: job name 'ok\\x1b]0;title\\x07' contains the control character "
                 "\\x1b (job names: printable UTF-8, at most 128 bytes)");
}

TEST(JobFile, IsCappedAndItsDefaultNameIsEscaped) {
  TempDir d;
  const std::string odd = d.write("we\x1bird\nname.json", R"({"tasks": [{"kernel": "noop", "count": 1}]})");
  const auto job = jobs::load_job_file(odd);
  EXPECT_EQ(job.name(), "we\\x1bird\\x0aname");
  const std::string big = d.path("big.json");
  { std::ofstream(big) << "{}"; }
  fs::resize_file(big, static_cast<uintmax_t>(kDefaultMaxJobBytes) + 1);
  EXPECT_EQ(error_of([&] { jobs::load_job_file(big); }),
            "job file '" + big + "' is larger than the 64 MiB limit");
  EXPECT_EQ(error_of([] { jobs::load_job_file("/dev/zero"); }),
            "job file '/dev/zero' is not a regular file");
}

// ------------------------------------------------------------------------------ key files

TEST(KeyFiles, KeygenWritesDistinctSecretAndPublicFiles) {
  TempDir d;
  const mode_t old = umask(0);  // the modes must not depend on the caller's umask
  const std::string pub = write_key_pair(d.path("keys"), "node7");
  umask(old);
  struct stat st {};
  ASSERT_EQ(stat(d.path("keys/node7.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(stat(d.path("keys/node7.pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(load_public_key(d.path("keys/node7.pub"), "server key file"), pub);
  const std::string secret = load_secret_key(d.path("keys/node7.key"));
  char derived[41];
  ASSERT_EQ(zmq_curve_public(derived, secret.c_str()), 0);
  EXPECT_EQ(derived, pub);
  // zcert format, which pyzmq's zmq.auth.load_certificate also reads.
  const std::string text = read_file_capped(d.path("keys/node7.key"), 4096, "k");
  EXPECT_NE(text.find("secret-key = \"" + secret + "\""), std::string::npos) << text;
  const KeyFile pf = parse_key_file(read_file_capped(d.path("keys/node7.pub"), 4096, "k"), "p");
  EXPECT_EQ(pf.public_key, pub);
  EXPECT_TRUE(pf.secret_key.empty());
}

TEST(KeyFiles, KeygenRefusesExistingFilesBadNamesAndSymlinks) {
  TempDir d;
  const std::string dir = d.path("keys");
  write_key_pair(dir, "a");
  const std::string before = read_file_capped(dir + "/a.key", 4096, "k");
  EXPECT_NE(error_of([&] { write_key_pair(dir, "a"); }).find("already exists (give --force"),
            std::string::npos);
  EXPECT_EQ(read_file_capped(dir + "/a.key", 4096, "k"), before);
  // A pre-existing world-readable file: --force replaces it with a new 0600 file.
  chmod((dir + "/a.key").c_str(), 0644);
  write_key_pair(dir, "a", /*force=*/true);
  struct stat st {};
  ASSERT_EQ(stat((dir + "/a.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_NE(read_file_capped(dir + "/a.key", 4096, "k"), before);
  // A symlink where the secret goes: refused, and with --force the link itself is replaced.
  const std::string victim = d.write("victim.txt", "precious\n");
  fs::create_symlink(victim, dir + "/v.key");
  EXPECT_NE(error_of([&] { write_key_pair(dir, "v"); }).find("already exists"), std::string::npos);
  fs::create_symlink(d.path("dangling"), dir + "/w.pub");
  EXPECT_NE(error_of([&] { write_key_pair(dir, "w"); }).find("already exists"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir + "/w.key")) << "no half pair";
  write_key_pair(dir, "v", /*force=*/true);
  EXPECT_EQ(read_file_capped(victim, 4096, "k"), "precious\n");
  EXPECT_FALSE(fs::is_symlink(dir + "/v.key"));
  for (const char* bad : {"../../escaped", "a/b", "..", ".", ".hidden", "", "sp ace", "x\ny"}) {
    const std::string err = error_of([&] { write_key_pair(dir, bad); });
    EXPECT_NE(err.find("must be 1 to 128 letters"), std::string::npos) << bad << ": " << err;
    EXPECT_TRUE(one_line(err)) << err;
  }
  EXPECT_FALSE(fs::exists(d.path("escaped.key")));
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << "left a temp file";
  }
}

TEST(KeyFiles, SecretKeysMustBePrivateAndSecret) {
  TempDir d;
  const std::string pub = write_key_pair(d.path("k"), "head");
  for (mode_t mode : {0644, 0640, 0604, 0777}) {
    chmod(d.path("k/head.key").c_str(), mode);
    const std::string err = error_of([&] { load_secret_key(d.path("k/head.key")); });
    char expect[64];
    snprintf(expect, sizeof expect, "permissions %04o for '", mode);
    EXPECT_EQ(err.rfind(expect, 0), 0u) << err;
    EXPECT_NE(err.find("are too open"), std::string::npos) << err;
  }
  chmod(d.path("k/head.key").c_str(), 0400);
  EXPECT_EQ(error_of([&] { load_secret_key(d.path("k/head.key")); }), "");
  EXPECT_NE(error_of([&] { load_secret_key(d.path("k/head.pub")); }).find("is a public key"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_public_key(d.path("k/head.key"), "server key file"); })
                .find("is a secret key"),
            std::string::npos);
  // Keys written before this format: one bare Z85 line; judged by the file name.
  char p[41], s[41];
  ASSERT_EQ(zmq_curve_keypair(p, s), 0);
  const std::string old_key = d.write("old/x.key", std::string(s) + "\n", 0600);
  const std::string old_pub = d.write("old/x.pub", std::string(p) + "\n", 0644);
  EXPECT_EQ(load_secret_key(old_key), s);
  EXPECT_EQ(load_public_key(old_pub, "server key file"), p);
  EXPECT_NE(error_of([&] { load_secret_key(old_pub); }).find("is a public key"), std::string::npos);
  EXPECT_NE(error_of([&] { load_public_key(old_key, "k"); }).find("is a secret key"),
            std::string::npos);
  // A damaged pair, garbage, an oversized file, a device.
  const std::string damaged = d.write(
      "bad/d.key", "public-key = \"" + pub + "\"\nsecret-key = \"" + std::string(s) + "\"\n", 0600);
  EXPECT_NE(error_of([&] { load_secret_key(damaged); }).find("is damaged"), std::string::npos);
  const std::string garbage = d.write("bad/g.key", "not a key\n", 0600);
  EXPECT_NE(error_of([&] { load_secret_key(garbage); }).find("is not a CURVE key file"),
            std::string::npos);
  const std::string big = d.write("bad/big.key", std::string(5000, '#'), 0600);
  EXPECT_NE(error_of([&] { load_secret_key(big); }).find("larger than the 4 KiB limit"),
            std::string::npos);
  EXPECT_EQ(error_of([] { load_secret_key("/dev/zero"); }),
            "secret key file '/dev/zero' is not a regular file");
}

TEST(KeyFiles, ParsesZcertBareAndRefusesGarbage) {
  char p[41], s[41];
  ASSERT_EQ(zmq_curve_keypair(p, s), 0);
  const KeyFile z = parse_key_file(std::string("#   comment\n\nmetadata\n    name = \"x\"\ncurve\n") +
                                       "    public-key = \"" + p + "\"\r\n    secret-key = \"" + s +
                                       "\"\n",
                                   "z");
  EXPECT_EQ(z.public_key, p);
  EXPECT_EQ(z.secret_key, s);
  EXPECT_FALSE(z.bare);
  const KeyFile b = parse_key_file(std::string(p) + "\n", "b");
  EXPECT_TRUE(b.bare);
  EXPECT_EQ(b.public_key, p);
  for (const std::string& bad : {std::string(""), std::string("# only a comment\n"),
                                std::string(p) + "\n" + s + "\n", std::string("public-key = \"short\"\n"),
                                std::string("random words\n")}) {
    EXPECT_NE(error_of([&] { parse_key_file(bad, "f"); }).find("is not a CURVE key file"),
              std::string::npos)
        << bad;
  }
}

// ------------------------------------------------------------------------------ key roles

TEST(KeyRoles, EachSocketAdmitsItsRoles) {
  EXPECT_EQ(zap_domain(ServerSocket::kTasks), "tasks");
  EXPECT_EQ(admitted_roles(ServerSocket::kTasks), unsigned{kRoleWorker});
  EXPECT_EQ(admitted_roles(ServerSocket::kSubmit), unsigned{kRoleClient | kRoleHead});
  EXPECT_EQ(admitted_roles(ServerSocket::kResults), unsigned{kRoleWorker | kRoleHead});
  EXPECT_EQ(admitted_roles(ServerSocket::kControl), unsigned{kRoleWorker | kRoleHead});
  EXPECT_EQ(zap_domain(ServerSocket::kOutputs), "outputs");
  EXPECT_EQ(admitted_roles(ServerSocket::kOutputs), unsigned{kRoleClient | kRoleHead});
}

TEST(KeyRoles, AuthorizedKeysAreReadByRoleFolder) {
  TempDir d;
  const std::string w = write_key_pair(d.path("keys"), "w");
  const std::string c = write_key_pair(d.path("keys"), "c");
  const std::string both = write_key_pair(d.path("keys"), "both");
  const std::string auth = d.path("auth");
  for (const auto& [folder, name] : std::vector<std::pair<std::string, std::string>>{
           {"workers", "w"}, {"clients", "c"}, {"workers", "both"}, {"head", "both"}}) {
    fs::create_directories(auth + "/" + folder);
    fs::copy_file(d.path("keys/" + name + ".pub"), auth + "/" + folder + "/" + name + ".pub");
  }
  d.write("auth/README", "not a key");  // other files are left alone
  const auto keys = load_authorized_keys(auth);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys.at(w), unsigned{kRoleWorker});
  EXPECT_EQ(keys.at(c), unsigned{kRoleClient});
  EXPECT_EQ(keys.at(both), unsigned{kRoleWorker | kRoleHead});
}

TEST(KeyRoles, LayoutMistakesAreOneLineErrors) {
  TempDir d;
  write_key_pair(d.path("keys"), "k");
  const std::string flat = d.path("flat");
  fs::create_directories(flat);
  fs::copy_file(d.path("keys/k.pub"), flat + "/k.pub");
  const std::string flat_err = error_of([&] { load_authorized_keys(flat); });
  EXPECT_NE(flat_err.find("has keys at its top level ('k.pub')"), std::string::npos) << flat_err;
  EXPECT_NE(flat_err.find("mkdir " + flat + "/workers"), std::string::npos) << flat_err;
  fs::create_directories(d.path("empty"));
  EXPECT_NE(error_of([&] { load_authorized_keys(d.path("empty")); })
                .find("has no workers/, clients/ or head/ subfolder"),
            std::string::npos);
  fs::create_directories(d.path("typo/worker"));
  EXPECT_NE(error_of([&] { load_authorized_keys(d.path("typo")); })
                .find("unknown subfolder 'worker'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_authorized_keys(d.path("none")); }).find("not found"),
            std::string::npos);
  // A secret key dropped into an authorized folder is refused, never used.
  fs::create_directories(d.path("leak/workers"));
  fs::copy_file(d.path("keys/k.key"), d.path("leak/workers/k.pub"));
  EXPECT_NE(error_of([&] { load_authorized_keys(d.path("leak")); }).find("is a secret key"),
            std::string::npos);
  // Empty role folders are fine (a farm may have no clients).
  fs::create_directories(d.path("ok/workers"));
  EXPECT_TRUE(load_authorized_keys(d.path("ok")).empty());
}

}  // namespace
}  // namespace taskfarm
