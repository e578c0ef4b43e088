#include "common/text.h"

#include <fmt/core.h>

namespace taskfarm {
namespace {

// Decodes the UTF-8 sequence at `s[i]`. Returns: its length and code point, or length 0 for a
// byte that does not start a valid sequence (overlong forms and surrogates included).
struct Decoded {
  size_t length;
  char32_t cp;
};
Decoded decode_utf8(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return {1, b0};
  size_t n;
  char32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (s.size() - i < n) return {0, 0};
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {0, 0};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
  return {n, cp};
}

// Code points a terminal or a log reader would act on rather than show.
bool is_control(char32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||  // C0, DEL, C1
         cp == 0x061C || cp == 0x200E || cp == 0x200F ||              // bidi marks
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||  // bidi overrides
         cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF;  // line/paragraph separators, BOM
}

bool is_space(char32_t cp) {
  return cp == ' ' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B) ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string escape(char32_t cp) {
  return cp < 0x80 ? fmt::format("\\x{:02x}", static_cast<unsigned>(cp))
                   : fmt::format("\\u{{{:x}}}", static_cast<unsigned>(cp));
}

}  // namespace

std::string printable(std::string_view text, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && out.size() < max_bytes) {
    const Decoded d = decode_utf8(text, i);
    if (d.length == 0) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i]));
      ++i;
    } else {
      if (is_control(d.cp)) {
        out += escape(d.cp);
      } else {
        out.append(text.substr(i, d.length));
      }
      i += d.length;
    }
  }
  if (i < text.size()) out += "...";
  return out;
}

std::optional<std::string> name_problem(std::string_view text, size_t max_bytes,
                                        bool allow_spaces) {
  if (text.empty()) return "is empty";
  if (text.size() > max_bytes) {
    return fmt::format("is {} bytes long", text.size());
  }
  for (size_t i = 0; i < text.size();) {
    const Decoded d = decode_utf8(text, i);
    if (d.length == 0) return "is not valid UTF-8";
    if (is_control(d.cp)) return fmt::format("contains the control character {}", escape(d.cp));
    if (!allow_spaces && is_space(d.cp)) return "contains a space";
    i += d.length;
  }
  return std::nullopt;
}

}  // namespace taskfarm
