#include "api/access_log.h"

#include <cstdio>

#include "common/log.h"

namespace qsearch::api {

void log_access(const RequestRecord& r) {
  char latency[32];
  std::snprintf(latency, sizeof latency, "%.3f", r.latency_s * 1000);
  log::info_with_fields(
      "access", {{"request_id", log::json_string(r.request_id)},
                 {"client", log::json_string(r.client_address)},
                 {"method", log::json_string(r.method)},
                 {"route", log::json_string(r.route)},
                 {"status", std::to_string(r.status)},
                 {"bytes_in", std::to_string(r.bytes_in)},
                 {"bytes_out", std::to_string(r.bytes_out)},
                 {"latency_ms", latency},
                 {"key_role", log::json_string(r.key_role)},
                 {"collection", r.collection.empty() ? "null" : log::json_string(r.collection)}});
}

}  // namespace qsearch::api
