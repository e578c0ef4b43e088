// Text from peers and files made safe to print: a name in a log line or a terminal cannot fake
// another line or send escape sequences.
#pragma once

#include <fmt/core.h>

#include <string>
#include <string_view>

namespace taskfarm {

// Returns: `text` with every byte outside printable ASCII (and the backslash) written as \xNN,
// cut after `max_shown` bytes with "..." appended.
inline std::string printable(std::string_view text, size_t max_shown = 64) {
  std::string out;
  out.reserve(std::min(text.size(), max_shown) + 3);
  for (size_t i = 0; i < text.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (text.size() > max_shown) out += "...";
  return out;
}

}  // namespace taskfarm
