// Reading files named on the command line with a size cap, so that `--job /dev/zero` or a huge
// key file is a one-line error instead of a process that grows until it is killed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace taskfarm {

inline constexpr size_t kMiB = size_t{1} << 20;
// Key files hold one or two 40-character keys and a few comment lines.
inline constexpr size_t kMaxKeyFileBytes = 4096;

enum class FileKind {
  kRegular,     // regular files only (keys: their mode is checked too)
  kRegularOrPipe,  // also FIFOs and pipes (`--job <(generate)`), read up to the cap
};

// Returns: the contents of `path`, at most `max_bytes`. `what` names the file in errors
// ("job file"). Throws: SetupError with one line: "cannot read job file 'x': No such file or
// directory", "job file 'x' is not a regular file", "job file 'x' is larger than the 64 MiB limit".
std::string read_file_capped(const std::string& path, size_t max_bytes, std::string_view what,
                             FileKind kind = FileKind::kRegularOrPipe);

// Returns: `bytes` as "64 MiB", "4 KiB" or "100 bytes", for messages about limits.
std::string format_size(size_t bytes);

}  // namespace taskfarm
