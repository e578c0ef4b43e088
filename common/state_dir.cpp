#include "common/state_dir.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errors.h"

namespace taskfarm {
namespace {

// Writes all of `data` to `fd`. Returns: 0, or the errno of the failure.
int write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

}  // namespace

bool fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

std::string write_file_atomically(const std::filesystem::path& path, std::string_view data) {
  std::error_code ec;
  const auto dir = path.parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fmt::format("cannot create {}: {}", tmp, std::strerror(errno));
  int err = write_all(fd, data);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return fmt::format("cannot write {}: {}", path.string(), std::strerror(err));
  }
  (void)fsync_dir(dir);  // the rename itself survives a power loss
  return {};
}

size_t remove_stray_temporaries(const std::filesystem::path& dir) {
  size_t removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& p = it->path();
    const std::string name = p.filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        it->is_regular_file(ec)) {
      if (std::filesystem::remove(p, ec)) ++removed;
    }
  }
  return removed;
}

StateDir::StateDir(const std::filesystem::path& dir, std::string_view role) : dir_(dir) {
  if (dir.empty()) throw SetupError("--state: give a folder");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    throw SetupError(fmt::format("--state {}: cannot create the folder: {}", dir.string(),
                                 ec.message()));
  }
  const std::string lock = file(fmt::format("{}.lock", role));
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    throw SetupError(fmt::format("--state {}: cannot write there: {}", dir.string(),
                                 std::strerror(errno)));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    throw SetupError(fmt::format("--state {}: another taskfarm-{} uses this folder", dir.string(),
                                 role));
  }
  // A write that reaches the disk, before anything is promised to anyone.
  const std::string probe = file(fmt::format(".{}-probe.tmp", role));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    err = write_all(fd, std::string(4096, '\0'));
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    ::close(fd);
    ::unlink(probe.c_str());
  }
  if (err != 0) {
    ::close(lock_fd_);
    throw SetupError(fmt::format("--state {}: cannot write there: {}", dir.string(),
                                 std::strerror(err)));
  }
  remove_stray_temporaries(dir);
}

StateDir::~StateDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

}  // namespace taskfarm
