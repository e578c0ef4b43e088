// Minimal PNG writer (8-bit greyscale) on zlib, for artifacts such as the mandelbrot image.
#pragma once

#include <cstdint>
#include <string>

namespace taskfarm::sink {

// Writes a width x height greyscale image, one byte per pixel, row-major.
// Returns: false (nothing written) when the file cannot be written or zlib fails.
bool write_png_gray8(const std::string& path, uint32_t width, uint32_t height,
                     const uint8_t* pixels);

}  // namespace taskfarm::sink
