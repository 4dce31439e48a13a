// Static files compiled into the binary (no files beside it, nothing from a CDN): the OpenAPI
// description (docs/openapi.json, served at /openapi.json) and the search console
// (src/api/console/, served under /console). The list is QSEARCH_ASSETS in CMakeLists.txt;
// cmake/embed_assets.cmake turns the files into byte arrays at build time.
#pragma once

#include <string_view>
#include <vector>

namespace qsearch::api {

struct Asset {
  std::string_view path;          // URL path, e.g. "/console/console.js"
  std::string_view content_type;  // from the file extension
  std::string_view data;
};

// The asset served at path, or nullptr.
const Asset* find_asset(std::string_view path);
std::vector<const Asset*> all_assets();

}  // namespace qsearch::api
