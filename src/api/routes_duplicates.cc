// POST /collections/{name}/duplicates {"threshold": 0.95, "limit": 100, "cursor": 0,
//                                      "filter": {...}}
//   -> {"clusters": [{"ids": [...], "keep", "max_score", "min_score"}, ...], "total_clusters",
//       "next_cursor" (when more clusters follow), "duplicate_documents", "documents",
//       "pairs", "device", "took_ms"}
// Clusters of near-duplicate documents among the stored embeddings (collection/duplicates.h).
#include <chrono>

#include "api/errors.h"
#include "api/routes.h"
#include "collection/duplicates.h"

namespace qsearch::api {
namespace {

void duplicates(RequestContext& ctx) {
  auto t0 = std::chrono::steady_clock::now();
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  for (const auto& [key, value] : body.items())
    if (key != "threshold" && key != "limit" && key != "filter" && key != "cursor")
      throw StatusException(
          invalid_argument("unknown field \"" + key + "\" in a duplicates request"));
  DuplicatesRequest request;
  if (const json* t = get_field(body, "threshold")) {
    if (!t->is_number()) throw StatusException(invalid_argument("\"threshold\" must be a number"));
    const double v = t->get<double>();
    if (!(v > 0.0 && v <= 1.0))
      throw StatusException(unprocessable("\"threshold\" must be in (0, 1], got " + t->dump()));
    request.threshold = static_cast<float>(v);
  }
  if (const json* l = get_field(body, "limit")) {
    if (!l->is_number_integer())
      throw StatusException(invalid_argument("\"limit\" must be an integer"));
    if (l->is_number_unsigned() ? l->get<uint64_t>() > 10000
                                : l->get<int64_t>() < 1 || l->get<int64_t>() > 10000)
      throw StatusException(unprocessable("\"limit\" must be in 1..10000, got " + l->dump()));
    request.limit = l->get<int64_t>();
  }
  if (const json* f = get_field(body, "filter")) request.filter = value_or_throw(Filter::parse(*f));
  if (const json* c = get_field(body, "cursor")) {
    if (!c->is_number_integer())
      throw StatusException(invalid_argument("\"cursor\" must be an integer"));
    if (!c->is_number_unsigned() && c->get<int64_t>() < 0)
      throw StatusException(unprocessable("\"cursor\" must be >= 0, got " + c->dump()));
    request.cursor = c->is_number_unsigned()
                         ? static_cast<int64_t>(std::min<uint64_t>(c->get<uint64_t>(), 1ull << 62))
                         : c->get<int64_t>();
  }
  request.max_pairs = ctx.config.max_duplicate_pairs;
  // The join's working set in the in-flight budget: the vectors and, at most, the pairs
  // (24 bytes each, held twice while clustering).
  CollectionInfo info = value_or_throw(ctx.service->store().get_collection(collection));
  ctx.reserve(info.document_count * (info.spec.dimension * 4 + 64) + request.max_pairs * 48);
  // The join uses the GPU when there is one, unless the server was told to stay on the CPU.
  request.device = ctx.config.device == "cpu" ? "cpu" : "auto";
  DuplicatesResult r = value_or_throw(find_duplicates(ctx.service->store(), collection, request));
  json clusters = json::array();
  for (const auto& g : r.clusters)
    clusters.push_back({{"ids", g.ids},
                        {"keep", g.ids.front()},
                        {"size", g.ids.size()},
                        {"max_score", g.max_score},
                        {"min_score", g.min_score}});
  double took =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ctx.reply(200, {{"clusters", clusters},
                  {"total_clusters", r.total_clusters},
                  {"next_cursor", r.next_cursor >= 0 ? json(r.next_cursor) : json(nullptr)},
                  {"duplicate_documents", r.duplicate_documents},
                  {"documents", r.documents},
                  {"pairs", r.pairs},
                  {"threshold", request.threshold},
                  {"device", r.device},
                  {"took_ms", took}});
}

}  // namespace

std::vector<Route> duplicate_routes() {
  return {{"POST", "/collections/{name}/duplicates", "/collections/([^/]+)/duplicates",
           Access::kRead, Body::kBuffered, true, duplicates}};
}

}  // namespace qsearch::api
