// Log format of the server and the request id of log lines.
//
// Two formats for spdlog's default logger (`qsearch serve --log-format`):
//   text: 2026-12-02T10:00:00.123 info [req 4f2a...] message     (the [req ...] part only
//         while the writing thread serves a request)
//   json: {"time":"2026-12-02T10:00:00.123Z","level":"info","msg":"message","request_id":"4f2a..."}
//         one object per line (JSON lines, for log shippers), UTC time, invalid UTF-8 replaced.
// A line written while a RequestScope is alive on the same thread carries that request's id, so
// every line a request causes on the thread that handles it can be found by its X-Request-Id.
// Access lines (log_fields) add their fields: in text as `key=value` pairs after the message,
// in json as fields of the object.
//
// Thread safety: configure() once at start-up, before other threads log; everything else may be
// called from any thread (the request id and fields are thread-local).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace qsearch::log {

// "text" or "json" (kInvalidArgument otherwise); level as spdlog names it.
Status configure(const std::string& format, const std::string& level);

// The request id of the lines this thread writes while the scope lives (nests: the outer id
// comes back at the end).
class RequestScope {
 public:
  explicit RequestScope(std::string request_id);
  ~RequestScope();
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

 private:
  std::string saved_;
};

// The id of the request this thread serves ("" when none).
const std::string& current_request_id();

// A field of a structured line: value is JSON text (a number, true/false, null or a quoted
// string made by json_string()).
using Field = std::pair<std::string, std::string>;
std::string json_string(const std::string& s);

// One info line with fields: text "message k=v k=v", json {"msg": message, k: v, ...}.
void info_with_fields(const std::string& message, const std::vector<Field>& fields);

}  // namespace qsearch::log
