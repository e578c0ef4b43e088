// Files that must survive a crash: atomic replacement (temporary file, fsync, rename, fsync of
// the folder), clean-up of temporaries a crash left behind, and the --state DIR of a ventilator
// or sink (created, locked against a second process, checked writable at start).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace taskfarm {

// Writes `data` to `path` through "<path>.tmp" in the same folder: write, fsync, rename over
// `path`, fsync of the folder. A reader, or a restart after a crash at any moment, sees the old
// file or the new one, never half of one. Creates missing folders.
// Returns: "" on success, else why it failed (the old file is then untouched).
std::string write_file_atomically(const std::filesystem::path& path, std::string_view data);

// Removes the files of `dir` (not its subfolders) whose names end in ".tmp": what a crash
// between writing a temporary file and renaming it leaves. Returns: how many were removed.
size_t remove_stray_temporaries(const std::filesystem::path& dir);

// Flushes a folder's entries (a rename or a new file in it) to disk. Returns: false on failure.
bool fsync_dir(const std::filesystem::path& dir);

// The state folder of one role (--state DIR): it holds that role's journal.
class StateDir {
 public:
  // Creates `dir` when missing, takes an exclusive lock on "<dir>/<role>.lock" so that two
  // processes never share a journal, checks that a file can be written and synced there, and
  // removes stray temporaries.
  // Throws: SetupError, one line naming the folder and the reason (read-only file system, no
  // space left, locked by another process).
  StateDir(const std::filesystem::path& dir, std::string_view role);
  ~StateDir();
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;

  const std::filesystem::path& path() const { return dir_; }
  // Returns: the path of a file in the folder.
  std::string file(std::string_view name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
  int lock_fd_ = -1;
};

}  // namespace taskfarm
