// Files compiled into the binary (api/assets.h), public like /health (the console asks for a
// key itself when the API needs one):
//   GET /openapi.json      the OpenAPI description (docs/openapi.json)
//   GET /console           the search console (src/api/console/index.html)
//   GET /console/{file}    its script and style sheet
#include "api/assets.h"
#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

// The console loads only its own files and talks only to this server.
const char* kConsolePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

void serve_asset(RequestContext& ctx, const std::string& path) {
  const Asset* a = find_asset(path);
  if (!a) throw StatusException(not_found("no file " + path));
  ctx.res.status = 200;
  ctx.res.set_header("Cache-Control", "no-cache");
  ctx.res.set_header("X-Content-Type-Options", "nosniff");
  if (path.rfind("/console", 0) == 0) ctx.res.set_header("Content-Security-Policy", kConsolePolicy);
  ctx.res.set_content(std::string(a->data), std::string(a->content_type));
}

}  // namespace

std::vector<Route> static_routes() {
  return {
      {"GET", "/openapi.json", "/openapi.json", Access::kPublic, Body::kNone, false,
       [](RequestContext& ctx) { serve_asset(ctx, "/openapi.json"); }},
      {"GET", "/console", "/console", Access::kPublic, Body::kNone, false,
       [](RequestContext& ctx) { serve_asset(ctx, "/console"); }},
      {"GET", "/console/{file}", "/console/(.*)", Access::kPublic, Body::kNone, false,
       [](RequestContext& ctx) {
         const std::string file = ctx.param(1);
         serve_asset(ctx, file.empty() ? "/console" : "/console/" + file);
       }},
  };
}

}  // namespace qsearch::api
