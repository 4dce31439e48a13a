// The request and response a route handler sees (RequestContext::req and ::res). The HTTP
// front (http_front.h) fills them from what Boost.Beast parsed; the member names follow the
// subset of cpp-httplib's Request/Response the routes used before, so handlers did not change.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace qsearch::api {

// Header names compare case-insensitively.
struct HeaderLess {
  bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::multimap<std::string, std::string, HeaderLess>;

// Body chunks for streamed routes: the receiver returns false to stop reading. The reader
// returns true once the whole body was delivered, false if the client failed (timeout, too
// slow, connection lost) or the receiver stopped.
using ContentReceiver = std::function<bool(const char* data, size_t n)>;
using ContentReader = std::function<bool(const ContentReceiver& receiver)>;

struct HttpRequest {
  std::string method;  // as sent ("GET", "POST", ...)
  std::string target;  // as sent, e.g. "/collections/a%20b/search?x=1"
  std::string path;    // the target's path, %-decoded
  Headers headers;
  std::multimap<std::string, std::string> params;  // query parameters, decoded
  std::vector<std::string> matches;  // [0] the path, [i] the route regex's group i (decoded)
  std::string remote_addr;
  int remote_port = 0;
  std::string request_id;  // X-Request-Id as sent (validated) or generated; echoed back
  // Body presence and size from the head: Content-Length, or chunked (length unknown).
  bool has_body = false;
  bool chunked = false;
  uint64_t content_length = 0;
  // Filled while the request is admitted (server.cc), reported by the request hook.
  std::string route = "(unmatched)";  // route pattern, e.g. "/collections/{name}/search"
  std::string key_role = "none";      // "admin", "read", "none" (no or wrong key), "open" (no auth)
  std::string collection;             // the {name} of /collections/{name}/... routes
  int route_index = -1;               // the app's index of the matched route
  bool writes = false;                // the route changes data (admin routes): see client_gone
  // True once the client left (never blocks; set by the front): it reset the connection, or,
  // for routes that do not write, it ended its stream (FIN).
  std::function<bool()> client_gone;

  bool has_header(const std::string& name) const { return headers.count(name) > 0; }
  std::string get_header_value(const std::string& name) const;
  bool has_param(const std::string& name) const { return params.count(name) > 0; }
  std::string get_param_value(const std::string& name) const;
};

struct HttpResponse {
  int status = -1;  // -1: not set yet (200 once the handler returns)
  Headers headers;
  std::string body;
  std::string content_type;

  void set_header(const std::string& name, const std::string& value);
  void set_content(std::string content, const std::string& type) {
    body = std::move(content);
    content_type = type;
  }
};

// %XX decoding; with plus_as_space (query strings) '+' becomes ' '. Invalid escapes stay as
// they are.
std::string url_decode(const std::string& s, bool plus_as_space);

}  // namespace qsearch::api
