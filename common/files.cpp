#include "common/files.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errors.h"
#include "common/signals.h"

namespace taskfarm {
namespace {

// Closes the descriptor on every path out of read_file_capped.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string format_size(size_t bytes) {
  if (bytes >= kMiB && bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes / 1024);
  return fmt::format("{} bytes", bytes);
}

std::string read_file_capped(const std::string& path, size_t max_bytes, std::string_view what,
                             FileKind kind) {
  // O_NONBLOCK: opening a FIFO without a writer must not hang; cleared again below.
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (f.fd < 0) {
    throw SetupError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    throw SetupError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(errno)));
  }
  const bool regular = S_ISREG(st.st_mode);
  if (S_ISDIR(st.st_mode)) {
    throw SetupError(fmt::format("{} '{}' is a directory", what, path));
  }
  if (!regular && !(kind == FileKind::kRegularOrPipe && S_ISFIFO(st.st_mode))) {
    throw SetupError(fmt::format("{} '{}' is not a regular file", what, path));
  }
  const auto too_large = [&] {
    return SetupError(
        fmt::format("{} '{}' is larger than the {} limit", what, path, format_size(max_bytes)));
  };
  if (regular && static_cast<uint64_t>(st.st_size) > max_bytes) throw too_large();
  const int flags = ::fcntl(f.fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(f.fd, F_SETFL, flags & ~O_NONBLOCK);

  std::string data;
  if (regular) data.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR && stop_requested()) {  // a silent pipe must not outlive SIGTERM
        throw SetupError(fmt::format("interrupted while reading {} '{}'", what, path));
      }
      if (errno == EINTR) continue;
      throw SetupError(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(errno)));
    }
    // Stop at the first byte past the cap: a file that grows, or a pipe, is never read whole.
    if (static_cast<size_t>(n) > max_bytes - data.size()) throw too_large();
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

}  // namespace taskfarm
