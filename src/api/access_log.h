// The access log: one info line per request the server answers (ApiServer's request hook),
// with the request id, client address, method, route template (never the raw path, which may
// hold document ids), status, body bytes in and out, latency, the key's role (never the key)
// and the collection. Text: `access request_id="..." client="..." method="GET" ...`; with
// --log-format json the same fields in the line's JSON object (common/log.h).
#pragma once

#include "api/http_front.h"

namespace qsearch::api {

void log_access(const RequestRecord& record);

}  // namespace qsearch::api
