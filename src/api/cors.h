// CORS (`--cors-origins`): which browser origins may call the API, and the headers that say so.
// Off (no origins) by default: then no CORS header is ever sent and an OPTIONS preflight is
// answered like any other unrouted method (405/404). With origins configured:
//   - a request whose Origin is allowed gets Access-Control-Allow-Origin (the origin itself, or
//     "*" when "*" is configured), Vary: Origin and Access-Control-Expose-Headers (X-Request-Id,
//     Retry-After, WWW-Authenticate), whatever its status;
//   - a preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin
//     on a path the server routes is answered 204 before authentication (browsers send no key
//     on preflights) with the path's methods, the allowed request headers (Authorization,
//     Content-Type, X-Request-Id) and Max-Age 600; from any other origin it gets no CORS
//     header, so the browser refuses the call.
// No credentials mode (cookies) is offered: the API uses bearer keys.
//
// Thread safety: immutable after construction.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace qsearch::api {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class CorsPolicy {
 public:
  explicit CorsPolicy(std::vector<std::string> origins = {});

  bool enabled() const { return !origins_.empty(); }
  // The Access-Control-Allow-Origin value for this Origin header, "" when it is not allowed.
  std::string allow_origin(const std::string& origin) const;
  // Headers for an answer to a request from origin (empty when not allowed).
  HeaderList response_headers(const std::string& origin) const;
  // Headers of the 204 answer to a preflight, given the methods the path allows (GET implies
  // HEAD); empty when origin is not allowed.
  HeaderList preflight_headers(const std::string& origin,
                               const std::vector<std::string>& path_methods) const;

  // Request headers a browser may send cross-origin (lower case).
  static const std::vector<std::string>& allowed_request_headers();

 private:
  std::vector<std::string> origins_;  // lower-cased
  bool any_ = false;
};

}  // namespace qsearch::api
