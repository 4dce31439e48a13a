// POST /v1/rerank in the Cohere/Jina shape (their clients work unchanged):
//   {"model"?, "query", "documents": [string | {"text"}], "top_n"?, "return_documents"?,
//    "instruction"?}
//   -> {"results": [{"index", "relevance_score", "document"?: {"text"}}], "model",
//       "usage": {"total_tokens"}}
// Results are sorted by relevance_score, highest first (ties: lower index first), top_n of them
// (default: all). "return_documents" (default false) adds each document's text. "model" is
// echoed (one reranker is served; another name is not an error). Extension: "instruction"
// replaces the model card's default; a result whose pair was cut to the reranker's limit
// carries "truncated_tokens".
#include <charconv>

#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

std::vector<std::string> parse_documents(const json* docs) {
  if (!docs) throw StatusException(invalid_argument("\"documents\" is required"));
  if (!docs->is_array())
    throw StatusException(invalid_argument(
        "\"documents\" must be an array of strings or of objects with a \"text\" string"));
  std::vector<std::string> out;
  out.reserve(docs->size());
  for (size_t i = 0; i < docs->size(); ++i) {
    const json& d = (*docs)[i];
    const std::string where = "\"documents[" + std::to_string(i) + "]\"";
    if (d.is_string()) {
      out.push_back(d.get<std::string>());
    } else if (d.is_object()) {
      std::optional<std::string> text = get_string(d, "text");
      if (!text) throw StatusException(invalid_argument(where + " has no \"text\" string"));
      out.push_back(std::move(*text));
    } else {
      throw StatusException(
          invalid_argument(where + " must be a string or an object with a \"text\" string"));
    }
  }
  return out;
}

void append_float(std::string* out, float v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  if (ec != std::errc()) {
    *out += "0";
    return;
  }
  out->append(buf, end);
}

void rerank(RequestContext& ctx) {
  json body = ctx.json_body();
  RerankRequest req;
  std::optional<std::string> query = get_string(body, "query");
  if (!query) throw StatusException(invalid_argument("\"query\" is required (a string)"));
  req.query = std::move(*query);
  req.documents = parse_documents(get_field(body, "documents"));
  req.top_n = get_int(body, "top_n");
  req.instruction = get_string(body, "instruction");
  const bool return_documents = get_bool(body, "return_documents").value_or(false);
  std::string model = get_string(body, "model").value_or(ctx.service->reranker_name());

  RerankOutput result = value_or_throw(ctx.service->rerank(req, ctx.client_gone()));

  std::string out = "{\"results\":[";
  for (size_t i = 0; i < result.results.size(); ++i) {
    const RerankResult& r = result.results[i];
    if (i) out += ',';
    out += "{\"index\":" + std::to_string(r.index) + ",\"relevance_score\":";
    append_float(&out, r.score);
    if (return_documents)
      out += ",\"document\":{\"text\":" + dump(json(req.documents[r.index])) + "}";
    if (r.truncated_tokens > 0)
      out += ",\"truncated_tokens\":" + std::to_string(r.truncated_tokens);
    out += '}';
  }
  out += "],\"model\":" + dump(json(model)) +
         ",\"usage\":{\"total_tokens\":" + std::to_string(result.total_tokens) + "}}";
  ctx.res.status = 200;
  ctx.res.set_content(out, "application/json");
}

}  // namespace

std::vector<Route> rerank_routes() {
  return {{"POST", "/v1/rerank", "/v1/rerank", Access::kRead, Body::kBuffered, true, rerank}};
}

}  // namespace qsearch::api
