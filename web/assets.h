// The dashboard's files, compiled into the binary (clusters have no internet: no CDN).
#pragma once

#include <string_view>

namespace taskfarm::web {

struct Asset {
  std::string_view path;  // URL path, e.g. "/assets/chart.min.js"
  std::string_view content_type;
  std::string_view data;
};

// Returns: the asset served at `path`, or nullptr.
const Asset* find_asset(std::string_view path);

}  // namespace taskfarm::web
