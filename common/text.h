// Text that came from a peer or a file (job names, worker ids, kernel names) is shown and logged
// only through printable(), so a name cannot move the cursor, fake a log line or reorder text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace taskfarm {

// Returns: `text` with control characters (C0, DEL, C1), bidirectional overrides and line
// separators escaped (\x1b, \u{202e}), bytes that are not UTF-8 as \xNN, cut to about
// `max_bytes` with "..." appended. Valid printable UTF-8 comes back unchanged.
std::string printable(std::string_view text, size_t max_bytes = 64);

// Returns: why `text` is not acceptable as a name ("is empty", "is 300 bytes long" (over max),
// "is not valid UTF-8", "contains the control character \x1b", "contains a space"), or nullopt.
// Names are printable UTF-8 of at most `max_bytes` bytes; spaces only where `allow_spaces`.
std::optional<std::string> name_problem(std::string_view text, size_t max_bytes,
                                        bool allow_spaces);

}  // namespace taskfarm
