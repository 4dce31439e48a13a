#include "api/cors.h"

#include <algorithm>
#include <cctype>

namespace qsearch::api {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

CorsPolicy::CorsPolicy(std::vector<std::string> origins) {
  for (auto& o : origins) {
    if (o == "*") any_ = true;
    origins_.push_back(lower(o));
  }
}

const std::vector<std::string>& CorsPolicy::allowed_request_headers() {
  static const std::vector<std::string> kHeaders = {"authorization", "content-type",
                                                    "x-request-id"};
  return kHeaders;
}

std::string CorsPolicy::allow_origin(const std::string& origin) const {
  if (!enabled() || origin.empty() || origin.size() > 300) return "";
  if (any_) return "*";
  const std::string o = lower(origin);
  return std::find(origins_.begin(), origins_.end(), o) != origins_.end() ? origin : "";
}

HeaderList CorsPolicy::response_headers(const std::string& origin) const {
  const std::string allow = allow_origin(origin);
  if (allow.empty()) return {};
  HeaderList h = {{"Access-Control-Allow-Origin", allow},
                  {"Access-Control-Expose-Headers", "X-Request-Id, Retry-After, WWW-Authenticate"}};
  if (allow != "*") h.emplace_back("Vary", "Origin");
  return h;
}

HeaderList CorsPolicy::preflight_headers(const std::string& origin,
                                         const std::vector<std::string>& path_methods) const {
  HeaderList h = response_headers(origin);
  if (h.empty()) return h;
  std::string methods;
  for (const auto& m : path_methods) {
    if (methods.find(m) != std::string::npos) continue;
    methods += (methods.empty() ? "" : ", ") + m + (m == "GET" ? ", HEAD" : "");
  }
  h.emplace_back("Access-Control-Allow-Methods", methods);
  h.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
  h.emplace_back("Access-Control-Max-Age", "600");
  return h;
}

}  // namespace qsearch::api
