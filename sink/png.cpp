#include "sink/png.h"

#include <zlib.h>

#include <fstream>
#include <vector>

namespace taskfarm::sink {
namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

void chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_u32(out, static_cast<uint32_t>(
                   crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

bool write_png_gray8(const std::string& path, uint32_t width, uint32_t height,
                     const uint8_t* pixels) {
  // Each row is preceded by its filter type (0: none).
  std::vector<uint8_t> raw;
  raw.reserve((static_cast<size_t>(width) + 1) * height);
  for (uint32_t r = 0; r < height; ++r) {
    raw.push_back(0);
    raw.insert(raw.end(), pixels + static_cast<size_t>(r) * width,
               pixels + static_cast<size_t>(r + 1) * width);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, raw.data(),
                static_cast<uLong>(raw.size()), 6) != Z_OK) {
    return false;
  }
  packed.resize(packed_size);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  put_u32(header, width);
  put_u32(header, height);
  header += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit, greyscale, deflate, no filter, no interlace
  chunk(png, "IHDR", header);
  chunk(png, "IDAT", packed);
  chunk(png, "IEND", "");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(png.data(), static_cast<std::streamsize>(png.size()));
  return static_cast<bool>(out);
}

}  // namespace taskfarm::sink
