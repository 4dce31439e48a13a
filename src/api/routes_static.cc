// Files compiled into the binary (api/assets.h), public like /health: the OpenAPI description
// at /openapi.json.
#include "api/assets.h"
#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

void serve_asset(RequestContext& ctx, const std::string& path) {
  const Asset* a = find_asset(path);
  if (!a) throw StatusException(not_found("no file " + path));
  ctx.res.status = 200;
  ctx.res.set_header("Cache-Control", "no-cache");
  ctx.res.set_content(std::string(a->data), std::string(a->content_type));
}

}  // namespace

std::vector<Route> static_routes() {
  return {
      {"GET", "/openapi.json", "/openapi.json", Access::kPublic, Body::kNone, false,
       [](RequestContext& ctx) { serve_asset(ctx, "/openapi.json"); }},
  };
}

}  // namespace qsearch::api
